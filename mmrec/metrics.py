"""Top-K recommendation metrics as pure numpy functions on ranked lists.

Every function takes ``ranked`` (one ranked list of item ids or rows per user, best
first, at least ``k`` long unless fewer candidates exist) and ``relevant`` (one set of
held-out items per user), and returns the mean over users. Users without any
relevant item are left out of every mean (they cannot be scored), as RecBole does.

Definitions (the common ones, identical to RecBole's full-ranking metrics):

- ``recall@K``    hits in the top K / number of relevant items
- ``precision@K`` hits in the top K / K (K, not the list length: a short list is penalised)
- ``hit@K``       1 if any relevant item is in the top K
- ``ndcg@K``      DCG with binary gains 1/log2(rank+1), over the ideal DCG of
                  min(|relevant|, K) hits at the top
- ``mrr@K``       1 / rank of the first relevant item in the top K, 0 if none
- ``item_coverage@K`` distinct items in all users' top K / number of candidate items

Ties: metrics score a ranking, so ties must be broken before them. :func:`top_k`
breaks equal scores by the lower item row first (a stable sort), so the same scores
always give the same ranking and a model that scores everything equally is ranked
in catalog order, neither optimistically nor at random.
"""
from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Sequence

import numpy as np

KS = (5, 10, 20, 50)
METRICS = ("recall", "ndcg", "hit", "precision", "mrr")


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` best columns of each row of ``scores``, best first.

    Equal scores keep column order (lower column first); ``-inf`` marks excluded
    columns, which are ranked last and should be cut by the caller (see ``valid``).
    """
    scores = np.atleast_2d(scores)
    if np.isnan(scores).any():  # NaN compares false with everything: rank it as excluded
        scores = np.where(np.isnan(scores), -np.inf, scores)
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    # argpartition is not stable: it finds the k best, but where a tie straddles the
    # cut it may keep any of the tied columns. Rows where more than k columns reach the
    # k-th value are re-picked (the lowest tied columns); then every row's k are sorted
    # by (score desc, column asc): exact and deterministic, without a per-row loop.
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, best, axis=1).min(axis=1, keepdims=True)
    straddle = np.flatnonzero((scores >= kth).sum(axis=1) > k)
    if straddle.size:
        best[straddle] = _lowest_at_cut(scores[straddle], kth[straddle], k)
    vals = np.take_along_axis(scores, best, axis=1)
    return np.take_along_axis(best, np.lexsort((best, -vals), axis=1), axis=1)


def _lowest_at_cut(scores: np.ndarray, kth: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns above ``kth`` plus the lowest columns equal to it, ``k`` in all."""
    above = scores > kth
    tied = scores == kth
    room = k - above.sum(axis=1, keepdims=True)
    pick = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= room))
    return np.nonzero(pick)[1].reshape(len(scores), k)


def hit_matrix(ranked: Sequence[Sequence[Hashable]], relevant: Sequence[Collection[Hashable]],
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(users, k)`` booleans: is the item at each rank relevant; and ``|relevant|`` per user.

    Only users with at least one relevant item are kept. Lists shorter than ``k``
    are padded with misses.
    """
    keep = [u for u, rel in enumerate(relevant) if len(rel)]
    sizes = np.array([len(relevant[u]) for u in keep], dtype=np.float64)
    rows = _padded([ranked[u] for u in keep], k)
    if rows is None:  # ids that are not integer rows: compare them one by one
        hits = np.zeros((len(keep), k), dtype=bool)
        for row, u in enumerate(keep):
            for rank, item in enumerate(list(ranked[u])[:k]):
                hits[row, rank] = item in relevant[u]
        return hits, sizes
    # one sorted key per (user, item): hits are a single vectorised membership test
    rel = [np.fromiter(relevant[u], dtype=np.int64, count=len(relevant[u])) for u in keep]
    width = int(max(rows.max(initial=0), max((r.max() for r in rel), default=0))) + 1
    rel_keys = np.concatenate([r + u * width for u, r in enumerate(rel)]) if rel else np.zeros(0, np.int64)
    keys = rows + np.arange(len(keep))[:, None] * width
    return (rows >= 0) & np.isin(keys, rel_keys), sizes


def _padded(ranked: Sequence[Sequence[Hashable]], k: int) -> np.ndarray | None:
    """The first ``k`` of each list as a ``(users, k)`` int64 matrix, -1 past a list's end;
    None if some entry is not a non-negative integer."""
    out = np.full((len(ranked), k), -1, dtype=np.int64)
    for row, items in enumerate(ranked):
        head = np.asarray(items[:k] if hasattr(items, "__getitem__") else list(items)[:k])
        if head.size and (head.dtype.kind not in "iu" or head.min() < 0):
            return None
        out[row, : len(head)] = head
    return out


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else 0.0


def recall_at_k(ranked, relevant, k: int) -> float:
    hits, sizes = hit_matrix(ranked, relevant, k)
    return _mean(hits.sum(axis=1) / np.maximum(sizes, 1))


def precision_at_k(ranked, relevant, k: int) -> float:
    hits, _ = hit_matrix(ranked, relevant, k)
    return _mean(hits.sum(axis=1) / k)


def hit_at_k(ranked, relevant, k: int) -> float:
    hits, _ = hit_matrix(ranked, relevant, k)
    return _mean(hits.any(axis=1).astype(np.float64))


def ndcg_at_k(ranked, relevant, k: int) -> float:
    hits, sizes = hit_matrix(ranked, relevant, k)
    return _mean(_ndcg(hits, sizes))


def mrr_at_k(ranked, relevant, k: int) -> float:
    hits, _ = hit_matrix(ranked, relevant, k)
    return _mean(_mrr(hits))


def item_coverage_at_k(ranked: Iterable[Sequence[Hashable]], n_items: int, k: int) -> float:
    """Share of the ``n_items`` candidates that appear in at least one user's top ``k``."""
    if n_items <= 0:
        return 0.0
    ranked = list(ranked)
    rows = _padded(ranked, k)
    if rows is not None:
        return _coverage(rows, n_items)
    shown = {item for items in ranked for item in list(items)[:k]}
    return len(shown) / n_items


def _coverage(rows: np.ndarray, n_items: int) -> float:
    return int(np.unique(rows[rows >= 0]).size) / n_items if n_items > 0 else 0.0


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def _ndcg(hits: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    k = hits.shape[1]
    disc = _discounts(k)
    dcg = (hits * disc).sum(axis=1)
    ideal = np.cumsum(disc)[np.minimum(sizes, k).astype(int) - 1] if len(sizes) else sizes
    return dcg / ideal


def _mrr(hits: np.ndarray) -> np.ndarray:
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


def summary(ranked: Sequence[Sequence[Hashable]], relevant: Sequence[Collection[Hashable]],
            n_items: int, ks: Sequence[int] = KS) -> dict[str, float]:
    """Every metric at every K, keyed ``metric@K`` (one pass over the hit matrix)."""
    hits, sizes = hit_matrix(ranked, relevant, max(ks))
    rows = _padded(list(ranked), max(ks))
    out: dict[str, float] = {}
    for k in ks:
        top = hits[:, :k]
        out[f"recall@{k}"] = _mean(top.sum(axis=1) / np.maximum(sizes, 1))
        out[f"ndcg@{k}"] = _mean(_ndcg(top, sizes))
        out[f"hit@{k}"] = _mean(top.any(axis=1).astype(np.float64))
        out[f"precision@{k}"] = _mean(top.sum(axis=1) / k)
        out[f"mrr@{k}"] = _mean(_mrr(top))
        out[f"item_coverage@{k}"] = (item_coverage_at_k(ranked, n_items, k) if rows is None
                                     else _coverage(rows[:, :k], n_items))
    return out
