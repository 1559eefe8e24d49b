"""The replay estimator on logs with known answers, and `mmrec evaluate replay`."""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_privacy import RAW_USERS, world  # noqa: F401
from test_recsys_cli import invoke, ok, one_line_error

from mmrec.recsys.explore import Greedy
from mmrec.recsys.replay import (
    BanditChooser,
    Log,
    PopularityChooser,
    candidate_sets,
    replay,
)


def test_replay_counts_only_matched_events_and_learns_from_them():
    # popularity 3, 2, 1, 0: picks 0 of {0, 1} (matches event 1, reward 1, count 0 -> 4),
    # 0 again for event 2 (logged 1: skipped), 2 of {2, 3} (matches event 3, reward 0),
    # 2 for event 4 (logged 3: skipped); then event 5 offers {1, 2}: 1 (count 2) matches
    log = Log(["a", "b", "a", "b", "c"], np.array([0, 1, 2, 3, 1]), np.array([1, 1, 0, 1, 1.0]))
    sets = [np.array(s) for s in ([0, 1], [0, 1], [2, 3], [2, 3], [1, 2])]
    chooser = PopularityChooser(np.array([3.0, 2.0, 1.0, 0.0]))
    result = replay(log, sets, chooser)
    assert result["matched"] == 3 and result["events"] == 5
    assert result["reward"] == pytest.approx(2 / 3)
    half = 1.959964 * np.sqrt((2 / 3) * (1 / 3) / 3)
    assert result["ci_low"] == pytest.approx(2 / 3 - half) and result["ci_high"] == 1.0
    np.testing.assert_allclose(chooser.counts, [4, 3, 1, 0])  # matched rewards only


def test_a_bandit_learns_only_from_what_it_showed():
    items = np.array([[1.0, 0.0], [0.0, 1.0]])
    chooser = BanditChooser(items, lambda user: np.array([1.0, 0.0]), Greedy(), lam=1.0)
    # user u: item 0 (shown, reward 0) -> mean (0.5, 0); then item 1 logged, 0 shown: no
    # match, no update; then item 0 logged again: shown (0.5 > 0) and matched
    log = Log(["u", "u", "u"], np.array([0, 1, 0]), np.array([0.0, 1.0, 0.0]))
    sets = [np.array([0, 1])] * 3
    result = replay(log, sets, chooser)
    assert result["matched"] == 2 and result["reward"] == 0.0
    np.testing.assert_allclose(chooser.posts["u"].mean, [1 / 3, 0.0])  # b = (1, 0), A = diag(3, 1)


def test_candidate_sets_hold_the_logged_item_and_distinct_others():
    items = np.array([0, 5, 9, 9])
    sets = candidate_sets(items, 10, 4, seed=0)
    for item, cands in zip(items, sets, strict=True):
        assert len(cands) == 4 and len(set(cands)) == 4 and item in cands and cands.max() < 10
    positions = [int(np.flatnonzero(c == i)[0]) for i, c in
                 zip(np.zeros(400, int), candidate_sets(np.zeros(400, int), 10, 4, 1), strict=True)]
    assert set(positions) == {0, 1, 2, 3}  # the logged item is not always first


def test_evaluate_replay_cli_on_an_anonymised_model(world, tmp_path):  # noqa: F811
    rng = np.random.default_rng(3)
    lines = ["user,item,rating,timestamp"] + [
        f"{RAW_USERS[rng.integers(len(RAW_USERS))]},i{rng.integers(30)},{rng.integers(1, 6)},{5000 + t}"
        for t in range(300)]
    log = tmp_path / "log.csv"
    log.write_text("\n".join(lines) + "\n")
    result = json.loads(ok(invoke("evaluate", "replay", world.out, "--log", log, "--key", world.key,
                                  "--candidates", "5", "--json")).stdout)
    assert result["events"] > 200 and result["candidates"] == 5
    for name in ("greedy", "ucb", "thompson", "epsilon", "popularity", "random"):
        r = result[name]
        assert 0 < r["matched"] <= result["events"]
        assert r["ci_low"] <= r["reward"] <= r["ci_high"]
    assert 0.1 < result["random"]["matched"] / result["events"] < 0.3  # about 1 in 5
    ok(invoke("evaluate", "replay", world.out, "--log", log, "--key", world.key))  # the table
    one_line_error(invoke("evaluate", "replay", world.out, "--log", log), "anonymised")
    one_line_error(invoke("evaluate", "replay", world.out), "--log goes with")
    (tmp_path / "norating.csv").write_text("user,item\nx,i1\n")
    one_line_error(invoke("evaluate", "replay", world.out, "--log", tmp_path / "norating.csv",
                          "--key", world.key), "no ratings")
