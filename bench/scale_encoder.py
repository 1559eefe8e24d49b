"""A fast deterministic text encoder for bench/scale.py, loaded through ``local:``.

A text ``"c<cluster> n<number> ..."`` maps to its cluster's centroid plus a fixed
noise row chosen by its number: a pure function of the text (a re-run encodes alike),
planted clusters (items of a cluster are each other's neighbours), and no model cost,
so the benchmark measures mmrec's own work, not an encoder's.
"""
from __future__ import annotations

import numpy as np
import torch

from mmrec.encoders.base import Encoder
from mmrec.enums import Modality

DIM = 384
CLUSTERS = 256
_rng = np.random.default_rng(0)
_CENTROIDS = _rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
_NOISE = (0.6 * _rng.standard_normal((4096, DIM))).astype(np.float32)


def _key(text: str) -> tuple[int, int]:
    cluster, number = text.split(" ", 2)[:2]
    return int(cluster[1:]), int(number[1:])


class ScaleText(Encoder):
    modality = Modality.TEXT
    dim = DIM

    def default_batch_size(self) -> int:
        return 1024

    def encode_batch(self, inputs):
        keys = np.array([_key(t) for t in inputs], dtype=np.int64)
        vectors = _CENTROIDS[keys[:, 0] % CLUSTERS] + _NOISE[(keys[:, 1] * 7919) % len(_NOISE)]
        extra = np.array([len(t) for t in inputs], dtype=np.float32)[:, None] * 1e-3
        return torch.from_numpy(vectors + extra)  # an edited text moves its vector
