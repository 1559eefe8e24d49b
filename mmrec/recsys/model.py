"""The model directory `mmrec train` writes and `recommend` / `evaluate` read.

Layout::

    config.json           format mmrec-model: the resolved TrainConfig, the store's
                          path and encoders (a store from other encoders is refused),
                          the content source (store or aligner), the training report
    weights.safetensors   the scorer (see scoring.py): item vectors, user vectors,
                          the user tower's history weights, the content adapter
    items.json            item ids: the row order of every item matrix
    items.jsonl           each item's metadata (title, ...), as the store had it
    store.manifest.json   the manifest of the store the model was built on (absent
                          for a popularity model trained on interactions alone)
    users.json            user ids: the row order of the user vectors
    interactions.npz      every kept interaction as (user row, item row, time) and the
                          part it is in (0 train, 1 valid, 2 test), the split's kind
                          and seed, and the cold items of a cold-item split
    index.faiss           faiss index over the item vectors (inner product), with
    index.ids.json        the item id of each of its rows

The directory answers for itself: it can be moved, and recommend and evaluate need
no store or aligner. Only the per-modality part of ``--explain`` reads the store's
content again (from where it was at training, or ``--store`` where it moved). The
directory is staged next to its final place and renamed in one step, so a reader
never sees half a model.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.artifacts import Artifact, Kind, read_json, write_config
from mmrec.atomic import save_safetensors, write_json
from mmrec.errors import ConfigError, ModelError
from mmrec.recsys.data import Data
from mmrec.recsys.scoring import Scorer, load_scorer, save_scorer
from mmrec.recsys.splits import load_split, save_split
from mmrec.store import Store, open_store, read_items, write_items

ITEMS, USERS, SPLIT = "items.json", "users.json", "interactions.npz"
METADATA, STORE_MANIFEST = "items.jsonl", "store.manifest.json"


@dataclass
class Model:
    path: Path
    config: dict[str, Any]
    scorer: Scorer
    data: Data

    @property
    def kind(self) -> str:
        return self.config["config"]["model"]

    def store(self, path: str | Path | None = None) -> Store | None:
        """The store the model was built on, at ``path`` if it moved, else where it was
        at training; None if it is not there any more. Refused if its encoders changed."""
        if self.config.get("store") is None:
            if path is not None:
                raise ConfigError(f"model {self.path} was trained on interactions alone: "
                                  "it has no store to read content from")
            return None
        if path is None and not Path(self.config["store"]["path"]).exists():
            return None
        return open_store(self.config, path, f"model {self.path}")

    def metadata(self) -> dict[str, dict[str, Any]]:
        """Each item's metadata, from the model itself (models before items.jsonl: the store)."""
        if (self.path / METADATA).is_file():
            return read_items(self.path / METADATA, ModelError)
        store = self.store()
        return store.items() if store is not None else {}

    @cached_property
    def _user_rows(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.data.user_ids)}

    @cached_property
    def _item_rows(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.data.item_ids)}

    def user_row(self, user_id: str) -> int | None:
        return self._user_rows.get(user_id)

    def item_row(self, item_id: str) -> int | None:
        return self._item_rows.get(item_id)


def save_model(out: Path, config: Any, store: Store | None, scorer: Scorer, data: Data,
               extra: dict[str, Any], tensors: dict[str, dict[str, Any]] | None = None) -> None:
    """Write every file into a staging directory, then publish it as ``out``;
    ``tensors``: safetensors files to write in it (file name -> tensors)."""
    from mmrec.index import VectorIndex

    with Artifact.create(out, Kind.MODEL) as staging:
        write_json(staging / ITEMS, data.item_ids)
        _save_store_part(staging, store, data.item_ids)
        write_json(staging / USERS, data.user_ids)
        save_split(staging / SPLIT, data.split, data.users, data.items, data.times)
        save_scorer(scorer, staging)
        VectorIndex.build(data.item_ids, scorer.items, config.index, seed=config.seed).save(staging)
        write_config(staging, Kind.MODEL, config, store, extra)
        for name, found in (tensors or {}).items():
            save_safetensors(staging / name, found)


def _save_store_part(directory: Path, store: Store | None, item_ids: list[str]) -> None:
    """What the model needs of its store to answer without it: metadata and manifest."""
    metadata = store.items() if store is not None else {}
    write_items(directory / METADATA, [{**metadata.get(i, {}), "id": i} for i in item_ids])
    if store is not None:
        write_json(directory / STORE_MANIFEST, store.manifest)


def _ids(path: Path) -> list[str]:
    return read_json(path, ModelError)


def load_model(path: str | Path) -> Model:
    """Open a model directory (config, scorer, interactions and split)."""
    artifact = Artifact.open(path, Kind.MODEL)
    path, config = artifact.path, artifact.config
    items, users = _ids(path / ITEMS), _ids(path / USERS)
    split, user_rows, item_rows, times = load_split(path / SPLIT)
    scorer = load_scorer(path)
    users_of = getattr(scorer, "users", None)
    if scorer.items.shape[0] != len(items) or (users_of is not None and users_of.shape[0] != len(users)):
        raise ModelError(f"{path}: weights and ids disagree: the model directory is corrupt")
    data = Data(items, users, user_rows.astype(np.int64), item_rows.astype(np.int64), times, split)
    return Model(path, config, scorer, data)
