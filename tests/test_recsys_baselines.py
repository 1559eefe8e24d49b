"""EASE, iALS and interaction item-kNN: planted structure, validation-only tuning, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import train_matrix
from mmrec.cli.main import app
from mmrec.enums import ModelKind, SplitKind
from mmrec.errors import ConfigError
from mmrec.progress import NullProgress
from mmrec.recsys import itemitem
from mmrec.recsys.baselines import most_popular
from mmrec.recsys.config import TrainConfig
from mmrec.recsys.data import Data
from mmrec.recsys.evaluate import rank_metrics
from mmrec.recsys.scoring import History
from mmrec.recsys.splits import TEST, make_split
from mmrec.recsys.train import fit

TUNED = ["ease", "ials", "itemcf"]
N_USERS, N_ITEMS, GROUPS = 80, 48, 4
runner = CliRunner()


def planted(seed: int = 0, n_users: int = N_USERS) -> Data:
    """Each user takes 9 of its group's 12 items; a few items are popular across groups,
    so popularity ranks the blockbusters, not the user's group."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        group = np.arange(N_ITEMS)[np.arange(N_ITEMS) % GROUPS == u % GROUPS]
        picked = list(rng.choice(group, size=9, replace=False))
        picked += [i for i in (0, 1, 2, 3) if rng.random() < 0.5 and i not in picked]
        users += [u] * len(picked)
        items += rng.permutation(picked).tolist()
    users, items = np.array(users), np.array(items)
    times = np.arange(len(users), dtype=np.float64)
    split = make_split(SplitKind.RANDOM, users, items, times, seed)
    return Data([f"i{i}" for i in range(N_ITEMS)], [f"u{u}" for u in range(n_users)],
                users, items, times, split)


def fitted(model: str, data: Data, **fixed):
    cfg = TrainConfig(model=model, split=SplitKind.RANDOM, **fixed).resolved()
    return fit(data, None, cfg, NullProgress())


@pytest.mark.parametrize("model", TUNED)
def test_planted_groups_beat_popularity(model):
    data = planted()
    scorer, info = fitted(model, data)
    ours = rank_metrics(scorer, data, TEST, (10,))["ndcg@10"]
    pop = rank_metrics(most_popular(data), data, TEST, (10,))["ndcg@10"]
    assert ours > 1.5 * pop and ours > 0.3, (ours, pop)
    assert set(info["tuning"]["chosen"]) == {k for k in info["tuning"]["trials"][0] if k != "ndcg@20"}


@pytest.mark.parametrize("model", ["ease", "itemcf"])
def test_grid_choice_reads_validation_only(model):
    """Rewriting the test part's items changes no trial; the pick is the best trial."""
    data = planted()
    _, info = fitted(model, data)
    test = data.split.part == TEST
    items = data.items.copy()
    items[test] = (items[test] + 1) % N_ITEMS
    shuffled = Data(data.item_ids, data.user_ids, data.users, items, data.times, data.split)
    _, again = fitted(model, shuffled)
    assert again == info
    trials = info["tuning"]["trials"]
    best = max(trials, key=lambda t: t["ndcg@20"])
    assert info["tuning"]["chosen"] == {k: v for k, v in best.items() if k != "ndcg@20"}
    assert len(trials) == np.prod([len(v) for v in (itemitem.EASE_GRID if model == "ease"
                                                    else itemitem.ITEMCF_GRID).values()])


def test_a_fixed_value_is_the_only_one_tried():
    _, info = fitted("ease", planted(), reg=123.0)
    assert info["tuning"]["chosen"] == {"reg": 123.0} and len(info["tuning"]["trials"]) == 1


