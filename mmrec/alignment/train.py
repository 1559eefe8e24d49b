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
from mmrec.alignment.retrieval import validation_score as score_pairs
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
    stopped_early: bool = False
    history: list[dict[str, float | None]] = field(default_factory=list)


def resolve_steps(config: AlignConfig, pairs: int) -> int:
    if config.steps is not None:
        return config.steps
    if config.epochs is not None:
        return config.epochs * max(1, math.ceil(pairs / config.batch_size))
    from mmrec.alignment.config import DEFAULT_MAX_STEPS

    return DEFAULT_MAX_STEPS


def validation_score(heads: HeadSet, data: TrainData) -> tuple[float, float]:
    """Mean cross-modal R@10 (and MRR, the tie-break) of ``heads`` on the validation rows."""
    import numpy as np

    if not len(data.val):
        return float("nan"), float("nan")
    projected = {m: (heads.project(m, data.matrices[m][data.val]), data.masks[m][data.val])
                 for m in data.matrices}
    return score_pairs(projected, np.arange(len(data.val)), k=10)


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

    def __init__(self, heads: HeadSet, score: tuple[float, float],
                 tuned: TunedEncoder | None = None, smoothing: float = 0.0) -> None:
        self.heads, self.score, self.step, self.bad, self.tuned = heads, score, 0, 0, tuned
        # with smoothing, checks are compared by an EMA of the scores: a lucky spike of a
        # noisy validation curve is not kept over a level stretch
        self.smoothing, self.smooth, self.best_smooth = smoothing, score, score
        self.state = self._copy()

    @property
    def r10(self) -> float:
        return self.score[0]

    def _copy(self) -> dict[str, Any]:
        heads = {k: v.detach().clone() for k, v in self.heads.net.state_dict().items()}
        return {"heads": heads, "tuned": self.tuned.state() if self.tuned else {}}

    def update(self, score: tuple[float, float], step: int) -> None:
        a = self.smoothing
        self.smooth = (a * self.smooth[0] + (1 - a) * score[0], a * self.smooth[1] + (1 - a) * score[1])
        new, old = self.smooth, self.best_smooth
        better = new[0] > old[0] + 1e-9 or (abs(new[0] - old[0]) <= 1e-9 and new[1] > old[1] + 1e-9)
        if better:
            self.score, self.step, self.bad, self.state = score, step, 0, self._copy()
            self.best_smooth = new
        else:
            self.bad += 1

    def restore(self) -> None:
        self.heads.net.load_state_dict(self.state["heads"])
        if self.tuned is not None:
            self.tuned.restore(self.state["tuned"])


def fit(heads: HeadSet, data: TrainData, config: AlignConfig, device: torch.device,
        progress: Progress | None = None, tuned: TunedEncoder | None = None) -> FitResult:
    """Train ``heads`` in place; on return they hold the best validation weights.

    With ``tuned`` (``--tune text``) the text encoder's unfrozen layers train too: batch
    text vectors come from it, and its best weights are kept along with the heads'.
    """
    rows = data.paired(data.train)
    total = resolve_steps(config, len(rows))
    score = validation_score(heads, data)
    result = FitResult(best_r10=score[0], history=[_entry(0, None, score, heads)])
    if total == 0 or len(rows) < 2:
        return result
    best = _Best(heads, score, tuned, config.val_smoothing)
    validate = not math.isnan(score[0])  # a split with no pair cannot judge anything
    advance = (progress or NullProgress()).task("align", total)
    with one_cpu_thread(device):
        loop = _Loop(heads, data, config, device, rows, tuned, total)
        loop.run(total, best, result, advance, validate)
    if validate:
        best.restore()
        result.best_step, result.best_r10 = best.step, best.r10
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

    def _validate(self) -> tuple[float, float]:
        if self.tuned is not None:  # the held-out texts as the encoder now embeds them
            self.tuned.refresh_quick(self.data.matrices[self.tuned.modality], self.data.val)
        return validation_score(self.heads, self.data)

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
                score = dist.from_main(self._validate)
                r10 = score[0]
                best.update(score, step)
                result.history.append(_entry(step, loss, score, self.heads))
            advance(1, loss=loss, temp=self.heads.temperature(), r10=r10)
            if best.bad >= self.config.patience:
                result.stopped_early = True
                return


def _entry(step: int, loss: float | None, score: tuple[float, float],
           heads: HeadSet) -> dict[str, float | None]:
    """One validation check for the history (NaN as None: the history is saved as JSON)."""
    clean = lambda v: None if v is None or math.isnan(v) else round(float(v), 6)  # noqa: E731
    return {"step": step, "loss": clean(loss), "val_r10": clean(score[0]),
            "val_mrr": clean(score[1]), "temperature": clean(heads.temperature())}


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
