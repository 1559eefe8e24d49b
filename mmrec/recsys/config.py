"""Choices and options of `mmrec train`: light to import (the CLI builds its options from them)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from mmrec.enums import IndexType, ModelKind, SplitKind
from mmrec.errors import ConfigError
from mmrec.index import parse_index

# Per-model defaults for the options left as None. BPR's are RecBole's (Adam 1e-3,
# batch 2048, 64-d, stop after 10 epochs without improvement, at most 300 epochs).
DEFAULTS = {
    ModelKind.TWOTOWER: {"epochs": 30, "batch_size": 1024, "lr": 2e-3, "patience": 5,
                         "weight_decay": 0.1},
    ModelKind.BPR: {"epochs": 300, "batch_size": 2048, "lr": 1e-3, "patience": 10,
                    "weight_decay": 0.0},
    ModelKind.POP: {"epochs": 0, "batch_size": 0, "lr": 0.0, "patience": 0, "weight_decay": 0.0},
    ModelKind.ITEMKNN: {"epochs": 0, "batch_size": 0, "lr": 0.0, "patience": 0,
                        "weight_decay": 0.0},
}
# Closed-form models, their hyper-parameters chosen on validation (mmrec.recsys.tuning)
for _kind in (ModelKind.EASE, ModelKind.IALS, ModelKind.ITEMCF):
    DEFAULTS[_kind] = DEFAULTS[ModelKind.ITEMKNN]
# Trained on interactions alone: a store only names the catalog's items
INTERACTIONS_ONLY = (ModelKind.POP, ModelKind.EASE, ModelKind.IALS, ModelKind.ITEMCF)

# Epochs alone make a poor budget on small data, where an epoch is one optimizer step
# (the bundled demo: 154 training pairs, batch 1024): patience 5 stopped it at epoch 6
# on a 16-interaction validation part, recommending by popularity. So left to their
# defaults, the epochs grow to give at least MIN_STEPS steps and the patience to wait
# at least PATIENCE_STEPS steps, long enough to ride out a tiny, noisy validation
# part; on ml-100k (~80-100 steps an epoch) neither binds. Chosen on the demo's
# validation NDCG@20, mean of seeds 0-2: epochs alone 0.257, 300/30 steps 0.286,
# 300/60 0.310, 300/100 0.313, 600/60 0.301.
MIN_STEPS = 300
PATIENCE_STEPS = 100
RECENT = 10
# The two-tower's item-item term (mmrec.recsys.twotower) is on by default up to this many
# items (ml-1m has 3,706, ml-latest-small 9,742): W then adds at most 10k x 10k floats
# (400 MB) to the item vectors, its fit is 7 inversions of a 10k matrix. Measured at 10k
# (bench/item_item.py, 5k users, one thread): the term's fit ~390 s, peak RSS 2.9 GB,
# model directory 0.8 GB, 23 ms a recommendation; at 12k 670 s, 3.6 GB, 1.2 GB, 31 ms.
# Above it the towers alone score, as a recommendation must not cost items^2
# (--item-item: up to EASE's 30k).
ITEM_ITEM_MAX = 10_000
DP_BATCH_USERS = 256  # DP-SGD samples users, not pairs: a batch of about this many users
VALID_METRIC = "ndcg@20"  # early stopping and model selection, on the validation part


@dataclass
class TrainConfig:
    """Every option of one training run; None means the model's default (see DEFAULTS)."""

    model: ModelKind = ModelKind.TWOTOWER
    split: SplitKind = SplitKind.TEMPORAL
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup: int = 100  # optimizer steps of linear warm-up before the cosine decay
    temperature: float = 0.2
    negatives: int = 0  # extra uniformly sampled negatives per batch (twotower)
    hard_negatives: int = 0  # per example, mined from the faiss index each epoch (twotower)
    dim: int = 64
    hidden: int = 256  # twotower content adapter width; 0 = a single linear layer
    id_dropout: float = 0.5  # twotower: chance an id embedding is dropped in a step
    # twotower: the user tower also averages the latest this many history items; None:
    # RECENT for the temporal split, whose held-out items follow the history in time, 0
    # for the others (measured on ml-100k validation: temporal NDCG@20 0.153 -> 0.233,
    # random 0.285 -> 0.210, since a random held-out item is not the next one)
    recent: int | None = None
    patience: int | None = None
    test: bool = True  # False (--no-test): hold out validation only; the test data is elsewhere
    seed: int = 0
    device: str = "auto"
    min_rating: float | None = None
    user_field: str | None = None
    item_field: str | None = None
    rating_field: str | None = None
    timestamp_field: str | None = None
    index: IndexType = IndexType.AUTO  # faiss index type over the item vectors
    # DP-SGD (twotower, see mmrec.recsys.private): the target epsilon over the run; None: off
    dp_epsilon: float | None = None
    dp_delta: float | None = None  # None: min(1e-5, 0.1 / users)
    dp_max_grad_norm: float = 1.0  # each user's gradient is clipped to this L2 norm
    # ease, ials, itemcf: None = chosen on validation NDCG@20 from a grid (the chosen
    # value is written back here, so a model's config.json holds what it was fitted with)
    reg: float | None = None  # EASE lambda; iALS L2 regularisation
    alpha: float | None = None  # iALS confidence of an observed pair: 1 + alpha
    factors: int | None = None  # iALS
    neighbours: int | None = None  # itemcf: most similar items kept per item
    shrink: float | None = None  # itemcf: cosine shrinkage
    # twotower: add an EASE item-item term to the score (mmrec.recsys.twotower.item_item):
    # None = on up to ITEM_ITEM_MAX items and off with --dp-epsilon; its lambda
    # is ``reg`` and its weight ``item_item_weight``, each None = chosen on validation
    item_item: bool | None = None
    item_item_weight: float | None = None

    def resolved(self, train_pairs: int | None = None) -> TrainConfig:
        """A copy with every None default filled in, checked; given the number of
        training pairs, default epochs and patience also cover MIN_STEPS and
        PATIENCE_STEPS optimizer steps."""
        model = ModelKind(self.model)
        filled = {k: v if getattr(self, k) is None else getattr(self, k)
                  for k, v in DEFAULTS[model].items()}
        if self.dp_epsilon is not None and self.batch_size is None:
            filled["batch_size"] = DP_BATCH_USERS
        if train_pairs and filled["batch_size"] and self.dp_epsilon is None:
            steps = math.ceil(train_pairs / filled["batch_size"])  # per epoch
            if self.epochs is None:
                filled["epochs"] = max(filled["epochs"], math.ceil(MIN_STEPS / steps))
            if self.patience is None:
                filled["patience"] = max(filled["patience"], math.ceil(PATIENCE_STEPS / steps))
        split = SplitKind(self.split)
        if self.recent is None:
            filled["recent"] = RECENT if split is SplitKind.TEMPORAL else 0
        out = dataclasses.replace(self, model=model, split=split, index=parse_index(self.index), **filled)
        out.check()
        return out

    def check(self) -> None:
        trained = self.model in (ModelKind.TWOTOWER, ModelKind.BPR)
        rules = [
            (not trained or self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (not trained or self.batch_size >= 2, f"--batch-size must be at least 2, got {self.batch_size}"),
            (not trained or self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.temperature > 0, f"--temperature must be positive, got {self.temperature}"),
            (self.negatives >= 0 and self.hard_negatives >= 0, "--negatives must be >= 0"),
            (self.warmup >= 0, f"--warmup must be >= 0, got {self.warmup}"),
            (self.dim >= 1 and self.hidden >= 0, "--dim must be >= 1"),
            (self.recent >= 0, f"--recent must be >= 0, got {self.recent}"),
            (0 <= self.id_dropout < 1, f"--id-dropout must be in [0, 1), got {self.id_dropout}"),
            *self._dp_rules(),
            (self.reg is None or self.reg > 0, f"--reg must be positive, got {self.reg}"),
            (self.alpha is None or self.alpha >= 0, f"--alpha must be >= 0, got {self.alpha}"),
            (self.factors is None or self.factors >= 1, f"--factors must be >= 1, got {self.factors}"),
            (self.neighbours is None or self.neighbours >= 1,
             f"--neighbours must be >= 1, got {self.neighbours}"),
            (self.shrink is None or self.shrink >= 0, f"--shrink must be >= 0, got {self.shrink}"),
            (self.item_item_weight is None or self.item_item_weight >= 0,
             f"--item-item-weight must be >= 0, got {self.item_item_weight}"),
        ]
        for ok, message in rules:
            if not ok:
                raise ConfigError(message)

    def _dp_rules(self) -> list[tuple[bool, str]]:
        if self.dp_epsilon is None:
            return [(self.dp_delta is None, "--dp-delta needs --dp-epsilon")]
        return [
            (self.model is ModelKind.TWOTOWER, f"--dp-epsilon trains the twotower, not {self.model.value}"),
            (self.dp_epsilon > 0, f"--dp-epsilon must be positive, got {self.dp_epsilon}"),
            (self.dp_delta is None or 0 < self.dp_delta < 1, "--dp-delta must be in (0, 1)"),
            (self.dp_max_grad_norm > 0, "--dp-max-grad-norm must be positive"),
            (self.hard_negatives == 0, "--hard-negatives mines every user's ranking: not with --dp-epsilon"),
            (not self.item_item, "--item-item fits EASE on the raw interactions, which DP-SGD "
                                 "would not cover: not with --dp-epsilon"),
        ]
