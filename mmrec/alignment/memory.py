"""The pair memory: an item's image (or sound) also described by its look-alikes' texts.

A fitted head maps each image on its own into the text space. The memory keeps the
training pairs themselves: the encoder rows of the training items' images (keys) and
their texts in the pivot space (values). An image's vector becomes
``normalize(projected + w * normalize(softmax(top-k key similarities / T) @ values))``:
what the training items that look most like it are called. Measured on OpenMoji and
Tux Paint, which hold many look-alikes (skin tones, colour variants, numbered stamps),
on a split of the training part only (bench/README "Pair memory"): text->image R@10
+0.02-0.06. ``w`` is chosen on validation (0, no memory, is a candidate); ``T`` and
``k`` were chosen on that split.

The same formula makes the aligner's item vectors and every query's: a training item
leaves its own pair out (the ``exclude`` key), a query or a held-out item has none to
leave out. Saved as ``memory-<modality>.safetensors``; the keys are the store's unit
encoder rows, so a query needs only its encoder's output.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmrec.atomic import save_safetensors
from mmrec.errors import AlignerError
from mmrec.vectors import unit_rows

if TYPE_CHECKING:
    import numpy as np

MEMORY_TEMPERATURE = 0.05  # softmax over key cosines (chosen on the dev split: 0.02-0.1 tried)
MEMORY_K = 20  # nearest keys kept per row (5-100 tried: flat beyond 20)
MEMORY_LIMIT = 20_000  # training pairs kept at most (a seeded sample beyond): bounds query cost
MEMORY_GRID = (0.0, 0.125, 0.25, 0.5, 0.75, 1.0)
CHUNK = 1024  # rows scored against the keys at a time


def weights_file(modality: str) -> str:
    return f"memory-{modality}.safetensors"


@dataclass
class PairMemory:
    modality: str
    keys: np.ndarray  # (pairs, encoder dim) unit encoder rows of the training items' modality
    values: np.ndarray  # (pairs, pivot dim) unit pivot-space rows of the same items' texts
    weight: float = 0.0
    temperature: float = MEMORY_TEMPERATURE
    k: int = MEMORY_K
    rows: np.ndarray | None = None  # at fit time: the store rows of the keys (not saved)

    def own_keys(self, items: int) -> np.ndarray | None:
        """Per store row, its own key (-1 for none): what its projection leaves out."""
        import numpy as np

        if self.rows is None:
            return None
        own = np.full(items, -1, dtype=np.int64)
        own[self.rows] = np.arange(len(self.rows))
        return own

    def recall(self, unit: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """Unit rows: the softmax-weighted values of each row's ``k`` nearest keys.

        ``exclude[i]``: the key row ``i`` must not use (its own pair), -1 for none.
        """
        import numpy as np

        out = np.zeros((len(unit), self.values.shape[1]), dtype=np.float32)
        k = min(self.k, len(self.keys))
        for lo in range(0, len(unit), CHUNK):
            sims = np.asarray(unit[lo:lo + CHUNK], dtype=np.float32) @ self.keys.T
            if exclude is not None:
                own = exclude[lo:lo + CHUNK]
                hit = own >= 0
                sims[np.flatnonzero(hit), own[hit]] = -np.inf
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            near = np.take_along_axis(sims, top, axis=1)
            weights = np.exp((near - near.max(axis=1, keepdims=True)) / self.temperature)
            weights /= weights.sum(axis=1, keepdims=True)
            out[lo:lo + len(sims)] = np.einsum("rk,rkd->rd", weights, self.values[top])
        return unit_rows(out)

    def apply(self, projected: np.ndarray, unit: np.ndarray, weight: float | None = None,
              exclude: np.ndarray | None = None) -> np.ndarray:
        """``projected`` (unit pivot rows of ``unit``) with the memory mixed in at ``weight``."""
        weight = self.weight if weight is None else weight
        if weight <= 0:
            return projected
        return unit_rows(projected + weight * self.recall(unit, exclude))

    def save(self, directory: Path) -> None:
        import torch

        meta = {"modality": self.modality, "weight": self.weight,
                "temperature": self.temperature, "k": self.k}
        save_safetensors(directory / weights_file(self.modality),
                         {"keys": torch.from_numpy(self.keys.astype("float16")),
                          "values": torch.from_numpy(self.values.astype("float16"))},
                         metadata={"memory": json.dumps(meta)})

    @classmethod
    def load(cls, directory: Path, modality: str) -> PairMemory | None:
        """The memory of ``modality`` in ``directory``; None if it has none."""
        from safetensors import SafetensorError, safe_open

        path = Path(directory) / weights_file(modality)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="numpy") as fh:
                meta = json.loads((fh.metadata() or {})["memory"])
                keys, values = fh.get_tensor("keys"), fh.get_tensor("values")
        except (OSError, KeyError, ValueError, SafetensorError) as exc:
            raise AlignerError(f"{path}: unreadable pair memory ({str(exc).splitlines()[0]})") from exc
        return cls(modality, keys.astype("float32"), values.astype("float32"),
                   float(meta["weight"]), float(meta["temperature"]), int(meta["k"]))
