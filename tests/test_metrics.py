"""Ranking metrics against cases worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mmrec.metrics import (
    hit_at_k,
    item_coverage_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    summary,
    top_k,
)

L2 = math.log2


def test_one_user_two_of_three_relevant_found():
    ranked, relevant = [[1, 2, 3, 4, 5]], [{2, 5, 9}]  # hits at ranks 2 and 5
    assert recall_at_k(ranked, relevant, 5) == pytest.approx(2 / 3)
    assert precision_at_k(ranked, relevant, 5) == pytest.approx(2 / 5)
    assert hit_at_k(ranked, relevant, 5) == 1.0
    assert mrr_at_k(ranked, relevant, 5) == pytest.approx(1 / 2)
    dcg = 1 / L2(3) + 1 / L2(6)
    ideal = 1 + 1 / L2(3) + 1 / L2(4)  # three relevant items, all at the top
    assert ndcg_at_k(ranked, relevant, 5) == pytest.approx(dcg / ideal)
    # at K=1 nothing is found
    assert recall_at_k(ranked, relevant, 1) == hit_at_k(ranked, relevant, 1) == 0.0
    assert mrr_at_k(ranked, relevant, 1) == ndcg_at_k(ranked, relevant, 1) == 0.0


def test_fewer_relevant_items_than_k():
    # one relevant item at rank 1: perfect recall and NDCG, precision capped at 1/K
    ranked, relevant = [[7, 1, 2, 3, 4]], [{7}]
    assert ndcg_at_k(ranked, relevant, 5) == pytest.approx(1.0)
    assert recall_at_k(ranked, relevant, 5) == 1.0
    assert precision_at_k(ranked, relevant, 5) == pytest.approx(0.2)
    # two relevant at ranks 2 and 3: the ideal DCG only counts two hits
    ranked, relevant = [[0, 7, 8, 1, 2]], [{7, 8}]
    expected = (1 / L2(3) + 1 / L2(4)) / (1 + 1 / L2(3))
    assert ndcg_at_k(ranked, relevant, 5) == pytest.approx(expected)


def test_more_relevant_items_than_k_caps_the_ideal():
    ranked, relevant = [[1, 2]], [{1, 2, 3, 4}]
    assert ndcg_at_k(ranked, relevant, 2) == pytest.approx(1.0)  # best possible at K=2
    assert recall_at_k(ranked, relevant, 2) == pytest.approx(0.5)


def test_short_ranked_list_counts_missing_ranks_as_misses():
    ranked, relevant = [[3]], [{3, 4}]  # only one candidate was left to rank
    assert precision_at_k(ranked, relevant, 5) == pytest.approx(1 / 5)
    assert recall_at_k(ranked, relevant, 5) == pytest.approx(1 / 2)


def test_users_without_relevant_items_are_left_out_of_the_mean():
    ranked = [[1, 2], [1, 2], [1, 2]]
    relevant = [{1}, set(), {9}]
    assert hit_at_k(ranked, relevant, 2) == pytest.approx(0.5)  # mean over users 0 and 2
    assert recall_at_k([[1]], [set()], 1) == 0.0  # nobody to score


def test_mean_over_users():
    ranked = [[1, 2, 3], [4, 5, 6]]
    relevant = [{1}, {6}]
    assert mrr_at_k(ranked, relevant, 3) == pytest.approx((1 + 1 / 3) / 2)
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx((1 + 1 / L2(4)) / 2)


def test_item_coverage():
    ranked = [[1, 2, 3], [2, 3, 4]]
    assert item_coverage_at_k(ranked, 10, 1) == pytest.approx(0.2)   # {1, 2}
    assert item_coverage_at_k(ranked, 10, 3) == pytest.approx(0.4)   # {1, 2, 3, 4}
    assert item_coverage_at_k(ranked, 0, 3) == 0.0


def test_ties_break_by_lower_column_first():
    scores = np.array([[0.5, 0.9, 0.5, 0.9, 0.1],
                       [1.0, 1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(top_k(scores, 3), [[1, 3, 0], [0, 1, 2]])
    # the tie straddles the cut: the lower columns win, whatever argpartition did
    scores = np.array([[0.2, 0.7, 0.7, 0.7, 0.7, 0.9]])
    np.testing.assert_array_equal(top_k(scores, 3), [[5, 1, 2]])


def test_top_k_ranks_excluded_columns_last_and_clips_k():
    scores = np.array([[-np.inf, 0.3, -np.inf, 0.1]])
    np.testing.assert_array_equal(top_k(scores, 2), [[1, 3]])
    assert top_k(scores, 10).shape == (1, 4)


def test_summary_agrees_with_the_single_metrics():
    rng = np.random.default_rng(3)
    ranked = [list(rng.permutation(60)[:50]) for _ in range(20)]
    relevant = [set(rng.choice(60, size=int(rng.integers(0, 8)), replace=False).tolist())
                for _ in range(20)]
    out = summary(ranked, relevant, 60, ks=(5, 10, 20, 50))
    for k in (5, 10, 20, 50):
        assert out[f"recall@{k}"] == pytest.approx(recall_at_k(ranked, relevant, k))
        assert out[f"ndcg@{k}"] == pytest.approx(ndcg_at_k(ranked, relevant, k))
        assert out[f"hit@{k}"] == pytest.approx(hit_at_k(ranked, relevant, k))
        assert out[f"precision@{k}"] == pytest.approx(precision_at_k(ranked, relevant, k))
        assert out[f"mrr@{k}"] == pytest.approx(mrr_at_k(ranked, relevant, k))
        assert out[f"item_coverage@{k}"] == pytest.approx(item_coverage_at_k(ranked, 60, k))
    assert sorted(out) == sorted(f"{m}@{k}" for k in (5, 10, 20, 50) for m in
                                 ("recall", "ndcg", "hit", "precision", "mrr", "item_coverage"))
    assert out["recall@5"] <= out["recall@10"] <= out["recall@50"]


def test_history_aggregate_with_empty_users_anywhere():
    from mmrec.recsys.scoring import History, aggregate

    vectors = np.eye(3, dtype=np.float32)
    for rows, want in [([[0, 1], []], [[1, 1, 0], [0, 0, 0]]),
                       ([[], [2], [], [0, 1], []], [[0, 0, 0], [0, 0, 1], [0, 0, 0], [1, 1, 0], [0, 0, 0]]),
                       ([[], []], [[0, 0, 0], [0, 0, 0]])]:
        np.testing.assert_array_equal(aggregate(vectors, History.of(rows), mean=False), want)
    mean = aggregate(vectors, History.of([[0, 1], []]), mean=True)
    np.testing.assert_allclose(mean, [[0.5, 0.5, 0], [0, 0, 0]])


def test_top_k_ranks_nan_last():
    from mmrec.metrics import top_k

    assert top_k(np.array([[np.nan, np.nan, 0.2]]), 2).tolist() == [[2, 0]]
