"""The two-tower's EASE item-item term: the score it adds, validation-only choice, save and
load, explain, update, and the item-count bound."""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_recsys_baselines import N_ITEMS, planted
from typer.testing import CliRunner

from conftest import FAKE_OPTIONS, make_catalog, one_line_error, train_matrix
from mmrec.cli.main import app
from mmrec.enums import SplitKind
from mmrec.errors import ConfigError
from mmrec.progress import NullProgress
from mmrec.recsys import itemitem, twotower
from mmrec.recsys.config import TrainConfig
from mmrec.recsys.data import Data
from mmrec.recsys.evaluate import rank_metrics
from mmrec.recsys.itemitem import ease_weights
from mmrec.recsys.scoring import History, Linear, TwoTowerScorer, load_scorer, save_scorer
from mmrec.recsys.splits import TEST, TRAIN

runner = CliRunner()
DIM = 8


def random_towers(n_items: int, n_users: int, seed: int = 0) -> TwoTowerScorer:
    """Towers that know nothing of the data: random unit item vectors and maps."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, DIM)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    return TwoTowerScorer(items, np.ones(n_items, np.float32),
                          rng.normal(size=(n_users, DIM)).astype(np.float32) * 0.1,
                          Linear(rng.normal(size=(DIM, DIM)).astype(np.float32),
                                 rng.normal(size=DIM).astype(np.float32) * 0.1),
                          np.zeros((n_items, DIM), np.float32),
                          adapter=[(rng.normal(size=(DIM, 5)).astype(np.float32), np.zeros(DIM, np.float32))],
                          recent=2, recent_term=Linear(np.eye(DIM, dtype=np.float32), np.zeros(DIM, np.float32)))


def ease_of(data: Data, reg: float = 50.0) -> np.ndarray:
    x = train_matrix(data)
    return ease_weights(x.T @ x, reg)


def test_the_term_adds_weight_times_the_historys_ease_weights():
    data = planted()
    towers = random_towers(data.n_items, data.n_users)
    w = ease_of(data)
    blended = towers.with_item_item(w, 0.7)
    history = data.history(TRAIN)
    users = np.arange(10)
    got = blended.user_vectors(users, history.take(users)) @ blended.items.T
    alone = towers.user_vectors(users, history.take(users)) @ towers.items.T
    for n, u in enumerate(users):
        assert got[n] == pytest.approx(alone[n] + 0.7 * w[history[u]].sum(0), abs=1e-5)
    # and it is what ranks: planted groups the random towers cannot see, EASE can
    ours = rank_metrics(towers.with_item_item(w, 10.0), data, TEST, (10,))["ndcg@10"]
    assert ours > 2 * rank_metrics(towers, data, TEST, (10,))["ndcg@10"] and ours > 0.3
    assert blended.with_item_item(None, 0.0).items.shape == towers.items.shape


def test_explained_parts_add_up_with_the_term():
    """user + history shares + the towers' biases == the score; the history shares gain
    exactly weight * W[h, item] each."""
    data = planted()
    towers = random_towers(data.n_items, data.n_users)
    w = ease_of(data)
    s = towers.with_item_item(w, 0.5)
    history = data.items[(data.users == 3) & (data.split.part == TRAIN)]
    query = s.user_vectors(np.array([3]), History.of([history]))[0]
    tower = s.tower_items
    raw = (s.users[3] + s.history(tower[history].mean(0))
           + s.recent_term(tower[history[-s.recent:]].mean(0)))
    for item in (0, 7, 21):
        parts, plain = s.explain(3, history, item), towers.explain(3, history, item)
        bias = (s.history.bias + s.recent_term.bias) @ tower[item] / np.linalg.norm(raw)
        assert parts.user + parts.history.sum() + bias == pytest.approx(float(query @ s.items[item]), abs=1e-5)
        assert parts.history - plain.history == pytest.approx(0.5 * w[history, item], abs=1e-6)


def test_saved_and_loaded_with_the_model(tmp_path):
    data = planted()
    s = random_towers(data.n_items, data.n_users).with_item_item(ease_of(data), 0.3)
    save_scorer(s, tmp_path)
    again = load_scorer(tmp_path)
    assert isinstance(again, TwoTowerScorer) and again.item_item_weight == pytest.approx(0.3)
    np.testing.assert_array_equal(again.items, s.items)
    np.testing.assert_array_equal(again.item_item_weights(), s.item_item_weights())
    history = data.history(TRAIN).take(np.arange(5))
    np.testing.assert_array_equal(again.user_vectors(np.arange(5), history),
                                  s.user_vectors(np.arange(5), history))


def test_items_added_later_have_no_column_and_add_nothing_as_history():
    """As update extends a model: new items get zero W columns, and such an item in a
    history leaves the term as it was."""
    data = planted()
    s = random_towers(data.n_items, data.n_users).with_item_item(ease_of(data), 1.0)
    new = s.cold_vectors(np.ones((2, 5), np.float32))  # what update gives a new item
    assert new.shape == (2, s.items.shape[1]) and not new[:, DIM:].any()
    old = s.content_vectors(np.ones((1, 5), np.float32), np.array([4]))
    np.testing.assert_array_equal(old[0, DIM:], s.items[4, DIM:])
    grown = TwoTowerScorer(np.vstack([s.items, new]), np.ones(N_ITEMS + 2, np.float32), s.users,
                           s.history, np.vstack([s.item_id, np.zeros((2, DIM), np.float32)]),
                           s.adapter, s.recent, s.recent_term, s.item_item_weight)
    with_new = grown.user_vectors(np.array([0]), History.of([np.array([1, 5, N_ITEMS])]))
    without = grown.user_vectors(np.array([0]), History.of([np.array([1, 5])]))
    np.testing.assert_array_equal(with_new[0, DIM:], without[0, DIM:])
    assert with_new[0, DIM + 1] == 1.0 and with_new[0, DIM + 5] == 1.0


def test_the_gram_matrix_is_summed_over_blocks_of_users(monkeypatch):
    data = planted()
    x = train_matrix(data)
    monkeypatch.setattr(itemitem, "GRAM_CELLS", 7 * N_ITEMS)  # blocks of 7 users
    np.testing.assert_array_equal(itemitem.train_gram(data), x.T @ x)


def test_chosen_on_validation_only_and_the_towers_alone_among_the_candidates():
    data = planted()
    towers = random_towers(data.n_items, data.n_users)
    cfg = TrainConfig(split=SplitKind.RANDOM).resolved()
    blended, tuning = twotower.item_item(towers, data, cfg, NullProgress())
    weights = [t["item_item_weight"] for t in tuning["trials"] if "item_item_weight" in t]
    assert len(weights) == len(twotower.ITEM_ITEM_GRID) and weights[0] == 0.0
    assert tuning["chosen"]["item_item_weight"] > 0 and blended.item_item_weight > 0
    best = max((t for t in tuning["trials"] if "item_item_weight" in t), key=lambda t: t["ndcg@20"])
    assert tuning["chosen"]["item_item_weight"] == best["item_item_weight"]
    test = data.split.part == TEST
    items = data.items.copy()
    items[test] = (items[test] + 1) % N_ITEMS
    shuffled = Data(data.item_ids, data.user_ids, data.users, items, data.times, data.split)
    assert twotower.item_item(towers, shuffled, cfg, NullProgress())[1] == tuning


def test_off_and_bounded(monkeypatch):
    data = planted()
    towers = random_towers(data.n_items, data.n_users)
    cfg = TrainConfig(split=SplitKind.RANDOM).resolved()
    assert twotower.item_item(towers, data, TrainConfig(item_item=False).resolved(), None) == (towers, {})
    monkeypatch.setattr(twotower, "ITEM_ITEM_MAX", N_ITEMS - 1)
    assert twotower.item_item(towers, data, cfg, None) == (towers, {})  # above the bound: off
    asked = TrainConfig(split=SplitKind.RANDOM, item_item=True, item_item_weight=1.0).resolved()
    assert twotower.item_item(towers, data, asked, None)[0].item_item_items == N_ITEMS
    monkeypatch.setattr(itemitem, "MAX_ITEMS", N_ITEMS - 1)  # EASE's own bound still holds
    with pytest.raises(ConfigError, match="are refused"):
        twotower.item_item(towers, data, asked, None)
    with pytest.raises(ConfigError, match="not with --dp-epsilon"):
        TrainConfig(item_item=True, dp_epsilon=1.0).resolved()
    dp = TrainConfig(dp_epsilon=1.0).resolved()
    monkeypatch.setattr(twotower, "ITEM_ITEM_MAX", 10_000)
    assert twotower.item_item(towers, data, dp, None) == (towers, {})  # DP: off by default


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def test_train_recommend_update_keep_the_term(tmp_path):
    """Through the CLI: the term is saved with its weight, explained, kept by update
    (also --steps), and a user's new interaction enters it at once."""
    from mmrec.recsys.model import load_model

    rows = [{"id": f"i{i}", "title": f"Film {i}", "genre": f"g{i % 4}"} for i in range(42)]
    ok(invoke("encode", make_catalog(tmp_path / "cat", rows[:40]), "--out", tmp_path / "store", *FAKE_OPTIONS))
    rng = np.random.default_rng(0)
    lines = ["user,item,rating,timestamp"]
    for u in range(24):
        pool = [i for i in range(40) if i % 4 == u % 4]
        lines += [f"u{u},i{i},4,{1000 + 7 * t + u}" for t, i in enumerate(rng.choice(pool, 8, replace=False))]
    (tmp_path / "inter.csv").write_text("\n".join(lines) + "\n")
    model = tmp_path / "m"
    report = json.loads(ok(invoke("train", "--store", tmp_path / "store", "--interactions",
                                  tmp_path / "inter.csv", "--out", model, "--epochs", "2",
                                  "--batch-size", "64", "--item-item-weight", "0.5", "--json")).stdout)
    assert report["tuning"]["chosen"]["item_item_weight"] == 0.5 and "reg" in report["tuning"]["chosen"]
    s = load_model(model).scorer
    assert s.item_item_weight == 0.5 and s.item_item_items == 40
    hits = json.loads(ok(invoke("recommend", model, "--user", "u3", "-k", "3", "--explain", "--json")).stdout)
    assert set(hits["results"][0]["explanation"]) == {"history", "user", "modalities"}
    similar = json.loads(ok(invoke("recommend", model, "--item", "i1", "-k", "3", "--json")).stdout)
    assert "i1" not in [h["id"] for h in similar["results"]]
    one_line_error(invoke("train", "--store", tmp_path / "store", "--interactions", tmp_path / "inter.csv",
                          "--out", tmp_path / "dp", "--item-item", "--dp-epsilon", "4"))

    ok(invoke("encode", make_catalog(tmp_path / "cat2", rows), "--out", tmp_path / "store", *FAKE_OPTIONS))
    (tmp_path / "new.csv").write_text("user,item,rating,timestamp\nu3,i7,4,9000\nu3,i40,4,9001\n"
                                      "u99,i40,4,9002\nu99,i41,4,9003\n")
    ok(invoke("update", model, "--interactions", tmp_path / "new.csv", "--out", tmp_path / "m2"))
    grown = load_model(tmp_path / "m2")
    g = grown.scorer
    assert g.item_item_weight == 0.5 and g.item_item_items == 40 and len(g.items) == 42
    np.testing.assert_array_equal(g.item_item_weights(), s.item_item_weights())
    assert not g.items[40:, g.dim:].any()  # new items: no column
    u3 = grown.user_row("u3")
    history = grown.data.items[grown.data.users == u3]
    query = g.user_vectors(np.array([u3]), History.of([history]))[0]
    assert query[g.dim + 7] == 0.5  # the new interaction is in the term
    ok(invoke("update", model, "--interactions", tmp_path / "new.csv", "--out", tmp_path / "m3",
              "--steps", "2"))
    tuned = load_model(tmp_path / "m3").scorer
    assert tuned.item_item_weight == 0.5
    np.testing.assert_array_equal(tuned.item_item_weights(), s.item_item_weights())


def test_a_bandit_sees_the_term_as_one_dimension():
    """theta0 . context is the model's score, in d + 1 dimensions (not d + items), so a
    greedy bandit without feedback keeps the model's order, and replay's per-user
    posteriors stay small."""
    from mmrec.enums import ExploreKind
    from mmrec.recsys.explore import ExploreConfig, rerank
    from mmrec.recsys.scoring import bandit_context

    data = planted()
    s = random_towers(data.n_items, data.n_users).with_item_item(ease_of(data), 2.0)
    query = s.user_vectors(np.array([3]), data.history(TRAIN).take(np.array([3])))[0]
    rows = np.arange(N_ITEMS)
    theta, contexts = bandit_context(s, query, rows)
    assert theta.shape == (DIM + 1,) and contexts.shape == (N_ITEMS, DIM + 1)
    np.testing.assert_allclose(contexts @ theta, s.items @ query, atol=1e-5)
    order = rerank(ExploreKind.GREEDY, ExploreConfig(), theta, contexts, contexts[:0], np.zeros(0), 0)
    np.testing.assert_array_equal(order, np.argsort(-(s.items @ query), kind="stable"))
