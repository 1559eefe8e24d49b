"""The training loop: AdamW on the heads and the temperature, early stopping on validation.

Heads fitted on a few thousand pairs overfit after ~100-300 steps (measured here), so
every ``eval_every`` steps the validation split's mean cross-modal R@10 is computed;
the best weights are kept (step 0, the initial heads, included) and training stops
after ``patience`` checks without improvement.

A step costs what its batch costs, not what the catalog costs: each batch's rows are
gathered from the (memory-mapped) store matrices, which never go whole to the device,
and a check ranks a fixed, seeded sample of at most VAL_GALLERY validation items
against each other, however many items are held out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmrec import distributed as dist
from mmrec.alignment.config import AlignConfig
from mmrec.alignment.losses import has_pairs, multimodal_info_nce
from mmrec.alignment.retrieval import pair_scores
from mmrec.progress import NullProgress, Progress
from mmrec.runtime import autocast, one_cpu_thread
from mmrec.store import release

if TYPE_CHECKING:
    import numpy as np
    import torch

    from mmrec.alignment.heads import HeadSet
    from mmrec.alignment.tune import TunedEncoder


VAL_GALLERY = 5_000  # validation items ranked at each check (a seeded sample beyond)
RELEASE_EVERY = 32  # steps between drops of the memory-mapped matrices' resident pages


def gallery_sample(rows: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """A fixed, seeded sample of at most ``limit`` of ``rows`` (sorted), all of them if fewer:
    the same items at every check, so checks stay comparable and cost what ``limit`` costs."""
    import numpy as np

    if len(rows) <= limit:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))


@dataclass
class TrainData:
    """Per-modality unit encoder rows and presence masks, with the split as row numbers.

    ``matrices`` may be memory-mapped: only batches and validation rows are read.
    ``val`` are the rows validation checks rank (see :func:`gallery_sample`).
    """

    matrices: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    train: np.ndarray
    val: np.ndarray

    def paired(self, rows: np.ndarray) -> np.ndarray:
        """The rows among ``rows`` that have at least two modalities: the only useful ones."""
        import numpy as np

        count = sum(mask[rows].astype(int) for mask in self.masks.values())
        return rows[np.asarray(count) >= 2]


@dataclass
class FitResult:
    steps: int = 0  # optimizer steps run
    best_step: int = 0
    best_r10: float = float("nan")  # mean cross-modal validation R@10 of the kept weights
    best_mrr: float = float("nan")
    best_pairs: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # per pair
    within_floor: bool = True  # False: no check (step 0 included) kept every pair's floor
    stopped_early: bool = False
    history: list[dict[str, float | None]] = field(default_factory=list)


def resolve_steps(config: AlignConfig, pairs: int) -> int:
    if config.steps is not None:
        return config.steps
    if config.epochs is not None:
        return config.epochs * max(1, math.ceil(pairs / config.batch_size))
    from mmrec.alignment.config import DEFAULT_MAX_STEPS

    return DEFAULT_MAX_STEPS


Pairs = dict  # {"a->b": (R@10, MRR, queries)} of one validation check


def validation_pairs(heads: HeadSet, data: TrainData) -> Pairs:
    """Each cross-modal pair's R@10, MRR and query count on the validation rows."""
    import numpy as np

    if not len(data.val):
        return {}
    projected = {m: (heads.project(m, data.matrices[m][data.val]), data.masks[m][data.val])
                 for m in data.matrices}
    return pair_scores(projected, np.arange(len(data.val)), k=10)


def mean_score(pairs: Pairs) -> tuple[float, float]:
    """Mean R@10 (the early-stopping criterion) and MRR (its tie-break) over the pairs."""
    if not pairs:
        return float("nan"), float("nan")
    return (sum(r for r, _, _ in pairs.values()) / len(pairs),
            sum(rr for _, rr, _ in pairs.values()) / len(pairs))


def validation_score(heads: HeadSet, data: TrainData) -> tuple[float, float]:
    """Mean cross-modal R@10 (and MRR, the tie-break) of ``heads`` on the validation rows."""
    return mean_score(validation_pairs(heads, data))


def pair_floor(reference: Pairs, tolerance: float) -> dict[str, float]:
    """The validation R@10 each pair must keep: ``reference``'s, less ``tolerance``
    standard errors of it (``sqrt(p (1 - p) / n)``, the binomial error of a recall on
    ``n`` queries), so a pair may move within its own noise and no further, however
    much the other pairs gain. The tolerance scales with each pair's validation size:
    20 audio queries are noisier than 500 text ones."""
    return {pair: r - tolerance * math.sqrt(r * (1 - r) / n) for pair, (r, _, n) in reference.items()}


def _masks(data: TrainData, device: torch.device) -> dict[str, Any]:
    """The presence masks on ``device`` (a byte per item: the matrices stay where they are)."""
    import torch

    return {m: torch.as_tensor(data.masks[m], device=device) for m in data.masks}


