"""The closed choices of mmrec, in one bottom module, and their one parser.

Every option that takes one of a fixed set of values is an Enum here, so the CLI
builds its choices from them and :func:`parse_enum` gives the same one-line error
(listing the valid values) wherever a library caller passes a string.
"""
from __future__ import annotations

import enum
from typing import TypeVar

from mmrec.errors import ConfigError

E = TypeVar("E", bound=enum.Enum)


class _Choice(str, enum.Enum):
    def __str__(self) -> str:
        return self.value


class Modality(_Choice):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"


class Pivot(_Choice):
    """The space every modality is projected into."""

    TEXT = "text"  # the text encoder's own space: text vectors pass through unchanged
    SHARED = "shared"  # a learned space of --dim dimensions, one head per modality


class TuneTarget(_Choice):
    """Which pretrained encoder ``align --tune`` unfreezes the top layers of (LiT: text;
    or image, with the text tower locked)."""

    NONE = "none"  # every encoder frozen: only the heads train
    TEXT = "text"  # the text encoder's top layers, re-encoding each batch's texts
    IMAGE = "image"  # the image encoder's top blocks (text locked), from cached lower maps


class TuneParams(_Choice):
    """Which parameters of the unfrozen top layers ``--tune`` trains."""

    LAYERS = "layers"  # every weight of the top layers
    BITFIT = "bitfit"  # their biases and LayerNorms only (Ben Zaken et al. 2022)
    LORA = "lora"  # low-rank updates of their attention projections (Hu et al. 2022)


class HeadKind(_Choice):
    LINEAR = "linear"
    MLP = "mlp"


class Target(_Choice):
    """Which item vectors a search runs over."""

    FUSED = "fused"
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"


class RetrievalSplit(_Choice):
    """The items ``evaluate retrieval`` measures on."""

    VAL = "val"  # the items align held out: never trained on, but they chose the stopping step
    ALL = "all"  # every item: for zero-shot aligners, or a look at the fit


class ModelKind(_Choice):
    TWOTOWER = "twotower"
    BPR = "bpr"
    POP = "pop"
    ITEMKNN = "itemknn"
    EASE = "ease"
    IALS = "ials"
    ITEMCF = "itemcf"


class SplitKind(_Choice):
    TEMPORAL = "temporal"
    RANDOM = "random"
    COLD_ITEM = "cold-item"


class IndexType(_Choice):
    AUTO = "auto"  # chosen by size and memory budget (mmrec.index.choose_index)
    FLAT = "flat"  # exact
    HNSW = "hnsw"  # graph over the full vectors
    IVF = "ivf"  # inverted file over the full vectors
    IVFPQ = "ivfpq"  # inverted file over product-quantised codes (dim/4 bytes a vector)
    SQ8 = "sq8"  # inverted file over 8-bit scalar-quantised vectors (dim bytes a vector)


class Engine(_Choice):
    """Where `mmrec encode` runs its encoders."""

    LOCAL = "local"  # this process
    RAY = "ray"  # a Ray actor pool (mmrec.ray_encode), one encoder per actor


class DeviceChoice(_Choice):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


class ExploreKind(_Choice):
    """How ``recommend --explore`` and replay evaluation rank a user's candidates."""

    GREEDY = "greedy"  # the posterior mean: learns from feedback, never explores
    UCB = "ucb"
    THOMPSON = "thompson"
    EPSILON = "epsilon"


class Precision(_Choice):
    AUTO = "auto"  # bf16 autocast on CUDA where supported, fp32 elsewhere
    FP32 = "fp32"
    BF16 = "bf16"


class OnError(_Choice):
    SKIP = "skip"
    FAIL = "fail"


def parse_enum(kind: type[E], value: object, option: str) -> E:
    """``kind(value)``, or a ConfigError that names ``option`` and lists the valid values."""
    try:
        return kind(value)
    except ValueError:
        valid = ", ".join(str(v.value) for v in kind)
        raise ConfigError(f"{option} must be one of {valid}, got {value!r}") from None
