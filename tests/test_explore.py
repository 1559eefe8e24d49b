"""The linear bandits of recommend --explore, against hand-computed values."""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_privacy import RAW_USERS, world  # noqa: F401
from test_recsys_cli import invoke, ok, one_line_error

from mmrec.enums import ExploreKind
from mmrec.recsys.explore import (
    EpsilonGreedy,
    ExploreConfig,
    Greedy,
    LinUCB,
    Posterior,
    Thompson,
    posterior,
    rerank,
)


def test_linucb_scores_a_hand_computed_2d_example():
    # prior mean (1, 0), lam 1; one event on x = (1, 0) with reward 1:
    # A = [[2, 0], [0, 1]], b = (1, 0) + (1, 0) = (2, 0), mean = (1, 0)
    post = posterior(np.array([1.0, 0.0]), np.array([[1.0, 0.0]]), np.array([1.0]), lam=1.0)
    np.testing.assert_allclose(post.a_inv, [[0.5, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(post.mean, [1.0, 0.0])
    items = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    # mean.x + sqrt(x^T A^-1 x): 1 + sqrt(.5); 0 + 1; .6 + sqrt(.36 * .5 + .64)
    np.testing.assert_allclose(LinUCB(alpha=1.0).scores(post, items),
                               [1 + np.sqrt(0.5), 1.0, 0.6 + np.sqrt(0.82)])
    # a reward of 0 instead: b = (1, 0), mean = (0.5, 0)
    post0 = posterior(np.array([1.0, 0.0]), np.array([[1.0, 0.0]]), np.array([0.0]), lam=1.0)
    np.testing.assert_allclose(post0.mean, [0.5, 0.0])
    np.testing.assert_allclose(LinUCB(alpha=1.0).scores(post0, items),
                               [0.5 + np.sqrt(0.5), 1.0, 0.3 + np.sqrt(0.82)])
    assert list(LinUCB(alpha=1.0).order(post0, items, None)) == [0, 2, 1]  # 1.2071 > 1.2055 > 1


def test_sherman_morrison_matches_the_direct_inverse():
    rng = np.random.default_rng(0)
    theta0, xs, rs = rng.normal(size=5), rng.normal(size=(12, 5)), rng.integers(0, 2, 12)
    post = posterior(theta0, xs, rs, lam=2.0)
    a = 2.0 * np.eye(5) + xs.T @ xs
    np.testing.assert_allclose(post.a_inv, np.linalg.inv(a), atol=1e-10)
    np.testing.assert_allclose(post.mean, np.linalg.solve(a, 2.0 * theta0 + xs.T @ rs), atol=1e-10)


def test_without_feedback_every_policy_starts_from_the_models_ranking():
    rng = np.random.default_rng(1)
    theta0, items = rng.normal(size=8), rng.normal(size=(30, 8))
    model_order = np.argsort(-(items @ theta0), kind="stable")
    post = Posterior.prior(theta0, lam=1.0)
    np.testing.assert_allclose(post.mean, theta0)
    assert list(Greedy().order(post, items, rng)) == list(model_order)
    assert list(EpsilonGreedy(0.0).order(post, items, rng)) == list(model_order)
    assert list(Thompson(1e-9).order(post, items, rng)) == list(model_order)
    assert list(LinUCB(0.0).order(post, items, rng)) == list(model_order)
    shuffled = EpsilonGreedy(1.0).order(post, items, np.random.default_rng(2))
    assert sorted(shuffled) == list(range(30)) and list(shuffled) != list(model_order)


def test_thompson_is_seeded_and_explores():
    theta0, items = np.array([1.0, 0.0]), np.array([[1.0, 0.0], [0.9, 0.43], [0.0, 1.0]])
    cfg = ExploreConfig(alpha=1.0)
    orders = [tuple(rerank(ExploreKind.THOMPSON, cfg, theta0, items, np.zeros((0, 2)), np.zeros(0), s))
              for s in range(20)]
    assert orders[0] == tuple(rerank(ExploreKind.THOMPSON, cfg, theta0, items, np.zeros((0, 2)),
                                     np.zeros(0), 0))
    assert len(set(orders)) > 1  # the draw moves the ranking


def test_rewards_move_the_ranking_towards_liked_items():
    theta0 = np.array([1.0, 0.0])
    items = np.array([[1.0, 0.0], [0.0, 1.0]])
    # three misses on (1, 0), three hits on (0, 1): A = 4 I, b = (1, 3), mean = (.25, .75)
    shown = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3)
    rewards = np.array([0, 0, 0, 1, 1, 1.0])
    np.testing.assert_allclose(posterior(theta0, shown, rewards, 1.0).mean, [0.25, 0.75])
    order = rerank(ExploreKind.GREEDY, ExploreConfig(), theta0, items, shown, rewards, 0)
    assert list(order) == [1, 0]


@pytest.mark.parametrize("kind", ["ucb", "thompson", "epsilon"])
def test_recommend_explore_with_feedback_on_an_anonymised_model(world, tmp_path, kind):  # noqa: F811
    base = ["recommend", world.out, "--user", RAW_USERS[2], "--key", world.key, "-k", "5", "--json"]
    plain = [h["id"] for h in json.loads(ok(invoke(*base)).stdout)["results"]]
    feedback = tmp_path / "feedback.csv"
    feedback.write_text("user,item,rating\n" + f"{RAW_USERS[2]},{plain[0]},1\n"
                        + f"{RAW_USERS[3]},{plain[1]},5\n")
    hits = json.loads(ok(invoke(*base, "--explore", kind, "--feedback", feedback)).stdout)["results"]
    ids = [h["id"] for h in hits]
    assert len(ids) == 5 and plain[0] not in ids  # shown items are excluded like seen ones
    again = json.loads(ok(invoke(*base, "--explore", kind, "--feedback", feedback)).stdout)["results"]
    assert [h["id"] for h in again] == ids  # seeded


def test_explore_errors_are_one_line(world, tmp_path):  # noqa: F811
    one_line_error(invoke("recommend", world.out, "--history", "i1,i2", "--explore", "ucb"),
                   "--explore re-ranks for a user")
    one_line_error(invoke("recommend", world.out, "--user", RAW_USERS[0], "--key", world.key,
                          "--feedback", tmp_path / "f.csv"), "--feedback updates an --explore")
    result = invoke("recommend", world.out, "--user", RAW_USERS[0], "--explore", "bogus")
    assert result.exit_code == 2 and "bogus" in result.output
