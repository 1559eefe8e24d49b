"""``mmrec evaluate MODEL``: full ranking of the held-out part of the model's own split.

Each evaluated user (one with at least one held-out interaction) gets a score for
every candidate item: all items, or for a cold-item split only that part's cold
items. Their training items (and, for the test part, validation items) are removed
before ranking; ties are broken by item row (see mmrec.metrics.top_k). Scores are
made USER_CHUNK users x ITEM_CHUNK items at a time with a running top-K, so memory
does not grow with the catalog; validation during training ranks a fixed, seeded
sample of at most VALID_USERS users, fewer on a large catalog (VALID_SCORES user-item
scores at most, MIN_VALID_USERS users at least), so an epoch's check does not cost
more than its steps.

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

USER_CHUNK = 1024  # users scored together: one matrix product per item chunk
ITEM_CHUNK = 16_384  # items per product: a 1024 x 16384 float32 block is 64 MB at any catalog size
ITEM_BLOCK_CELLS = 1 << 24  # at most this many item-vector floats per chunk (64 MB), fewer rows when wide
VALID_USERS = 10_000  # validation during training ranks at most this many users (seeded sample)
# ... and at most this many user-item scores: at 1M items 2,000 users (measured: ~5% of
# an epoch's steps), at 100k or fewer items all VALID_USERS
VALID_SCORES = 2_000_000_000
MIN_VALID_USERS = 1_000  # however large the catalog: below this the metric gets noisy


def rank(scorer: Scorer, data: Data, part: int, k: int,
         users: np.ndarray | None = None) -> tuple[list[np.ndarray], list[set[int]]]:
    """Top-``k`` item rows per evaluated user, and that user's relevant item rows.

    ``users`` (positions among the evaluated users, see :func:`sample_users`) ranks only
    those.
    """
    evaluated, relevant, seen, candidates = data.heldout(part)
    if users is not None:
        evaluated, relevant, seen = evaluated[users], relevant.take(users), seen.take(users)
    ranked = top_items(scorer, evaluated, data.history(TRAIN), seen, candidates, k)
    return ranked, [set(relevant[i].tolist()) for i in range(len(evaluated))]


def top_items(scorer: Scorer, users: np.ndarray, history: History, seen: History,
              candidates: np.ndarray, k: int) -> list[np.ndarray]:
    """Per user row in ``users``: the top-``k`` of ``candidates`` under ``history`` (all
    users' histories), ``seen[i]`` (the i-th user's items) excluded. Memory is bounded by
    USER_CHUNK x ITEM_CHUNK scores, whatever the catalog size."""
    col = np.full(scorer.items.shape[0], -1, dtype=np.int64)
    col[candidates] = np.arange(len(candidates))
    ranked: list[np.ndarray] = []
    sparse_from = getattr(scorer, "sparse_from", None)
    for start in range(0, len(users), USER_CHUNK):
        chunk = users[start : start + USER_CHUNK]
        queries = scorer.user_vectors(chunk, history.take(chunk))
        excluded = _excluded_cells(seen, col, start, len(chunk))
        best, scores = chunked_top_k(queries, scorer.items, candidates, excluded, k, sparse_from)
        ranked.extend(candidates[b[np.isfinite(s)]] for b, s in zip(best, scores, strict=True))
    return ranked


def _excluded_cells(seen: History, col: np.ndarray, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(user, column)`` of every excluded candidate of users ``start .. start+count``."""
    lo, hi = seen.indptr[start], seen.indptr[start + count]
    users = np.repeat(np.arange(count), np.diff(seen.indptr[start : start + count + 1]))
    cols = col[seen.indices[lo:hi]]
    return users[cols >= 0], cols[cols >= 0]


