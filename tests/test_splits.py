"""Splits: disjoint, reproducible with a seed, RecBole's per-user counts, no future in training."""
from __future__ import annotations

import numpy as np
import pytest

from mmrec.enums import SplitKind
from mmrec.errors import ConfigError
from mmrec.recsys.splits import (
    TEST,
    TRAIN,
    VALID,
    load_split,
    make_split,
    part_sizes,
    save_split,
)


@pytest.fixture
def log():
    """300 interactions: 30 users with 3 to 19 items each, shuffled timestamps."""
    rng = np.random.default_rng(7)
    users, items = [], []
    for u in range(30):
        n = 3 + u % 17
        users += [u] * n
        items += list(rng.choice(80, size=n, replace=False))
    order = rng.permutation(len(users))
    users, items = np.array(users)[order], np.array(items)[order]
    times = rng.integers(0, 1000, size=len(users)).astype(float)
    return users, items, times


@pytest.mark.parametrize(("n", "sizes"), [(1, [1, 0, 0]), (2, [1, 0, 1]), (3, [1, 1, 1]),
                                          (9, [7, 1, 1]), (10, [8, 1, 1]), (20, [16, 2, 2]),
                                          (25, [21, 2, 2])])
def test_per_user_sizes_follow_recbole(n, sizes):
    assert part_sizes(n) == sizes


@pytest.mark.parametrize("kind", ["temporal", "random"])
def test_per_user_splits_give_each_user_its_share(log, kind):
    users, items, times = log
    split = make_split(kind, users, items, times, seed=1)
    for u in np.unique(users):
        mine = split.part[users == u]
        assert [int((mine == p).sum()) for p in (TRAIN, VALID, TEST)] == part_sizes(len(mine))


def test_temporal_puts_no_future_interaction_in_training(log):
    users, items, times = log
    split = make_split("temporal", users, items, times)
    for u in np.unique(users):
        t, part = times[users == u], split.part[users == u]
        assert t[part == TRAIN].max() <= t[part != TRAIN].min()
        if (part == VALID).any() and (part == TEST).any():
            assert t[part == VALID].max() <= t[part == TEST].min()


def test_temporal_ties_keep_file_order():
    users = np.zeros(10, dtype=int)
    split = make_split("temporal", users, np.arange(10), np.zeros(10))
    np.testing.assert_array_equal(split.part, [0] * 8 + [1, 2])


def test_temporal_needs_timestamps():
    with pytest.raises(ConfigError, match="timestamp"):
        make_split("temporal", np.zeros(3, int), np.arange(3), np.array([1.0, np.nan, 2.0]))


def test_random_is_reproducible_with_its_seed(log):
    users, items, times = log
    a = make_split("random", users, items, times, seed=3).part
    b = make_split("random", users, items, times, seed=3).part
    c = make_split("random", users, items, times, seed=4).part
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_cold_item_removes_its_items_from_training(log):
    users, items, times = log
    split = make_split("cold-item", users, items, times, seed=5)
    present = np.unique(items)
    assert len(split.valid_items) + len(split.test_items) == round(0.2 * len(present))
    assert abs(len(split.valid_items) - len(split.test_items)) <= 1
    assert not set(split.valid_items) & set(split.test_items)
    assert not set(items[split.part == TRAIN]) & (set(split.valid_items) | set(split.test_items))
    assert set(items[split.part == VALID]) <= set(split.valid_items)
    assert set(items[split.part == TEST]) == set(split.test_items)
    np.testing.assert_array_equal(split.candidates(TEST, 80), np.sort(split.test_items))
    assert len(split.candidates(TRAIN, 80)) == 80
    again = make_split("cold-item", users, items, times, seed=5)
    np.testing.assert_array_equal(again.test_items, split.test_items)
    other = make_split("cold-item", users, items, times, seed=6)
    assert set(other.test_items) != set(split.test_items)


@pytest.mark.parametrize("kind", list(SplitKind))
def test_parts_are_disjoint_pairs_and_survive_a_round_trip(tmp_path, log, kind):
    users, items, times = log
    split = make_split(kind, users, items, times, seed=2)
    pairs = {p: set(zip(users[split.part == p], items[split.part == p], strict=True))
             for p in (TRAIN, VALID, TEST)}
    assert not pairs[TRAIN] & pairs[VALID] and not pairs[TRAIN] & pairs[TEST]
    assert not pairs[VALID] & pairs[TEST]
    assert sum(map(len, pairs.values())) == len(users)
    save_split(tmp_path / "s.npz", split, users, items, times)
    loaded, u2, i2, t2 = load_split(tmp_path / "s.npz")
    assert loaded.kind is split.kind and loaded.seed == 2
    np.testing.assert_array_equal(loaded.part, split.part)
    np.testing.assert_array_equal(u2, users)
    if kind is SplitKind.COLD_ITEM:
        np.testing.assert_array_equal(loaded.test_items, split.test_items)


def test_cold_item_needs_enough_items():
    with pytest.raises(ConfigError, match="at least 10 items"):
        make_split("cold-item", np.zeros(4, int), np.array([0, 1, 2, 3]), np.zeros(4))
