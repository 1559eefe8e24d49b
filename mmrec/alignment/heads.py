"""Projection heads: one small network per modality into the pivot space.

With ``pivot=text`` the text modality has no head: its vectors *are* the space
(measured here, keeping the text space transfers best to new domains). With
``pivot=shared`` every modality gets a head into a learned ``dim``-d space.
Outputs are L2-normalised. Saved as safetensors with the architecture in the
file's metadata, so loading rebuilds exactly what was trained.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.alignment.config import LOGIT_SCALE_INIT, LOGIT_SCALE_MAX
from mmrec.atomic import save_safetensors
from mmrec.enums import HeadKind, Pivot
from mmrec.errors import HeadsError

if TYPE_CHECKING:
    import numpy as np
    import torch

HEADS_FILE = "heads.safetensors"


def build_head(kind: HeadKind, in_dim: int, out_dim: int, hidden: int) -> torch.nn.Module:
    from torch import nn

    if HeadKind(kind) is HeadKind.LINEAR:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(0.1),
                         nn.Linear(hidden, out_dim))


class HeadSet:
    """The heads of one aligner plus the learnable temperature.

    A plain class around a torch ``nn.Module`` (``self.net``) so this module imports
    without torch; ``self.net`` holds every trainable tensor (``heads.<modality>.*``
    and ``logit_scale``).
    """

    def __init__(self, in_dims: dict[str, int], out_dim: int, kind: HeadKind | str,
                 hidden: int, pivot: Pivot | str) -> None:
        import torch
        from torch import nn

        self.in_dims, self.out_dim = {m: int(d) for m, d in in_dims.items()}, int(out_dim)
        self.kind, self.hidden, self.pivot = HeadKind(kind), int(hidden), Pivot(pivot)
        self.net = nn.Module()
        self.net.heads = nn.ModuleDict({m: build_head(self.kind, d, self.out_dim, self.hidden)
                                        for m, d in self.in_dims.items()
                                        if not self.is_identity(m)})
        self.net.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))

    def is_identity(self, modality: str) -> bool:
        return self.pivot is Pivot.TEXT and modality == "text"

    def has(self, modality: str) -> bool:
        return modality in self.in_dims

    def __call__(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        from torch.nn.functional import normalize

        if not self.is_identity(modality):
            x = self.net.heads[modality](x)
        return normalize(x, dim=-1)

    def scale(self) -> torch.Tensor:
        return self.net.logit_scale.exp().clamp(max=LOGIT_SCALE_MAX)

    def clamp_(self) -> None:
        """Keep the parameter itself under the cap, so its gradient never dies above it."""
        import torch

        with torch.no_grad():
            self.net.logit_scale.clamp_(0.0, math.log(LOGIT_SCALE_MAX))

    def temperature(self) -> float:
        return float(1.0 / self.scale().detach())

    def to(self, device: Any) -> HeadSet:
        self.net.to(device)
        return self

    @property
    def device(self) -> Any:
        return self.net.logit_scale.device

    def architecture(self) -> dict[str, Any]:
        return {"in_dims": self.in_dims, "out_dim": self.out_dim, "kind": self.kind.value,
                "hidden": self.hidden, "pivot": self.pivot.value}

    def project(self, modality: str, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Rows of ``x`` (unit encoder vectors) projected and normalised, float32 numpy."""
        import numpy as np
        import torch

        self.net.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(x), batch):
                # a copy of the chunk: x may be a read-only memory map
                rows = torch.as_tensor(np.array(x[i:i + batch], dtype=np.float32), device=self.device)
                out.append(self(modality, rows).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.out_dim), np.float32)


def save_heads(heads: HeadSet, directory: Path) -> None:
    tensors = dict(heads.net.state_dict())
    save_safetensors(directory / HEADS_FILE, tensors,
                     metadata={"architecture": json.dumps(heads.architecture())})


def load_heads(directory: Path, device: Any = None) -> HeadSet:
    """Rebuild the head set saved in ``directory``; strict: no tensor may be missing."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(directory) / HEADS_FILE
    if not path.is_file():
        raise HeadsError(f"{directory}: no {HEADS_FILE}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            arch = json.loads((fh.metadata() or {}).get("architecture", "null") or "null")
        heads = HeadSet(arch["in_dims"], arch["out_dim"], arch["kind"], arch["hidden"],
                        arch["pivot"])
        # strict: a missing or misshapen tensor must fail here, never leave random weights
        heads.net.load_state_dict(load_file(str(path)), strict=True)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HeadsError(f"{path}: unreadable heads ({first})") from exc
    return heads.to(device) if device is not None else heads
