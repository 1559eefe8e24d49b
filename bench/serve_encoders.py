"""Fast deterministic encoders for bench/serve.py, loaded through the public ``local:`` backend.

Text: a hashed bag of words (each word a fixed random 384-d vector), so similar titles
get similar vectors and a query costs what a real encoder's bookkeeping costs, not a
transformer's forward pass. Image: a fixed random projection of a 4x4 thumbnail.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from mmrec.encoders.base import Encoder
from mmrec.enums import Modality


def _word(word: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


class HashedText(Encoder):
    modality = Modality.TEXT
    dim = 384

    def encode_batch(self, inputs):
        rows = [sum(_word(w, self.dim) for w in text.lower().split()) for text in inputs]
        return torch.from_numpy(np.stack(rows))


class Thumbnail(Encoder):
    modality = Modality.IMAGE
    dim = 48

    def encode_batch(self, inputs):
        rows = [np.asarray(img.resize((4, 4)), dtype=np.float32).ravel() / 255.0 for img in inputs]
        return torch.from_numpy(np.stack(rows) - 0.5)
