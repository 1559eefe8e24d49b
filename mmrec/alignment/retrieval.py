"""Cross-modal retrieval metrics: Recall@K, median rank and chance, per ordered pair.

For a pair ``a->b`` over a set of items: every item with both ``a`` and ``b`` is a
query, every item with ``b`` is in the gallery, and the one right answer is the
query item's own ``b`` vector. Ties count against the query (rank = 1 + the number
of gallery items scoring at least as high as the answer, the answer excluded).
``hubs`` (``{target: {source: per-item term}}``, :mod:`mmrec.alignment.hubness`) adds
each gallery item's correction for the pair to its scores, as its index does.
"""
from __future__ import annotations

from itertools import permutations
from typing import TYPE_CHECKING

from mmrec.alignment.config import RECALL_KS

if TYPE_CHECKING:
    import numpy as np

Projected = dict  # {modality: (matrix (items, dim), mask (items,))}, rows in item order
Hubs = dict  # {target: {source: (items,) score term of each item as a gallery item}}


def ranks(queries: np.ndarray, gallery: np.ndarray, answer: np.ndarray,
          chunk: int = 1024) -> np.ndarray:
    """1-based rank of ``gallery[answer[i]]`` for each query row ``i``."""
    import numpy as np

    out = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        scores = queries[start:start + chunk] @ gallery.T
        rows = np.arange(len(scores))
        right = scores[rows, answer[start:start + chunk]]
        out[start:start + chunk] = (scores >= right[:, None]).sum(axis=1)
    return out


def summarize(rank: np.ndarray, gallery: int, ks: tuple[int, ...] = RECALL_KS) -> dict[str, float]:
    import numpy as np

    out: dict[str, float] = {f"recall@{k}": float(np.mean(rank <= k)) for k in ks}
    out["median_rank"] = float(np.median(rank))
    out["queries"] = int(len(rank))
    out["gallery"] = int(gallery)
    out.update({f"chance@{k}": min(k, gallery) / gallery for k in ks})
    return out


def pair_ranks(projected: Projected, source: str, target: str,
               rows: np.ndarray, hubs: Hubs | None = None) -> tuple[np.ndarray, int] | None:
    """Ranks of ``source->target`` over the items ``rows``; None without a query."""
    import numpy as np

    from mmrec.vectors import with_bias, with_one

    src, src_mask = projected[source]
    dst, dst_mask = projected[target]
    gallery_rows = rows[dst_mask[rows]]
    query_rows = gallery_rows[src_mask[gallery_rows]]
    if not len(query_rows) or len(gallery_rows) < 2:
        return None
    position = {r: i for i, r in enumerate(gallery_rows.tolist())}
    answer = np.array([position[r] for r in query_rows.tolist()])
    queries, gallery = np.asarray(src[query_rows]), np.asarray(dst[gallery_rows])
    term = (hubs or {}).get(target, {}).get(source)
    if term is not None:
        queries, gallery = with_one(queries), with_bias(gallery, np.asarray(term)[gallery_rows])
    return ranks(queries, gallery, answer), len(gallery_rows)


def retrieval_metrics(projected: Projected, rows: np.ndarray, ks: tuple[int, ...] = RECALL_KS,
                      hubs: Hubs | None = None) -> dict[str, dict[str, float]]:
    """``{"text->image": {recall@K, median_rank, queries, gallery, chance@K}, ...}``."""
    found = {}
    for source, target in permutations(projected, 2):
        result = pair_ranks(projected, source, target, rows, hubs)
        if result is not None:
            found[f"{source}->{target}"] = summarize(*result, ks=ks)
    return found


def mean_recall(projected: Projected, rows: np.ndarray, k: int = 10,
                pairs: list[tuple[str, str]] | None = None, hubs: Hubs | None = None) -> float:
    """Mean ``recall@k`` over ordered pairs (default: all): the early-stopping criterion."""
    return validation_score(projected, rows, k, pairs, hubs)[0]


def validation_score(projected: Projected, rows: np.ndarray, k: int = 10,
                     pairs: list[tuple[str, str]] | None = None,
                     hubs: Hubs | None = None) -> tuple[float, float]:
    """Mean ``recall@k`` and mean reciprocal rank over ordered pairs (default: all).

    The reciprocal rank breaks ties of the recall, which saturates on small galleries.
    """
    import numpy as np

    found = pair_scores(projected, rows, k, pairs, hubs)
    if not found:
        return float("nan"), float("nan")
    return (float(np.mean([r for r, _, _ in found.values()])),
            float(np.mean([rr for _, rr, _ in found.values()])))


def pair_scores(projected: Projected, rows: np.ndarray, k: int = 10,
                pairs: list[tuple[str, str]] | None = None,
                hubs: Hubs | None = None) -> dict[str, tuple[float, float, int]]:
    """``{"a->b": (recall@k, mean reciprocal rank, queries)}`` over ordered pairs (default:
    all), the pairs without a query left out."""
    import numpy as np

    found = {}
    for source, target in pairs or list(permutations(projected, 2)):
        result = pair_ranks(projected, source, target, rows, hubs)
        if result is not None:
            found[f"{source}->{target}"] = (float(np.mean(result[0] <= k)),
                                            float(np.mean(1.0 / result[0])), len(result[0]))
    return found
