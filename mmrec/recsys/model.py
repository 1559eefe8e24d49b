"""The model directory `mmrec train` writes and `recommend` / `evaluate` read.

Layout::

    config.json           format mmrec-model: the resolved TrainConfig, the store's
                          encoders (a store from other encoders is refused), the
                          content source (store or aligner), the training report
    weights.safetensors   the scorer (see scoring.py): item vectors, user vectors,
                          the user tower's history weights, the content adapter
    items.json            item ids: the row order of every item matrix
    users.json            user ids: the row order of the user vectors
    interactions.npz      every kept interaction as (user row, item row, time) and the
                          part it is in (0 train, 1 valid, 2 test), the split's kind
                          and seed, and the cold items of a cold-item split
    index.faiss           faiss index over the item vectors (inner product), with
    index.ids.json        the item id of each of its rows

The directory is staged next to its final place and renamed in one step, so a
reader never sees half a model.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.artifacts import Kind, check_out, open_store, read_config, read_json, write_config
from mmrec.atomic import publish_dir, write_json
from mmrec.errors import StoreError
from mmrec.recsys.data import Data
from mmrec.recsys.scoring import Scorer
from mmrec.recsys.splits import load_split, save_split
from mmrec.store import Store

ITEMS, USERS, SPLIT = "items.json", "users.json", "interactions.npz"


@dataclass
class Model:
    path: Path
    config: dict[str, Any]
    scorer: Scorer
    data: Data

    @property
    def kind(self) -> str:
        return self.config["config"]["model"]

    def store(self) -> Store:
        """The store the model was built on, refused if its encoders changed since."""
        return open_store(self.config, None, f"model {self.path}")

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


def save_model(out: Path, config: Any, store: Store, scorer: Scorer, data: Data,
               extra: dict[str, Any]) -> None:
    """Write every file into a staging directory, then publish it as ``out``."""
    from mmrec.index import VectorIndex

    out = Path(out)
    check_out(out, Kind.MODEL)  # again: the directory may have changed while training ran
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write_json(staging / ITEMS, data.item_ids)
        write_json(staging / USERS, data.user_ids)
        save_split(staging / SPLIT, data.split, data.users, data.items, data.times)
        scorer.save(staging)
        VectorIndex.build(data.item_ids, scorer.items, config.index, seed=config.seed).save(staging)
        write_config(staging, Kind.MODEL, config, store, extra)
        publish_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _ids(path: Path) -> list[str]:
    return read_json(path)


def load_model(path: str | Path) -> Model:
    """Open a model directory (config, scorer, interactions and split)."""
    path = Path(path)
    config = read_config(path, Kind.MODEL)
    items, users = _ids(path / ITEMS), _ids(path / USERS)
    split, user_rows, item_rows, times = load_split(path / SPLIT)
    scorer = Scorer.load(path)
    if scorer.items.shape[0] != len(items) or (scorer.users is not None
                                               and scorer.users.shape[0] != len(users)):
        raise StoreError(f"{path}: weights and ids disagree: the model directory is corrupt")
    data = Data(items, users, user_rows.astype(np.int64), item_rows.astype(np.int64), times, split)
    return Model(path, config, scorer, data)
