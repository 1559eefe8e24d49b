"""Hyper-parameters of the closed-form baselines, chosen on the validation part only.

Each candidate of a small grid is fitted on the training part and scored by the
validation part's NDCG@20 (the metric early stopping uses for the trained models);
the best wins. The test part is never read. A value the user fixed (not None in the
config) is the only one tried for that parameter.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

from mmrec.progress import NullProgress, Progress
from mmrec.recsys.config import VALID_METRIC, TrainConfig
from mmrec.recsys.data import Data
from mmrec.recsys.evaluate import validation_metrics
from mmrec.recsys.scoring import Scorer
from mmrec.recsys.splits import VALID


def candidates(cfg: TrainConfig, grid: dict[str, tuple]) -> list[dict[str, Any]]:
    """Every combination of ``grid``'s values, each parameter fixed where ``cfg`` sets it.
    The first combination is each grid's first value: the pick when nothing validates."""
    axes = {name: (getattr(cfg, name),) if getattr(cfg, name) is not None else values
            for name, values in grid.items()}
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def tune(data: Data, cfg: TrainConfig, grid: dict[str, tuple], fit: Callable[..., Scorer],
         progress: Progress | None = None) -> tuple[Scorer, dict[str, Any]]:
    """The scorer of the candidate with the best validation NDCG@20, and
    ``{"chosen": params, "trials": [params + metric, ...]}`` for the report."""
    trials = candidates(cfg, grid)
    validate = bool((data.split.part == VALID).any()) and len(trials) > 1
    advance = (progress or NullProgress()).task(f"tune {cfg.model.value}", len(trials))
    best, best_metric, chosen, record = None, -math.inf, trials[0], []
    for params in trials if validate else trials[:1]:
        scorer = fit(**params)
        metric = validation_metrics(scorer, data, (20,), cfg.seed)[VALID_METRIC] if validate else math.nan
        record.append({**params, VALID_METRIC: round(metric, 5) if math.isfinite(metric) else None})
        advance(1, **{f"valid {VALID_METRIC}": metric})
        if best is None or metric > best_metric:
            best, best_metric, chosen = scorer, metric, params
        del scorer  # not held while the next candidate is fitted (items^2 floats for EASE)
    return best, {"chosen": chosen, "trials": record}
