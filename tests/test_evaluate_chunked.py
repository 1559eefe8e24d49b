"""Evaluation over item chunks: the same ranking as one dense block, in bounded memory."""
from __future__ import annotations

import tracemalloc
import types

import numpy as np
import pytest

from mmrec.recsys import evaluate
from mmrec.recsys.data import Data
from mmrec.recsys.scoring import History
from mmrec.recsys.splits import TEST, TRAIN, VALID, make_split


def world(n_users, n_items, per_user, dim=4, levels=3, split="temporal", seed=0):
    """Random interactions, and a scorer whose small-integer vectors tie often (exactly)."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    times = np.tile(np.arange(per_user), n_users).astype(np.float64)
    data = Data([f"i{i}" for i in range(n_items)], [f"u{u}" for u in range(n_users)], users, items,
                times, make_split(split, users, items, times, seed))
    item_vecs = rng.integers(0, levels, (n_items, dim)).astype(np.float32)
    user_vecs = rng.integers(0, levels, (n_users, dim)).astype(np.float32)
    item_vecs[rng.choice(n_items, 3, replace=False)] = np.nan  # NaN scores rank as excluded
    scorer = types.SimpleNamespace(items=item_vecs,
                                   user_vectors=lambda rows, history: user_vecs[rows])
    return data, scorer


def brute_force(scorer, data, part, k):
    """The old dense ranking: all items at once, stable sort, excluded and NaN cut."""
    users, relevant, seen, candidates = data.heldout(part)
    scores = (scorer.user_vectors(users, None) @ scorer.items[candidates].T).astype(np.float64)
    scores[np.isnan(scores)] = -np.inf
    col = np.full(data.n_items, -1)
    col[candidates] = np.arange(len(candidates))
    ranked = []
    for row in range(len(users)):
        cols = col[seen[row]]
        scores[row, cols[cols >= 0]] = -np.inf
        order = np.argsort(-scores[row], kind="stable")[:k]
        ranked.append(candidates[order[np.isfinite(scores[row, order])]])
    return ranked, [set(relevant[i].tolist()) for i in range(len(users))]


@pytest.mark.parametrize(("split", "part"), [("temporal", TEST), ("temporal", VALID),
                                             ("random", TEST), ("cold-item", TEST)])
@pytest.mark.parametrize("item_chunk", [7, 64, 100_000])
def test_chunked_ranking_equals_the_dense_one_with_ties(monkeypatch, split, part, item_chunk):
    data, scorer = world(60, 300, 12, split=split)
    monkeypatch.setattr(evaluate, "ITEM_CHUNK", item_chunk)
    monkeypatch.setattr(evaluate, "USER_CHUNK", 16)
    for k in (1, 10, 50, 400):  # 400: more than every candidate, so lists run short
        ranked, relevant = evaluate.rank(scorer, data, part, k)
        want, want_relevant = brute_force(scorer, data, part, k)
        assert relevant == want_relevant and len(ranked) == len(want)
        for got, expected in zip(ranked, want, strict=True):
            np.testing.assert_array_equal(got, expected)


def item_item_world(n_users, n_items, per_user, dim=4, split="random", seed=0):
    """A scorer shaped as a two-tower with an item-item term: ``[tower | W column]`` item
    vectors and ``[user vector | history indicator]`` queries, small integers (exact sums)."""
    data, tower = world(n_users, n_items, per_user, dim=dim, split=split, seed=seed)
    rng = np.random.default_rng(seed + 1)
    tower.items[np.isnan(tower.items)] = 0.0
    columns = rng.integers(-2, 3, (n_items, n_items)).astype(np.float32)  # row i: W[:, i]
    user_part = tower.user_vectors

    def user_vectors(rows, history):
        indicator = np.zeros((len(rows), n_items), dtype=np.float32)
        indicator[np.repeat(np.arange(len(rows)), history.sizes()), history.indices] = 1.0
        return np.hstack([user_part(rows, history), indicator])

    scorer = types.SimpleNamespace(items=np.hstack([tower.items, columns]), user_vectors=user_vectors,
                                   sparse_from=dim)
    return data, scorer


@pytest.mark.parametrize("block_cells", [1, 3_000, 1 << 24])
def test_a_sparse_history_part_ranks_as_the_dense_product(monkeypatch, block_cells):
    """``sparse_from``: the queries' indicator part multiplied as a sparse matrix gives the
    dense product's ranking (ties included), whatever the item chunk (wide items: fewer rows)."""
    data, scorer = item_item_world(40, 200, 10)
    monkeypatch.setattr(evaluate, "ITEM_BLOCK_CELLS", block_cells)
    monkeypatch.setattr(evaluate, "USER_CHUNK", 16)
    train = data.history(TRAIN)
    dense = types.SimpleNamespace(items=scorer.items,
                                  user_vectors=lambda rows, _: scorer.user_vectors(rows, train.take(rows)))
    for part in (TEST, VALID):
        for k in (1, 20, 300):
            ranked, relevant = evaluate.rank(scorer, data, part, k)
            want, want_relevant = brute_force(dense, data, part, k)
            assert relevant == want_relevant
            for got, expected in zip(ranked, want, strict=True):
                np.testing.assert_array_equal(got, expected)


