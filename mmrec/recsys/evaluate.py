"""``mmrec evaluate MODEL``: full ranking of the held-out part of the model's own split.

Each evaluated user (one with at least one held-out interaction) gets a score for
every candidate item: all items, or for a cold-item split only that part's cold
items. Their training items (and, for the test part, validation items) are removed
before ranking; ties are broken by item row (see mmrec.metrics.top_k).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.errors import ConfigError
from mmrec.metrics import KS, summary, top_k
from mmrec.recsys.data import PART_NAMES, Data
from mmrec.recsys.scoring import Scorer
from mmrec.recsys.splits import TEST, TRAIN

CHUNK = 1024  # users scored per matrix product: bounds memory on large catalogs


def rank(scorer: Scorer, data: Data, part: int, k: int) -> tuple[list[np.ndarray], list[set[int]]]:
    """Top-``k`` item rows per evaluated user, and that user's relevant item rows."""
    users, relevant, seen, candidates = data.heldout(part)
    history = data.history(TRAIN)
    item_vecs = scorer.items[candidates]
    col = np.full(data.n_items, -1, dtype=np.int64)
    col[candidates] = np.arange(len(candidates))
    ranked: list[np.ndarray] = []
    for start in range(0, len(users), CHUNK):
        chunk = users[start : start + CHUNK]
        queries = scorer.user_vectors(chunk, history.take(chunk))
        scores = (queries @ item_vecs.T).astype(np.float64)
        for row in range(len(chunk)):
            cols = col[seen[start + row]]
            scores[row, cols[cols >= 0]] = -np.inf
        best = top_k(scores, k)
        for row in range(len(chunk)):
            keep = best[row][np.isfinite(scores[row, best[row]])]
            ranked.append(candidates[keep])
    return ranked, [set(relevant[i].tolist()) for i in range(len(users))]


def rank_metrics(scorer: Scorer, data: Data, part: int = TEST,
                 ks: Sequence[int] = KS) -> dict[str, Any]:
    """``metric@K`` for every K in ``ks``, plus how many users and candidates were ranked."""
    ranked, relevant = rank(scorer, data, part, max(ks))
    n_candidates = len(data.split.candidates(part, data.n_items))
    return {**summary(ranked, relevant, n_candidates, ks), "users": len(ranked),
            "candidates": n_candidates}


def evaluate(path: str | Path, part: str = "test", ks: Sequence[int] = KS) -> dict[str, Any]:
    """Metrics of the model at ``path`` on its own split's ``part`` (test or valid)."""
    from mmrec.recsys.model import load_model

    parts = {name: p for p, name in PART_NAMES.items() if p != TRAIN}
    if part not in parts:
        raise ConfigError(f"unknown part {part!r}; choose from {', '.join(parts)}")
    if not ks or min(ks) < 1:
        raise ConfigError("every K must be at least 1")
    model = load_model(path)
    model.store()  # the metrics need only the model, but a store still there whose
    # encoders changed since training says the model no longer matches its items
    result = rank_metrics(model.scorer, model.data, parts[part], sorted(set(ks)))
    if result["users"] == 0:
        raise ConfigError(f"{path}: no user has {part} interactions to evaluate")
    return {**result, "model": model.kind, "split": model.data.split.kind.value, "part": part}

