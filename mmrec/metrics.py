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
    # argpartition is not stable, so take every column tied with the k-th best
    # value, then stable-sort that candidate set: exact and deterministic.
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
    out = np.empty((scores.shape[0], k), dtype=np.int64)
    for row in range(scores.shape[0]):
        cand = np.flatnonzero(scores[row] >= kth[row])
        order = np.argsort(-scores[row, cand], kind="stable")
        out[row] = cand[order[:k]]
    return out


def hit_matrix(ranked: Sequence[Sequence[Hashable]], relevant: Sequence[Collection[Hashable]],
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(users, k)`` booleans: is the item at each rank relevant; and ``|relevant|`` per user.

    Only users with at least one relevant item are kept. Lists shorter than ``k``
    are padded with misses.
    """
    keep = [u for u, rel in enumerate(relevant) if len(rel)]
    hits = np.zeros((len(keep), k), dtype=bool)
    for row, u in enumerate(keep):
        rel = relevant[u]
        for rank, item in enumerate(list(ranked[u])[:k]):
            hits[row, rank] = item in rel
    sizes = np.array([len(relevant[u]) for u in keep], dtype=np.float64)
    return hits, sizes


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
    shown = {item for items in ranked for item in list(items)[:k]}
    return len(shown) / n_items


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
    out: dict[str, float] = {}
    for k in ks:
        top = hits[:, :k]
        out[f"recall@{k}"] = _mean(top.sum(axis=1) / np.maximum(sizes, 1))
        out[f"ndcg@{k}"] = _mean(_ndcg(top, sizes))
        out[f"hit@{k}"] = _mean(top.any(axis=1).astype(np.float64))
        out[f"precision@{k}"] = _mean(top.sum(axis=1) / k)
        out[f"mrr@{k}"] = _mean(_mrr(top))
        out[f"item_coverage@{k}"] = item_coverage_at_k(ranked, n_items, k)
    return out
