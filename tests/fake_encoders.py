"""Deterministic fake encoders for fast tests, loaded through the real ``local:`` backend.

Each vector is a pure function of the input, so a resumed run can be compared with an
uninterrupted one bit for bit. ``MMREC_FAKE_DELAY`` (seconds per batch) slows them
down so a test can kill a run mid-way.
"""
from __future__ import annotations

import hashlib
import os
import time

import numpy as np
import torch

from mmrec.encoders.base import Encoder
from mmrec.enums import Modality


def _seeded(key: bytes, dim: int) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(key).digest()[:8], "little")
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(dim).astype(np.float32))


class _Fake(Encoder):
    dim = 8

    def encode_batch(self, inputs):
        delay = float(os.environ.get("MMREC_FAKE_DELAY", "0"))
        if delay:
            time.sleep(delay)
        return torch.stack([_seeded(self.key(x), self.dim) for x in inputs])


class FakeText(_Fake):
    modality = Modality.TEXT

    def key(self, text: str) -> bytes:
        return text.encode()


class FakeImage(_Fake):
    modality = Modality.IMAGE
    dim = 6

    def key(self, image) -> bytes:
        return np.asarray(image.resize((4, 4))).tobytes()


class FakeAudio(_Fake):
    modality = Modality.AUDIO
    dim = 4
    sample_rate = 8000

    def key(self, wave) -> bytes:
        return np.round(wave[:400], 3).tobytes()


class NaNText(FakeText):
    def encode_batch(self, inputs):
        out = super().encode_batch(inputs)
        out[0] = float("nan")
        return out


class NoWeightsText(FakeText):
    """Fails to load, as an encoder whose weights are not on a worker's machine does."""

    def load(self, device):
        from mmrec.errors import ModelNotFoundError

        raise ModelNotFoundError("no weights for NoWeightsText on this worker")