def gather(matrix: np.ndarray, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``matrix[rows]`` on ``device``: one batch read from a (memory-mapped) matrix."""
    import numpy as np
    import torch

    picked = np.asarray(matrix[rows.cpu().numpy()], dtype=np.float32)
    return torch.from_numpy(picked).to(device)


def _batches(rows: np.ndarray, batch_size: int, seed: int):
    """Endless shuffled passes over ``rows``, each cut into batches of ``batch_size``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(rows)
        for start in range(0, len(order) - 1, batch_size):
            batch = order[start:start + batch_size]
            if len(batch) >= 2:
                yield batch


class _Best:
    """The best validation score so far and a copy of the weights that reached it."""

    def __init__(self, heads: HeadSet, pairs: Pairs, tuned: TunedEncoder | None = None,
                 smoothing: float = 0.0, floor: dict[str, float] | None = None) -> None:
        score = mean_score(pairs)
        self.heads, self.score, self.step, self.bad, self.tuned = heads, score, 0, 0, tuned
        self.pairs, self.floor = pairs, floor or {}
        self.within = self.admissible(pairs)  # whether the weights held keep the floor
        # with smoothing, checks are compared by an EMA of the scores: a lucky spike of a
        # noisy validation curve is not kept over a level stretch. ``best_smooth``: the
        # run's best (patience counts from it); ``kept_smooth``: the kept check's
        self.smoothing, self.smooth, self.best_smooth, self.kept_smooth = smoothing, score, score, score
        self.state = self._copy()

    @property
    def r10(self) -> float:
        return self.score[0]

    def _copy(self) -> dict[str, Any]:
        heads = {k: v.detach().clone() for k, v in self.heads.net.state_dict().items()}
        return {"heads": heads, "tuned": self.tuned.state() if self.tuned else {}}

    def admissible(self, pairs: Pairs) -> bool:
        """Every pair at or above its floor (a pair without queries has nothing to lose)."""
        return all(pairs[p][0] >= least - 1e-9 for p, least in self.floor.items() if p in pairs)

    def update(self, pairs: Pairs, step: int) -> None:
        score, a = mean_score(pairs), self.smoothing
        self.smooth = new = (a * self.smooth[0] + (1 - a) * score[0],
                             a * self.smooth[1] + (1 - a) * score[1])
        # patience runs while the run improves, kept or not (below a floor, a run still
        # learning, e.g. a head from scratch, is not cut short)
        if _better(new, self.best_smooth):
            self.best_smooth, self.bad = new, 0
        else:
            self.bad += 1
        # a check below some pair's floor is never kept, and the first one above it always
        if self.admissible(pairs) and (_better(new, self.kept_smooth) or not self.within):
            self.score, self.step, self.state = score, step, self._copy()
            self.kept_smooth, self.pairs, self.within = new, pairs, True

    def restore(self) -> None:
        self.heads.net.load_state_dict(self.state["heads"])
        if self.tuned is not None:
            self.tuned.restore(self.state["tuned"])


def _better(new: tuple[float, float], old: tuple[float, float]) -> bool:
    """A higher R@10, or the same and a higher MRR."""
    return new[0] > old[0] + 1e-9 or (abs(new[0] - old[0]) <= 1e-9 and new[1] > old[1] + 1e-9)


def fit(heads: HeadSet, data: TrainData, config: AlignConfig, device: torch.device,
        progress: Progress | None = None, tuned: TunedEncoder | None = None,
        floor: dict[str, float] | None = None) -> FitResult:
    """Train ``heads`` in place; on return they hold the best validation weights.

    With ``tuned`` (``--tune text``) the text encoder's unfrozen layers train too: batch
    text vectors come from it, and its best weights are kept along with the heads'.
    With ``floor`` (:func:`pair_floor`) only checks that keep every pair's validation
    R@10 at or above its floor are candidates; ``within_floor`` says whether one did.
    """
    rows = data.paired(data.train)
    total = resolve_steps(config, len(rows))
    pairs = validation_pairs(heads, data)
    score = mean_score(pairs)
    best = _Best(heads, pairs, tuned, config.val_smoothing, floor)
    result = FitResult(best_r10=score[0], best_mrr=score[1], best_pairs=pairs,
                       within_floor=best.within, history=[_entry(0, None, pairs, heads)])
    if total == 0 or len(rows) < 2:
        return result
    validate = not math.isnan(score[0])  # a split with no pair cannot judge anything
    advance = (progress or NullProgress()).task("align", total)
    with one_cpu_thread(device):
        loop = _Loop(heads, data, config, device, rows, tuned, total)
        loop.run(total, best, result, advance, validate)
    if validate:
        best.restore()
        result.best_step, (result.best_r10, result.best_mrr) = best.step, best.score
        result.best_pairs, result.within_floor = best.pairs, best.within
    else:  # nothing held out: the last weights are all there is
        result.best_step, result.best_r10 = result.steps, float("nan")
    return result


class _Loop:
    """Optimizer steps over shuffled batches, with a validation check every few steps."""

    def __init__(self, heads: HeadSet, data: TrainData, config: AlignConfig,
                 device: torch.device, rows: np.ndarray, tuned: TunedEncoder | None = None,
                 total: int = 1) -> None:
        self.heads, self.data, self.config, self.device = heads, data, config, device
        self.present = _masks(data, device)
        self.tuned = tuned
        self.optimizer, self.schedule = _optimizer(heads, config, tuned, total)
        self.batches = _batches(rows, min(config.batch_size, len(rows)), config.seed)
        # under torchrun: DDP over the heads, each rank embedding its shard of the batch
        # (a modality some items lack can have no pair in a batch: its head then idles)
        partial = not all(mask.all() for mask in data.masks.values())
        self.loss = dist.data_parallel(heads.net, self._batch_loss, device, partial)

    def _batch_loss(self, index: torch.Tensor) -> torch.Tensor:
        mine = index[dist.shard(len(index))]
        present = {m: self.present[m][index] for m in self.present}
        with autocast(self.device, self.config.precision):  # forward only; backward follows
            vectors = {m: dist.gather_rows(self.heads(m, self._inputs(m, mine)), len(index))
                       for m in self.data.matrices}
            loss = multimodal_info_nce(vectors, present, self.heads.scale())
        return loss + self.tuned.penalty() if self.tuned is not None else loss

    def _inputs(self, modality: str, rows: torch.Tensor) -> torch.Tensor:
        """The batch's encoder vectors: from the store, or re-encoded by the tuned encoder."""
        if self.tuned is not None and modality == self.tuned.modality:
            return self.tuned.vectors(rows, sample=True)
        return gather(self.data.matrices[modality], rows, self.device)

    def _validate(self) -> Pairs:
        if self.tuned is not None:  # the held-out texts as the encoder now embeds them
            self.tuned.refresh_quick(self.data.matrices[self.tuned.modality], self.data.val)
        return validation_pairs(self.heads, self.data)

    def run(self, total: int, best: _Best, result: FitResult, advance: Any,
            validate: bool) -> None:
        r10 = best.r10
        for step in range(1, total + 1):
            loss = _step(self.heads, self.optimizer, self.loss, self.present,
                         next(self.batches), self.device)
            self.schedule.step()
            result.steps = step
            if step % RELEASE_EVERY == 0:  # pages of the memory-mapped matrices batches read
                for matrix in self.data.matrices.values():
                    release(matrix)
            if validate and (step % self.config.eval_every == 0 or step == total):
                pairs = dist.from_main(self._validate)
                r10 = mean_score(pairs)[0]
                best.update(pairs, step)
                result.history.append(_entry(step, loss, pairs, self.heads))
            advance(1, loss=loss, temp=self.heads.temperature(), r10=r10)
            if best.bad >= self.config.patience:
                result.stopped_early = True
                return


def _entry(step: int, loss: float | None, pairs: Pairs, heads: HeadSet) -> dict[str, Any]:
    """One validation check for the history (NaN as None: the history is saved as JSON)."""
    clean = lambda v: None if v is None or math.isnan(v) else round(float(v), 6)  # noqa: E731
    score = mean_score(pairs)
    return {"step": step, "loss": clean(loss), "val_r10": clean(score[0]),
            "val_mrr": clean(score[1]), "temperature": clean(heads.temperature()),
            "val_pairs": {p: clean(r) for p, (r, _, _) in pairs.items()}}


def _optimizer(heads: HeadSet, config: AlignConfig, tuned: TunedEncoder | None = None,
               total: int = 1) -> tuple[Any, Any]:
    """AdamW and its schedule; the temperature is not decayed (decay would pull it
    towards 1). Heads keep a constant lr; tuned encoder layers warm up, then decay."""
    import torch

    scale = heads.net.logit_scale
    weights = [p for p in heads.net.parameters() if p is not scale]
    groups = [{"params": weights, "weight_decay": config.weight_decay},
              {"params": [scale], "weight_decay": 0.0}]
    factors = [lambda _: 1.0, lambda _: 1.0]
    if tuned is not None:
        groups.append(tuned.param_group())
        factors.append(tuned.schedule(total))
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def _step(heads: HeadSet, optimizer: Any, batch_loss: Any, present: dict[str, Any],
          batch: np.ndarray, device: torch.device) -> float:
    import torch

    heads.net.train()
    index = torch.as_tensor(batch, device=device)
    if not has_pairs({m: present[m][index] for m in present}):
        return float("nan")  # decided from the masks, so every rank skips the same steps
    loss = batch_loss(index)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    heads.clamp_()
    return float(loss.detach())
