"""Item content and interactions, mapped to rows, for training and evaluation.

Content without an aligner is the store's modalities side by side, each block
unit-norm (zeros where an item lacks the modality); with an aligner it is the
aligner's fused vector per item (one block, ``fused``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.artifacts import Kind, read_config
from mmrec.catalog import Interactions
from mmrec.errors import AlignerError, CatalogError, StoreError
from mmrec.recsys.scoring import History
from mmrec.recsys.splits import TEST, TRAIN, VALID, Split
from mmrec.store import Store, check_store, open_store

FUSED = "fused"
CONTENT_CHUNK = 65_536  # item rows copied at a time when the content is assembled
PART_NAMES = {TRAIN: "train", VALID: "valid", TEST: "test"}


@dataclass
class Content:
    ids: list[str]
    matrix: np.ndarray  # (items, dim) float32
    blocks: dict[str, tuple[int, int]]  # modality -> column range of ``matrix``
    store: Store
    aligner: str | None = None


def store_content(store: Store, ids: list[str] | None = None) -> Content:
    """The store's modalities concatenated for ``ids`` (default: every item)."""
    every = ids is None or list(ids) == list(store.ids)
    ids = list(store.ids) if ids is None else ids
    matrices = [store.matrix(modality)[0] for modality in store.modalities]  # zeros where absent
    if not matrices:
        raise StoreError(f"store {store.path} holds no vectors")
    blocks, start = {}, 0
    for modality, matrix in zip(store.modalities, matrices, strict=True):
        blocks[modality.value] = (start, start + matrix.shape[1])
        start += matrix.shape[1]
    if every and len(matrices) == 1 and matrices[0].dtype == np.float32:
        # the store's own memory map: a trainer gathers its batches' rows from it, so a
        # million-item catalog is not copied into memory (twice, as a gather then a concat)
        return Content(ids, matrices[0], blocks, store)
    rows = np.array([store.row(i) for i in ids], dtype=np.int64)
    out = np.empty((len(ids), start), dtype=np.float32)
    for modality, matrix in zip(store.modalities, matrices, strict=True):
        lo, hi = blocks[modality.value]
        for at in range(0, len(rows), CONTENT_CHUNK):  # filled in place, chunk by chunk
            out[at:at + CONTENT_CHUNK, lo:hi] = matrix[rows[at:at + CONTENT_CHUNK]]
    return Content(ids, out, blocks, store)


def aligner_content(aligner: str | Path, store: str | Path | None = None) -> Content:
    """Fused item vectors of an aligner, and the store it was built on (checked)."""
    config = read_config(aligner, Kind.ALIGNER)
    what = f"aligner {aligner}"
    opened = open_store(config, store, what)
    from mmrec.alignment import fused_vectors

    ids, vectors = fused_vectors(aligner)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors) or not len(ids):
        raise AlignerError(f"{what}: no fused item vectors")
    known = set(opened.ids)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise StoreError(f"{what} has items the store {opened.path} lacks (e.g. {unknown[0]!r})",
                         hint="pass the store the aligner was built on with --store")
    return Content(list(ids), vectors, {FUSED: (0, vectors.shape[1])}, opened, str(aligner))


def model_content(config: dict[str, Any], store: Store, ids: list[str]) -> Content | None:
    """A model's content again, for explanations; None where it cannot be rebuilt."""
    source = config.get("content", {})
    if source.get("aligner"):
        return None  # fused vectors only: no modality to take away
    check_store(config, store, "this model")
    return store_content(store, ids)


@dataclass
class Data:
    """Interactions as rows: user ``users[k]`` had item ``items[k]`` at ``times[k]``."""

    item_ids: list[str]
    user_ids: list[str]
    users: np.ndarray
    items: np.ndarray
    times: np.ndarray
    split: Split

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def history(self, *parts: int) -> History:
        keep = np.isin(self.split.part, parts)
        return History.build(self.users[keep], self.items[keep], self.n_users)

    def train_counts(self) -> np.ndarray:
        train = self.split.part == TRAIN
        return np.bincount(self.items[train], minlength=self.n_items)

    def heldout(self, part: int) -> tuple[np.ndarray, History, History, np.ndarray]:
        """``(users, relevant, excluded, candidates)`` to rank ``part`` (VALID or TEST).

        Users are those with at least one ``part`` interaction; excluded are their
        training items (and validation items when ranking the test part).
        """
        relevant_all = self.history(part)
        users = np.flatnonzero(relevant_all.sizes() > 0)
        seen = self.history(TRAIN) if part == VALID else self.history(TRAIN, VALID)
        candidates = self.split.candidates(part, self.n_items)
        return users, relevant_all.take(users), seen.take(users), candidates


def index_interactions(found: Interactions, item_ids: list[str]) -> tuple[list[str], np.ndarray,
                                                                         np.ndarray, np.ndarray]:
    """``(user ids, user rows, item rows, times)``, sorted by user then time (file order
    breaks ties), so every history is in time order; users numbered by first appearance.
    """
    if found.item_ids is item_ids or found.item_ids == item_ids:
        items = found.item_codes  # read against these very ids: the codes are the rows
    else:
        row_of = {item: i for i, item in enumerate(item_ids)}
        items = found.item_rows(row_of.get)
    if (items < 0).any():  # the reader filtered on the same ids: only a bug gets here
        bad = found.item_codes[int(np.argmax(items < 0))]
        raise CatalogError(f"{found.path}: unknown item {found.item_ids[bad]!r}")
    users = found.user_codes  # numbered by first appearance already
    order = np.lexsort((found.timestamps, users))
    return list(found.user_ids), users[order], items[order], found.timestamps[order]
