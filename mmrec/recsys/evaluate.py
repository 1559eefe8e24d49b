"""``mmrec evaluate MODEL``: full ranking of the held-out part of the model's own split.

Each evaluated user (one with at least one held-out interaction) gets a score for
every candidate item: all items, or for a cold-item split only that part's cold
items. Their training items (and, for the test part, validation items) are removed
before ranking; ties are broken by item row (see mmrec.metrics.top_k).

``--test FILE`` evaluates on interactions from elsewhere instead (the users' later
behaviour, e.g. for a model trained with ``--no-test``): each known user is served
from everything the model holds for them (training, validation, what ``update``
added), all of which is excluded from ranking and from the relevant set; users and
items the model does not know are counted and reported, not scored.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrec.errors import ConfigError
from mmrec.metrics import KS, summary, top_k
from mmrec.recsys.data import PART_NAMES, Data
from mmrec.recsys.scoring import History, Scorer
from mmrec.recsys.splits import TEST, TRAIN, VALID

if TYPE_CHECKING:
    from mmrec.catalog import Interactions
    from mmrec.recsys.model import Model

CHUNK = 1024  # users scored per matrix product: bounds memory on large catalogs


def rank(scorer: Scorer, data: Data, part: int, k: int) -> tuple[list[np.ndarray], list[set[int]]]:
    """Top-``k`` item rows per evaluated user, and that user's relevant item rows."""
    users, relevant, seen, candidates = data.heldout(part)
    ranked = top_items(scorer, users, data.history(TRAIN), seen, candidates, k)
    return ranked, [set(relevant[i].tolist()) for i in range(len(users))]


def top_items(scorer: Scorer, users: np.ndarray, history: History, seen: History,
              candidates: np.ndarray, k: int) -> list[np.ndarray]:
    """Per user row in ``users``: the top-``k`` of ``candidates`` under ``history`` (all
    users' histories), ``seen[i]`` (the i-th user's items) excluded."""
    n_items = scorer.items.shape[0]
    item_vecs = scorer.items[candidates]
    col = np.full(n_items, -1, dtype=np.int64)
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
    return ranked


def rank_metrics(scorer: Scorer, data: Data, part: int = TEST,
                 ks: Sequence[int] = KS) -> dict[str, Any]:
    """``metric@K`` for every K in ``ks``, plus how many users and candidates were ranked."""
    ranked, relevant = rank(scorer, data, part, max(ks))
    n_candidates = len(data.split.candidates(part, data.n_items))
    return {**summary(ranked, relevant, n_candidates, ks), "users": len(ranked),
            "candidates": n_candidates}


def evaluate(path: str | Path, part: str = "test", ks: Sequence[int] = KS,
             test: str | Path | None = None) -> dict[str, Any]:
    """Metrics of the model at ``path`` on its own split's ``part`` (test or valid), or
    with ``test`` on the interactions in that file (see :func:`evaluate_file`)."""
    from mmrec.recsys.model import load_model

    parts = {name: p for p, name in PART_NAMES.items() if p != TRAIN}
    if part not in parts:
        raise ConfigError(f"unknown part {part!r}; choose from {', '.join(parts)}")
    if not ks or min(ks) < 1:
        raise ConfigError("every K must be at least 1")
    model = load_model(path)
    model.store()  # the metrics need only the model, but a store still there whose
    # encoders changed since training says the model no longer matches its items
    if test is not None:
        return evaluate_file(model, test, sorted(set(ks)))
    result = rank_metrics(model.scorer, model.data, parts[part], sorted(set(ks)))
    if result["users"] == 0:
        raise ConfigError(f"{path}: no user has {part} interactions to evaluate",
                          hint="a model trained with --no-test: pass --test FILE" if part == "test" else None)
    return {**result, "model": model.kind, "split": model.data.split.kind.value, "part": part}



def evaluate_file(model: Model, test: str | Path, ks: Sequence[int]) -> dict[str, Any]:
    """Metrics on the interactions in ``test``, read as train reads its interactions."""
    found = _read_test(model, test)
    data = model.data
    users = np.array([model.user_row(u) if model.user_row(u) is not None else -1
                      for u in found.users], dtype=np.int64)
    items = np.array([model.item_row(i) for i in found.items], dtype=np.int64)
    known = users >= 0
    seen = data.history(TRAIN, VALID, TEST)  # everything the model holds, updates included
    n = data.n_items  # a pair as one key: user row * items + item row
    fresh = ~np.isin(users * n + items, data.users * n + data.items)
    keep = known & fresh
    rows = np.unique(users[keep])
    relevant = History.build(users[keep], items[keep], data.n_users).take(rows)
    if not len(rows):
        raise ConfigError(f"{test}: no interaction of a user the model knows on an item it has "
                          f"not seen ({int((~known).sum())} of {len(found)} are by unknown users)")
    ranked = top_items(model.scorer, rows, seen, seen.take(rows), np.arange(data.n_items), max(ks))
    return {**summary(ranked, [set(relevant[i].tolist()) for i in range(len(rows))], data.n_items, ks),
            "users": len(rows), "candidates": data.n_items, "model": model.kind,
            "split": data.split.kind.value, "part": "file", "test": str(test),
            "unknown_users": len(set(np.asarray(found.users, dtype=object)[~known].tolist())),
            "unknown_user_interactions": int((~known).sum()),
            "unknown_items": found.unknown_items, "already_seen": int((known & ~fresh).sum())}


def _read_test(model: Model, test: str | Path) -> Interactions:
    """``test`` read with the model's own reading options (fields, --min-rating)."""
    from mmrec.catalog import read_interactions

    cfg = model.config.get("config", {})
    return read_interactions(test, model.data.item_ids, cfg.get("min_rating"), cfg.get("user_field"),
                             cfg.get("item_field"), cfg.get("rating_field"), cfg.get("timestamp_field"))
