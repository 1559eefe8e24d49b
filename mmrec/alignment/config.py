"""Typed options of ``mmrec align`` and the closed choices they use."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from mmrec.enums import (
    HeadKind,
    IndexType,
    Modality,
    Pivot,
    Precision,
    TuneParams,
    TuneTarget,
    parse_enum,
)
from mmrec.errors import ConfigError
from mmrec.index import parse_index

# CLIP's temperature recipe: logit scale starts at ln(1/0.07) and never exceeds 100.
LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = 100.0
DEFAULT_SHARED_DIM = 256
DEFAULT_MAX_STEPS = 1000  # an upper bound: early stopping ends most runs after 100-300 steps
RECALL_KS = (1, 5, 10)


@dataclass
class AlignConfig:
    """Every option of one ``align`` run; the resolved copy is saved in ``config.json``."""

    pivot: Pivot = Pivot.TEXT
    dim: int | None = None  # shared space size; with pivot text, the text encoder's dim
    head: HeadKind = HeadKind.LINEAR
    hidden: int = 1024  # width of the mlp head's hidden layer
    steps: int | None = None  # optimizer steps at most (0: apply the initial heads only)
    epochs: int | None = None  # alternative to steps: passes over the training pairs
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    val_split: float = 0.2
    seed: int = 0
    device: str = "auto"
    precision: Precision = Precision.AUTO  # autocast of the training steps (see runtime.py)
    eval_every: int = 10  # steps between validation checks
    patience: int = 10  # validation checks without improvement before stopping
    init: str | None = None  # None: the shipped heads where they fit; or an aligner/heads dir
    from_scratch: bool = False
    bridge: bool = True  # the ImageNet-label bridge for images, where the encoders allow
    bridge_weight: float | None = None  # None: chosen on the validation split
    memory_weight: float | None = None  # pair memory of images/sounds; None: chosen, 0: off
    hub_weight: float | None = None  # hubness correction of each index; None: chosen, 0: off
    modalities: list[str] | None = None  # default: every modality of the store
    fusion: dict[str, float] = field(default_factory=dict)  # per-modality weight, default 1
    index: IndexType = IndexType.AUTO  # faiss index type of every item index
    tune: TuneTarget = TuneTarget.NONE  # LiT: unfreeze the text encoder's top layers
    tune_layers: int = 2  # transformer layers unfrozen, counted from the top
    tune_lr: float = 2e-5  # their peak learning rate: small, or the pretrained space is lost
    tune_warmup: int = 20  # steps of linear warm-up to tune_lr, then cosine decay
    tune_params: TuneParams = TuneParams.LAYERS  # which of the top layers' parameters train
    tune_rank: int = 8  # with tune_params lora: the rank of the updates
    tune_captions: int = 0  # caption variants per item sampled from its text fields (0: off)
    tune_l2sp: float = 0.0  # L2-SP: weight of ||theta - theta_pretrained||^2 on tuned tensors
    val_smoothing: float = 0.0  # EMA weight of past validation scores in early stopping
    # with --tune: a kept step may lose at most this many standard errors of each pair's
    # validation R@10 against the untuned fitted heads (which are kept if no step does);
    # 0: none may lose, which is what "no worse" on the validation pairs measures
    tune_tolerance: float = 0.0

    def validate(self) -> AlignConfig:
        self.pivot = parse_enum(Pivot, self.pivot, "--pivot")
        self.head = parse_enum(HeadKind, self.head, "--head")
        self.index = parse_index(self.index)
        self.precision = parse_enum(Precision, self.precision, "--precision")
        self.tune = parse_enum(TuneTarget, self.tune, "--tune")
        self.tune_params = parse_enum(TuneParams, self.tune_params, "--tune-params")
        self.fusion = {parse_enum(Modality, m, "--fusion").value: float(w)
                       for m, w in self.fusion.items()}
        if self.modalities is not None:
            self.modalities = [parse_enum(Modality, m, "--modalities").value for m in self.modalities]
        _check(self.steps is None or self.steps >= 0, f"--steps must be >= 0, got {self.steps}")
        _check(self.epochs is None or self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        _check(self.steps is None or self.epochs is None, "give --steps or --epochs, not both")
        _check(self.batch_size >= 2, f"--batch-size must be at least 2, got {self.batch_size}")
        _check(self.lr > 0, f"--lr must be positive, got {self.lr}")
        _check(0 <= self.val_split < 1, f"--val-split must be in [0, 1), got {self.val_split}")
        _check(self.dim is None or self.dim >= 2, f"--dim must be at least 2, got {self.dim}")
        _check(self.hidden >= 1, f"--hidden must be at least 1, got {self.hidden}")
        _check(self.eval_every >= 1 and self.patience >= 1, "eval_every and patience must be >= 1")
        _check(self.bridge_weight is None or 0 <= self.bridge_weight <= 1,
               f"--bridge-weight must be in [0, 1], got {self.bridge_weight}")
        for name, weight in (("--memory-weight", self.memory_weight), ("--hub-weight", self.hub_weight)):
            _check(weight is None or 0 <= weight <= 4, f"{name} must be in [0, 4], got {weight}")
        _check(not (self.from_scratch and self.init),
               "--from-scratch and --init exclude each other")
        _check(all(w >= 0 for w in self.fusion.values()), "fusion weights must be >= 0")
        _check(self.tune_layers >= 1, f"--tune-layers must be at least 1, got {self.tune_layers}")
        _check(self.tune_lr > 0, f"--tune-lr must be positive, got {self.tune_lr}")
        _check(self.tune_warmup >= 0, f"--tune-warmup must be >= 0, got {self.tune_warmup}")
        _check(self.tune_rank >= 1, f"--tune-rank must be at least 1, got {self.tune_rank}")
        _check(self.tune_captions >= 0, f"--tune-captions must be >= 0, got {self.tune_captions}")
        _check(self.tune_l2sp >= 0, f"--tune-l2sp must be >= 0, got {self.tune_l2sp}")
        _check(self.tune_tolerance >= 0, f"--tune-tolerance must be >= 0, got {self.tune_tolerance}")
        _check(0 <= self.val_smoothing < 1,
               f"--val-smoothing must be in [0, 1), got {self.val_smoothing}")
        return self


def parse_weights(text: str | None, option: str = "--fusion") -> dict[str, float]:
    """``"text=1,image=0.5"`` as ``{"text": 1.0, "image": 0.5}``; None or "" as ``{}``."""
    weights = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"{option} takes MODALITY=WEIGHT pairs (e.g. text=1,image=0.5), "
                              f"got {part!r}")
        weights[parse_enum(Modality, name.strip(), option).value] = weight
    return weights


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
