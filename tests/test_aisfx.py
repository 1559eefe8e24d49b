"""aiSFX: our reimplementation against the original package's own embeddings.

The fixture holds five real CC0 clips and the embeddings that ``aisfx==0.1.2``
computed for them on its default (essentia) path; ``scripts/make_aisfx_golden.py``
regenerates it.
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmrec.encoders import aisfx
from mmrec.encoders.aisfx import AiSFXEncoder, log_mel_blocks
from mmrec.errors import InputError

GOLDEN = Path(__file__).parent / "fixtures" / "aisfx_golden.npz"
SR = aisfx.SAMPLE_RATE


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def encoder() -> AiSFXEncoder:
    enc = AiSFXEncoder()
    enc.load(torch.device("cpu"))
    return enc


def _waves(golden: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [golden[f"wave_{i}"] for i in range(len(golden["names"]))]


def _noise(seconds: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(round(seconds * SR), generator=gen) * 0.2 - 0.1


@pytest.mark.slow  # the real aiSFX weights
def test_golden_embeddings_match_the_original_package(encoder, golden):
    waves = _waves(golden)
    # One batch of different lengths: also checks each clip's blocks are averaged apart.
    ours = encoder.encode(waves, batch_size=len(waves))
    reference = golden["embeddings"] / np.linalg.norm(golden["embeddings"], axis=1, keepdims=True)
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() >= 0.999, dict(zip(golden["names"], cosines.round(5), strict=True))


@pytest.mark.slow  # the real aiSFX weights
def test_bf16_autocast_stays_close(encoder, golden):
    # CUDA runs encoders under bf16 autocast; CPU autocast exercises the same code path.
    wave, reference = golden["wave_3"], golden["embeddings"][3]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = encoder.encode([wave])[0]
    assert ours @ reference / np.linalg.norm(reference) >= 0.999


def test_golden_clips_are_real_and_licensed(golden):
    assert golden["embeddings"].shape == (len(golden["names"]), 512)
    assert 4 <= len(golden["names"]) <= 6
    for wave, licence in zip(_waves(golden), golden["licences"], strict=True):
        assert wave.dtype == np.float32 and 1.14 * SR < wave.size <= 4 * SR
        assert licence.startswith("CC0")


def test_block_counts_match_the_original_package(golden):
    counts = [log_mel_blocks(torch.from_numpy(w)).shape[0] for w in _waves(golden)]
    assert counts == golden["n_blocks"].tolist()
    assert max(counts) > 1  # the fixture exercises the mean over several blocks


def test_one_second_gives_one_padded_block_of_100_by_96():
    spec = aisfx.log_mel(_noise(1.0))
    assert spec.shape == (1 + math.ceil(SR / 1024), 96) == (45, 96)
    out = log_mel_blocks(_noise(1.0))
    assert out.shape == (1, 100, 96)
    assert torch.equal(out[0, :45], spec) and not out[0, 45:].any()  # zero padded


@pytest.mark.parametrize(
    ("n_samples", "n_frames", "n_blocks"),
    [
        (1, 2, 1),
        (1024, 2, 1),
        (1025, 3, 1),
        (99 * 1024, 100, 1),  # exactly one block
        (149 * 1024, 150, 2),  # exactly two
        (148 * 1024, 149, 1),  # an incomplete second block is dropped
        (10 * SR, 432, 7),
    ],
)
def test_frame_and_block_counts(n_samples, n_frames, n_blocks):
    wave = _noise(n_samples / SR)
    assert aisfx.frames(wave).shape == (n_frames, 2048)
    assert log_mel_blocks(wave).shape == (n_blocks, 100, 96)


def test_blocks_hop_fifty_frames():
    spec = aisfx.log_mel(_noise(10.0))
    out = aisfx.blocks(spec)
    for k in range(out.shape[0]):
        assert torch.equal(out[k], spec[50 * k : 50 * k + 100])


def test_first_frame_is_centred_on_sample_zero():
    wave = torch.arange(1, 3001, dtype=torch.float32)
    first, second = aisfx.frames(wave)[:2]
    assert not first[:1024].any() and torch.equal(first[1024:], wave[:1024])
    assert torch.equal(second, wave[:2048])


def test_mel_filterbank_bands_sum_to_one():
    bank = aisfx.mel_filterbank()
    assert bank.shape == (1025, 96) and (bank >= 0).all()
    assert torch.allclose(bank.sum(dim=0), torch.ones(96), atol=1e-6)


def test_window_is_symmetric_hann():
    window = aisfx.hann_window()
    n = torch.arange(2048, dtype=torch.float64)
    expected = 0.5 - 0.5 * torch.cos(2 * math.pi * n / 2047)  # /(N-1): symmetric
    assert torch.allclose(window.double(), expected, atol=1e-6)
    assert window[0] == 0 and window[-1] == 0


@pytest.mark.slow  # the real aiSFX weights
def test_silence_gives_finite_output(encoder):
    out = encoder.encode([np.zeros(SR, dtype=np.float32), np.zeros(10, dtype=np.float32)])
    assert out.shape == (2, 512) and np.isfinite(out).all()


@pytest.mark.slow  # the real aiSFX weights
def test_empty_waveform_raises_input_error(encoder):
    with pytest.raises(InputError, match="empty"):
        encoder.encode([np.zeros(0, dtype=np.float32)])


@pytest.mark.slow
@pytest.mark.parametrize("bad", [np.zeros((2, SR), np.float32), np.full(SR, np.nan, np.float32)])
def test_unusable_waveform_raises_input_error(encoder, bad):
    with pytest.raises(InputError):
        encoder.encode([bad])


def test_encoder_contract():
    enc = AiSFXEncoder()
    assert (enc.name, enc.modality.value, enc.dim, enc.sample_rate) == (
        "builtin:aisfx", "audio", 512, 44100)


def test_module_imports_without_torch():
    code = "import sys, mmrec.encoders.aisfx; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
