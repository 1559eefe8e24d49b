"""``builtin:aisfx``: the aiSFX sound-effects CNN (Ma & Lerch, ISMIR 2022), 512-d.

The PyPI package ``aisfx==0.1.2`` cannot be a dependency (it pins numpy 1.23 and
librosa 0.9.2), so this is a reimplementation, checked against the package's own
output by ``tests/test_aisfx.py``. It follows the package's default spectrogram path
(essentia; its librosa path feeds the network a transposed spectrogram):

- the waveform as given (the essentia loader applies no gain: no peak normalisation)
- frames of 2048 samples every 1024, the first centred on sample 0, zero padded, and
  as many as essentia's FrameCutter cuts: one per hop that starts before the end
- symmetric Hann window, magnitude FFT, squared, 96 HTK-mel triangles from 0 to
  22050 Hz computed on the mel axis, each band's weights summing to 1
- ``log10(1e4 * x + 1) / 9.4578`` (the package's "original" min-max constants)
- blocks of 100 frames every 50, an incomplete last block dropped; a clip shorter
  than one block is zero padded (the package would fail its hop-size assertion
  below 51 frames, about 1.14 s, instead)
- the embedding network on every block -> (blocks, 512), then the mean over blocks.

Weights: ``assets/aisfx/aisfx.safetensors``, made by ``scripts/convert_aisfx.py``;
licence CC BY 4.0, attribution in ``assets/aisfx/ATTRIBUTION.md``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mmrec.encoders.base import Encoder
from mmrec.enums import Modality
from mmrec.errors import InputError

if TYPE_CHECKING:
    import numpy as np
    import torch

SAMPLE_RATE = 44100
FRAME_SIZE = 2048
HOP_SIZE = 1024
N_MELS = 96
F_MIN, F_MAX = 0.0, 22050.0
# The package's "original" spectrogram normalisation: min 0, max over its training data.
LOG_MEL_MAX = 9.457798957824707
BLOCK_FRAMES = 100
BLOCK_HOP = 50
FRAMES_PER_FFT = 2048
# Blocks per network call: bounds activation memory for long clips (~2.4 MB a block).
BLOCKS_PER_CHUNK = 64
WEIGHTS = "aisfx/aisfx.safetensors"


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    import torch

    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_filterbank(
    n_freqs: int = FRAME_SIZE // 2 + 1,
    n_mels: int = N_MELS,
    sample_rate: int = SAMPLE_RATE,
    f_min: float = F_MIN,
    f_max: float = F_MAX,
) -> torch.Tensor:
    """``(n_freqs, n_mels)`` HTK-mel triangles, each column summing to 1.

    Essentia's "warping" weighting: the triangles are linear in mel, not in Hz (which
    is what torchaudio's and librosa's filterbanks do), so it is built here.
    """
    import torch

    low, high = _hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64)).tolist()
    edges = torch.linspace(low, high, n_mels + 2, dtype=torch.float64)
    bins = _hz_to_mel(torch.linspace(0.0, sample_rate / 2, n_freqs, dtype=torch.float64))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    # A band narrower than one FFT bin could catch no bin; leave it at zero, not NaN.
    return (weights / weights.sum(dim=0).clamp(min=1e-12)).float()


def hann_window(size: int = FRAME_SIZE) -> torch.Tensor:
    """Symmetric Hann (essentia's), not torch's default periodic one."""
    import torch

    return torch.hann_window(size, periodic=False, dtype=torch.float32)


def frames(wave: torch.Tensor) -> torch.Tensor:
    """``(n_frames, FRAME_SIZE)`` zero-padded frames, the first centred on sample 0.

    Essentia cuts a frame for every hop that starts before the last sample, so there
    are ``1 + ceil(n / HOP_SIZE)`` frames (``torch.stft(center=True)`` makes one fewer
    whenever ``n`` is not a multiple of the hop).
    """
    import torch

    n_frames = 1 + -(-wave.numel() // HOP_SIZE)
    half = FRAME_SIZE // 2
    right = (n_frames - 1) * HOP_SIZE + half - wave.numel()
    padded = torch.nn.functional.pad(wave, (half, right))
    return padded.unfold(0, FRAME_SIZE, HOP_SIZE)


def log_mel(
    wave: torch.Tensor, window: torch.Tensor | None = None, filterbank: torch.Tensor | None = None
) -> torch.Tensor:
    """``(n_frames, N_MELS)`` normalised log-mel spectrogram of a 1-D float waveform."""
    import torch

    window = hann_window().to(wave.device) if window is None else window
    filterbank = mel_filterbank().to(wave.device) if filterbank is None else filterbank
    # Frames are a view; windowing and the FFT run a slice at a time so a long clip
    # costs ~16 MB of spectrum at once rather than ~0.7 MB per second of audio.
    mel = [torch.fft.rfft(chunk * window).abs().square() @ filterbank
           for chunk in frames(wave).split(FRAMES_PER_FFT)]
    return torch.log10(torch.cat(mel) * 1e4 + 1.0) / LOG_MEL_MAX


def blocks(spec: torch.Tensor) -> torch.Tensor:
    """``(n_blocks, BLOCK_FRAMES, N_MELS)``: full blocks only, at least one (zero padded)."""
    import torch

    n_frames = spec.shape[0]
    n_blocks = max(1, (n_frames - BLOCK_FRAMES) // BLOCK_HOP + 1)
    if n_frames < BLOCK_FRAMES:
        spec = torch.nn.functional.pad(spec, (0, 0, 0, BLOCK_FRAMES - n_frames))
    return spec.unfold(0, BLOCK_FRAMES, BLOCK_HOP)[:n_blocks].transpose(1, 2)


def log_mel_blocks(
    wave: torch.Tensor, window: torch.Tensor | None = None, filterbank: torch.Tensor | None = None
) -> torch.Tensor:
    """The network's input for one clip: ``(n_blocks, 100, 96)``."""
    return blocks(log_mel(wave, window, filterbank))


def build_network() -> torch.nn.Module:
    """The embedding network, with the package's parameter names.

    Four conv blocks (two 3x3 conv + batch norm + ReLU, then 2x2 max pooling except
    after the last), 64-128-256-512 channels; then the mean over frequency and the max
    over time, as the package's ``EmbeddingNet`` computes them. Input ``(B, 1, T, F)``.
    """
    from collections import OrderedDict

    from torch import nn

    def conv_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
        layers = OrderedDict(
            conv1=nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            bn1=nn.BatchNorm2d(c_out),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            bn2=nn.BatchNorm2d(c_out),
            relu2=nn.ReLU(),
        )
        if pool:
            layers["pool"] = nn.MaxPool2d(2)
        return nn.Sequential(layers)

    widths = [1, 64, 128, 256, 512]
    layers = OrderedDict(
        (f"conv_block{i}", conv_block(widths[i - 1], widths[i], pool=i < 4)) for i in range(1, 5)
    )
    layers["freq_mean"] = nn.AdaptiveAvgPool2d((None, 1))
    layers["time_max"] = nn.AdaptiveMaxPool2d(1)
    layers["flatten"] = nn.Flatten()
    return nn.Sequential(layers)


def _as_tensor(wave: np.ndarray, device: torch.device) -> torch.Tensor:
    import numpy as np
    import torch

    array = np.asarray(wave, dtype=np.float32)
    if array.ndim != 1:
        raise InputError(f"aiSFX expects a 1-D mono waveform, got shape {array.shape}")
    if array.size == 0:
        raise InputError("empty audio: the waveform has no samples")
    if not np.isfinite(array).all():
        raise InputError("audio contains NaN or infinite samples")
    if not array.flags.writeable:  # e.g. memory-mapped: torch warns on read-only arrays
        array = array.copy()
    return torch.from_numpy(array).to(device)


class AiSFXEncoder(Encoder):
    """aiSFX sound-effects embeddings: mean over ~2.3 s blocks of the 512-d CNN output."""

    name = "builtin:aisfx"
    modality = Modality.AUDIO
    dim = 512
    sample_rate = SAMPLE_RATE
    cpu_batch_size = 4  # measured: 26 clips/s at 4, 20 at 32 on 2 CPU cores

    def load(self, device: torch.device) -> None:
        from safetensors.torch import load_file

        from mmrec.resources import asset

        network = build_network()
        # strict: a missing or renamed tensor must fail here, never run random weights
        network.load_state_dict(load_file(str(asset(WEIGHTS))), strict=True)
        self.network = network.eval().to(device)
        self.window = hann_window().to(device)
        self.filterbank = mel_filterbank().to(device)
        super().load(device)

    def encode_batch(self, inputs: Sequence[np.ndarray]) -> torch.Tensor:
        import torch

        # The spectrogram stays fp32 under the runtime's bf16 autocast so the network's
        # input is the reference's; only the network runs in bf16 (cosine to fp32 stays
        # above 0.9999 on the golden clips).
        with torch.autocast(self.device.type, enabled=False):
            clips = [log_mel_blocks(_as_tensor(w, self.device), self.window, self.filterbank)
                     for w in inputs]
        counts = [c.shape[0] for c in clips]
        per_block = self._embed_blocks(torch.cat(clips))
        return torch.stack([b.mean(dim=0) for b in per_block.split(counts)])

    def _embed_blocks(self, spec_blocks: torch.Tensor) -> torch.Tensor:
        import torch

        x = spec_blocks.unsqueeze(1)  # one input channel
        chunks = x.split(BLOCKS_PER_CHUNK)
        return torch.cat([self.network(chunk) for chunk in chunks])