def test_ease_is_its_closed_form():
    """W = argmin ||X - XW||^2 + lambda ||W||^2 with diag(W) = 0: the KKT conditions hold."""
    data = planted()
    x = train_matrix(data).astype(np.float64)
    w = itemitem.ease_weights((x.T @ x).astype(np.float32), 50.0).astype(np.float64)
    grad = x.T @ (x @ w - x) + 50.0 * w  # zero off the diagonal (a multiplier on it)
    off = ~np.eye(N_ITEMS, dtype=bool)
    assert np.abs(grad[off]).max() < 1e-2 and not np.diag(w).any()
    # EASEScorer's form, W's columns as rows, comes C-ordered without a transposing copy
    columns = itemitem.ease_columns((x.T @ x).astype(np.float32), 50.0)
    assert columns.flags.c_contiguous and columns.dtype == np.float32
    np.testing.assert_array_equal(columns, w.T.astype(np.float32))


def test_ials_fold_in_serves_a_new_users_group():
    data = planted()
    scorer, _ = fitted("ials", data, factors=16, reg=1.0, alpha=10.0)
    history = np.array([4, 8, 12, 16])  # group 0
    vector = scorer.user_vectors(np.array([-1]), History.of([history]))[0]
    scores = scorer.items @ vector
    scores[history] = -np.inf
    top = np.argsort(-scores)[:6]
    assert (top % GROUPS == 0).sum() >= 5, top


def test_dense_item_item_models_refuse_large_catalogs(monkeypatch):
    monkeypatch.setattr(itemitem, "MAX_ITEMS", N_ITEMS - 1)
    for model in ("ease", "itemcf"):
        with pytest.raises(ConfigError, match=f"catalogs above {N_ITEMS - 1} items are refused"):
            fitted(model, planted())


def test_bad_hyper_parameters_are_refused():
    for fixed, message in (({"reg": 0.0}, "--reg must be positive"),
                           ({"factors": 0}, "--factors must be >= 1"),
                           ({"neighbours": 0}, "--neighbours must be >= 1")):
        with pytest.raises(ConfigError, match=message):
            TrainConfig(model=ModelKind.EASE, **fixed).resolved()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def inter(tmp_path_factory):
    data = planted(1, 40)
    path = tmp_path_factory.mktemp("tuned") / "inter.csv"
    path.write_text("user,item,timestamp\n" + "".join(
        f"u{u},i{i},{t}\n" for u, i, t in zip(data.users, data.items, data.times, strict=True)))
    return path


@pytest.mark.parametrize("model", TUNED)
def test_train_recommend_explain_evaluate_through_the_cli(inter, tmp_path, model):
    out = tmp_path / model
    report = json.loads(ok(invoke("train", "--interactions", inter, "--out", out, "--model",
                                  model, "--split", "random", "--json")).stdout)
    chosen = report["tuning"]["chosen"]
    config = json.loads((out / "config.json").read_text())["config"]
    assert all(config[k] == v for k, v in chosen.items())  # the model says what it was fitted with
    text = ok(invoke("train", "--interactions", inter, "--out", tmp_path / "again", "--model",
                     model, "--split", "random", *[f"--{k}={v}" for k, v in chosen.items()])).stdout
    assert "chosen on validation: " in text  # one candidate: the fixed values

    result = json.loads(ok(invoke("evaluate", out, "--json")).stdout)
    assert result["model"] == model and result["ndcg@10"] > 0.3
    for query in (["--user", "u0"], ["--history", "i4,i8,i12"]):
        hits = json.loads(ok(invoke("recommend", out, *query, "-k", "3", "--explain",
                                    "--json")).stdout)["results"]
        assert len(hits) == 3 and sum(int(h["id"][1:]) % GROUPS == 0 for h in hits) >= 2
        why = hits[0]["explanation"]
        reasons = why.get("history") or why.get("similar")
        assert reasons and all(r["item"].startswith("i") for r in reasons)


def test_ease_contributions_sum_to_the_score(inter, tmp_path):
    ok(invoke("train", "--interactions", inter, "--out", tmp_path / "m", "--model", "ease",
              "--split", "random", "--reg", "20"))
    hit = json.loads(ok(invoke("recommend", tmp_path / "m", "--history", "i4,i8", "-k", "1",
                               "--explain", "--json")).stdout)["results"][0]
    parts = [h["contribution"] for h in hit["explanation"]["history"]]
    assert sum(parts) == pytest.approx(hit["score"], abs=1e-4)