def chunked_top_k(queries: np.ndarray, items: np.ndarray, candidates: np.ndarray,
                  excluded: tuple[np.ndarray, np.ndarray], k: int,
                  sparse_from: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Columns (positions in ``candidates``) of each query's ``k`` best items, and their scores.

    Exactly :func:`mmrec.metrics.top_k` over the full ``queries @ items[candidates].T``
    with ``excluded`` cells at ``-inf``: each item chunk's top ``k`` (ties by lower
    column) is merged into a running top ``k`` by (score desc, column asc).
    ``sparse_from``: the queries' columns from there on are mostly zero (a history's
    indicator over an item-item model's ``W``), so that part is a sparse product:
    history length x items multiply-adds a user instead of items^2 (the scores equal
    the dense product's up to float rounding).
    """
    best_cols = np.zeros((len(queries), 0), dtype=np.int64)
    best = np.zeros((len(queries), 0), dtype=np.float32)
    ex_users, ex_cols = excluded
    dense, tail = queries, None
    if sparse_from is not None:
        from scipy.sparse import csr_matrix

        dense, tail = queries[:, :sparse_from], csr_matrix(queries[:, sparse_from:])
    # an item-item model's vectors are items wide: fewer rows a chunk keep its block small
    step = min(ITEM_CHUNK, max(256, ITEM_BLOCK_CELLS // max(1, items.shape[1])))
    for lo in range(0, len(candidates), step):
        hi = min(len(candidates), lo + step)
        block = items[candidates[lo:hi]]
        if tail is None:
            scores = (queries @ block.T).astype(np.float32, copy=False)
        else:
            scores = dense @ block[:, :sparse_from].T
            scores += tail @ np.ascontiguousarray(block[:, sparse_from:].T)
            scores = scores.astype(np.float32, copy=False)
        inside = (ex_cols >= lo) & (ex_cols < hi)
        scores[ex_users[inside], ex_cols[inside] - lo] = -np.inf
        top = _chunk_top_k(scores, k)
        cols = np.concatenate([best_cols, top + lo], axis=1)
        vals = np.concatenate([best, np.take_along_axis(scores, top, axis=1)], axis=1)
        vals = np.where(np.isnan(vals), -np.inf, vals)
        order = np.lexsort((cols, -vals), axis=1)[:, :k]
        best_cols, best = np.take_along_axis(cols, order, 1), np.take_along_axis(vals, order, 1)
    return best_cols, best


def _chunk_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """:func:`mmrec.metrics.top_k` of one chunk (ties by lower column), through torch.topk:
    a partial selection ~4x faster than argpartition here (1024 x 16384 scores, one
    thread). topk's order among tied scores is unspecified, so rows where more than
    ``k`` columns reach the k-th score (ties at the cut, -inf rows) are re-picked exactly."""
    import torch

    k = min(k, scores.shape[1])
    if k == 0 or not scores.size:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    if np.isnan(scores).any():  # NaN ranks as excluded (topk would rank it first)
        scores = np.where(np.isnan(scores), -np.inf, scores)
    values, best = torch.topk(torch.from_numpy(scores), k, dim=1, sorted=False)
    values, best = values.numpy(), best.numpy()
    kth = values.min(axis=1, keepdims=True)
    straddle = np.flatnonzero((scores >= kth).sum(axis=1) > k)
    order = np.lexsort((best, -values), axis=1)
    out = np.take_along_axis(best, order, axis=1)
    if straddle.size:
        out[straddle] = top_k(scores[straddle], k)
    return out


def validation_limit(n_candidates: int) -> int:
    """How many users validation ranks against ``n_candidates`` items (see VALID_SCORES)."""
    return min(VALID_USERS, max(MIN_VALID_USERS, VALID_SCORES // max(n_candidates, 1)))


def sample_users(data: Data, part: int, limit: int | None = None, seed: int = 0) -> np.ndarray | None:
    """A fixed, seeded sample of at most ``limit`` evaluated users (positions), or None for all.

    The same users every epoch, so epochs stay comparable and validation costs what
    ``limit`` users cost however many there are.
    """
    count, limit = int((data.history(part).sizes() > 0).sum()), limit or VALID_USERS
    if count <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def rank_metrics(scorer: Scorer, data: Data, part: int = TEST, ks: Sequence[int] = KS,
                 users: np.ndarray | None = None) -> dict[str, Any]:
    """``metric@K`` for every K in ``ks``, plus how many users and candidates were ranked.

    ``users``: only these evaluated users (e.g. :func:`sample_users`); default all.
    """
    ranked, relevant = rank(scorer, data, part, max(ks), users)
    n_candidates = len(data.split.candidates(part, data.n_items))
    return {**summary(ranked, relevant, n_candidates, ks), "users": len(ranked),
            "candidates": n_candidates}


def validation_metrics(scorer: Scorer, data: Data, ks: Sequence[int], seed: int = 0) -> dict[str, Any]:
    """:func:`rank_metrics` on the validation part, over a seeded sample of at most
    :func:`validation_limit` users."""
    limit = validation_limit(len(data.split.candidates(VALID, data.n_items)))
    return rank_metrics(scorer, data, VALID, ks, sample_users(data, VALID, limit, seed))


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
    users, items = found.user_rows(model.user_row), found.item_rows(model.item_row)
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
            "unknown_users": int(np.unique(found.user_codes[~known]).size),
            "unknown_user_interactions": int((~known).sum()),
            "unknown_items": found.unknown_items, "already_seen": int((known & ~fresh).sum())}


def _read_test(model: Model, test: str | Path) -> Interactions:
    """``test`` read with the model's own reading options (fields, --min-rating)."""
    from mmrec.catalog import read_interactions

    cfg = model.config.get("config", {})
    return read_interactions(test, model.data.item_ids, cfg.get("min_rating"), cfg.get("user_field"),
                             cfg.get("item_field"), cfg.get("rating_field"), cfg.get("timestamp_field"))
