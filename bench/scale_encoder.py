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


IMAGE_VARIANTS = 16  # images per cluster: bench/scale.py writes CLUSTERS x IMAGE_VARIANTS files
_IMAGE_CENTROIDS = _rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
_IMAGE_NOISE = (0.6 * _rng.standard_normal((IMAGE_VARIANTS, DIM))).astype(np.float32)


def image_key(cluster: int, number: int) -> tuple[int, int]:
    """The (cluster, variant) an item's image shows: the variant follows its text's noise row."""
    return cluster % CLUSTERS, ((number * 7919) % len(_NOISE)) % IMAGE_VARIANTS


class ScaleImage(Encoder):
    """The second modality for align: a tiny image whose first pixel holds (cluster,
    variant) maps to its own random centroid plus noise, so an item's image vector
    corresponds to its text vector (same cluster, related noise) through a map the
    heads must learn: planted cross-modal structure at no model cost."""

    modality = Modality.IMAGE
    dim = DIM

    def default_batch_size(self) -> int:
        return 1024

    def encode_batch(self, inputs):
        keys = np.array([img.getpixel((0, 0))[:2] for img in inputs], dtype=np.int64)
        vectors = _IMAGE_CENTROIDS[keys[:, 0] % CLUSTERS] + _IMAGE_NOISE[keys[:, 1] % IMAGE_VARIANTS]
        return torch.from_numpy(vectors)
