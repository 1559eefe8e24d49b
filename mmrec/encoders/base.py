"""The encoder contract: a modality, a dimension and ``encode_batch``.

Batching, length sorting, normalisation, dtype and progress live here once; a backend
only turns a batch of prepared inputs into a matrix.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mmrec.enums import Modality

if TYPE_CHECKING:
    import numpy as np
    import torch


class Encoder(ABC):
    """One pretrained model embedding one modality.

    Inputs handed to :meth:`encode_batch`:

    - text: ``str`` (non-empty)
    - image: ``PIL.Image.Image`` in RGB mode
    - audio: 1-D ``numpy.float32`` waveform, mono, already at :attr:`sample_rate`
    """

    name: str
    modality: Modality
    dim: int
    sample_rate: int | None = None  # audio encoders only
    # Inputs per forward pass when the user gives none. Convolutional nets run fastest
    # on a CPU in small batches that stay in cache (EfficientNet-Lite0 on 2 cores: 61
    # images/s at 1, 22 at 32); transformers and GPUs want large ones.
    cpu_batch_size: int = 32
    accelerator_batch_size: int = 64

    def __init__(self) -> None:
        self.device: torch.device | None = None

    def load(self, device: torch.device) -> None:
        """Load weights onto ``device``. Called once, before the first batch."""
        self.device = device

    @abstractmethod
    def encode_batch(self, inputs: Sequence[Any]) -> torch.Tensor:
        """Return a ``(len(inputs), dim)`` float tensor; rows need not be normalised."""

    def default_batch_size(self) -> int:
        on_cpu = self.device is None or self.device.type == "cpu"
        return self.cpu_batch_size if on_cpu else self.accelerator_batch_size

    def input_size(self, item: Any) -> int:
        """A cost estimate used to sort inputs so a batch holds similar lengths."""
        if isinstance(item, str):
            return len(item)
        size = getattr(item, "size", None)
        return int(size) if isinstance(size, int) else 0

    def encode(
        self,
        inputs: Sequence[Any],
        batch_size: int | None = None,
        on_batch: Callable[[int], None] | None = None,
        return_norms: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Encode ``inputs`` in length-sorted batches; unit-norm float32 rows, input order.

        With ``return_norms`` also the raw vectors' L2 norms, so a linear head trained
        on raw features (EfficientNet's ImageNet classifier) can still be applied.
        """
        import numpy as np
        import torch

        from mmrec.runtime import autocast

        if self.device is None:
            raise RuntimeError(f"encoder {self.name} used before load()")
        batch_size = batch_size or self.default_batch_size()
        out = np.zeros((len(inputs), self.dim), dtype=np.float32)
        norms = np.zeros(len(inputs), dtype=np.float32)
        order = sorted(range(len(inputs)), key=lambda i: self.input_size(inputs[i]))
        with torch.inference_mode(), autocast(self.device):
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                vecs = self.encode_batch([inputs[i] for i in idx]).float()
                if vecs.shape != (len(idx), self.dim):
                    from mmrec.errors import ConfigError

                    raise ConfigError(f"encoder {self.name} returned shape {tuple(vecs.shape)} "
                                      f"for {len(idx)} inputs; it declares {self.dim}-d vectors")
                norms[idx] = vecs.norm(dim=-1).cpu().numpy()
                out[idx] = torch.nn.functional.normalize(vecs, dim=-1).cpu().numpy()
                if on_batch is not None:
                    on_batch(len(idx))
        return (out, norms) if return_norms else out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "modality": self.modality.value, "dim": self.dim}