def test_ties_are_broken_by_item_row_across_chunks(monkeypatch):
    """Every item scores the same: the ranking is catalog order minus what was seen."""
    data, scorer = world(5, 50, 6, levels=1)
    scorer.items = np.ones_like(scorer.items)
    monkeypatch.setattr(evaluate, "ITEM_CHUNK", 8)
    ranked, _ = evaluate.rank(scorer, data, TEST, 20)
    users, _, seen, _ = data.heldout(TEST)
    for row in range(len(users)):
        expected = [i for i in range(50) if i not in set(seen[row].tolist())][:20]
        assert ranked[row].tolist() == expected


def test_evaluation_memory_is_bounded_by_the_chunks(monkeypatch):
    n_users, n_items = 400, 20_000
    data, scorer = world(n_users, n_items, 5, dim=8)
    dense = n_users * n_items * 8  # what one float64 users x items block took: 64 MB
    monkeypatch.setattr(evaluate, "ITEM_CHUNK", 512)
    monkeypatch.setattr(evaluate, "USER_CHUNK", 64)
    tracemalloc.start()
    try:
        evaluate.rank_metrics(scorer, data, TEST, (10, 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < dense / 20, f"peak {peak / 2**20:.1f} MiB"


def test_validation_sample_is_fixed_seeded_and_only_when_there_are_many():
    data, _ = world(50, 100, 6)
    assert evaluate.sample_users(data, VALID, limit=50) is None  # all 50 fit
    sample = evaluate.sample_users(data, VALID, limit=20, seed=3)
    assert len(sample) == 20 and len(set(sample.tolist())) == 20
    assert (np.diff(sample) > 0).all() and sample.max() < 50
    np.testing.assert_array_equal(sample, evaluate.sample_users(data, VALID, limit=20, seed=3))
    assert not np.array_equal(sample, evaluate.sample_users(data, VALID, limit=20, seed=4))


def test_validation_metrics_rank_only_the_sample(monkeypatch):
    data, scorer = world(50, 100, 6)
    monkeypatch.setattr(evaluate, "VALID_USERS", 20)
    result = evaluate.validation_metrics(scorer, data, (20,), seed=0)
    assert result["users"] == 20
    sample = evaluate.sample_users(data, VALID, limit=20, seed=0)
    users, _, _, _ = data.heldout(VALID)
    full_ranked, _ = evaluate.rank(scorer, data, VALID, 20)
    some_ranked, _ = evaluate.rank(scorer, data, VALID, 20, users=sample)
    for got, row in zip(some_ranked, sample, strict=True):  # the same lists as in a full run
        np.testing.assert_array_equal(got, full_ranked[row])
    assert isinstance(data.history(VALID), History) and len(users) == 50


def test_validation_ranks_fewer_users_on_a_large_catalog(monkeypatch):
    """Validation costs at most VALID_SCORES user-item scores: on a catalog that large
    it samples fewer users (never under MIN_VALID_USERS), the same seeded ones each time."""
    data, scorer = world(50, 100, 6)
    monkeypatch.setattr(evaluate, "MIN_VALID_USERS", 10)
    monkeypatch.setattr(evaluate, "VALID_SCORES", 100 * 30)  # 30 users' worth of 100 items
    assert evaluate.validation_limit(100) == 30
    first = evaluate.validation_metrics(scorer, data, (20,), seed=0)
    assert first["users"] == 30 and first == evaluate.validation_metrics(scorer, data, (20,), seed=0)
    monkeypatch.setattr(evaluate, "VALID_SCORES", 100 * 3)
    assert evaluate.validation_metrics(scorer, data, (20,), seed=0)["users"] == 10
    monkeypatch.setattr(evaluate, "VALID_SCORES", 10**9)
    assert evaluate.validation_metrics(scorer, data, (20,), seed=0)["users"] == 50  # all
