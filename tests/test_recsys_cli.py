"""`mmrec train` -> `recommend` -> `evaluate` through the CLI, for every model, and bad inputs."""
from __future__ import annotations

import json
import shutil
import types

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FAKE, FAKE_OPTIONS, make_catalog, one_line_error
from mmrec.cli.main import app

runner = CliRunner()
N_ITEMS, N_USERS, GENRES = 40, 24, 4
FAST = ["--epochs", "3", "--batch-size", "64", "--warmup", "5"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def write_interactions(path, rng, extra=()):
    """Each user mostly takes items of one genre, one item a step in time."""
    lines = ["user,item,rating,timestamp"]
    for u in range(N_USERS):
        pool = [i for i in range(N_ITEMS) if i % GENRES == u % GENRES]
        for t, i in enumerate(rng.choice(pool, size=8, replace=False)):
            lines.append(f"u{u},i{i},{1 + (u + t) % 5},{1000 + 7 * t + u}")
    lines += list(extra)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A text-only store of 40 items and interactions of 24 users (one unknown item)."""
    root = tmp_path_factory.mktemp("recsys")
    rows = [{"id": f"i{i}", "title": f"Film {i}", "genre": f"g{i % GENRES}"} for i in range(N_ITEMS)]
    catalog = make_catalog(root / "cat", rows)
    ok(invoke("encode", catalog, "--out", root / "store", *FAKE_OPTIONS))
    inter = write_interactions(root / "inter.csv", np.random.default_rng(0),
                               extra=["u0,not-an-item,5,1"])
    return types.SimpleNamespace(root=root, store=root / "store", inter=inter)


def train(world, out, *extra):
    return invoke("train", "--store", world.store, "--interactions", world.inter, "--out", out,
                  *FAST, "--json", *extra)


@pytest.fixture(scope="module")
def models(world):
    out = {}
    for model in ("twotower", "bpr", "pop", "itemknn"):
        report = json.loads(ok(train(world, world.root / model, "--model", model)).stdout)
        out[model] = (world.root / model, report)
    return out


@pytest.mark.parametrize("model", ["twotower", "bpr", "pop", "itemknn"])
def test_train_recommend_evaluate(models, model):
    path, report = models[model]
    assert report["model"] == model and report["split"] == "temporal"
    assert report["users"] == N_USERS and report["items"] == N_ITEMS
    # 8 interactions per user: 6 train, 1 valid, 1 test; the unknown item is counted
    assert report["interactions"] == {"train": 6 * N_USERS, "valid": N_USERS, "test": N_USERS}
    assert report["read"]["unknown_items"] == 1
    for name in ("config.json", "weights.safetensors", "items.json", "users.json",
                 "interactions.npz", "index.faiss", "index.ids.json"):
        assert (path / name).is_file(), name

    hits = json.loads(ok(invoke("recommend", path, "--user", "u3", "-k", "5", "--json")).stdout)
    ids = [h["id"] for h in hits["results"]]
    assert len(ids) == 5 and len(set(ids)) == 5
    seen = _seen(path, "u3")
    assert not seen & set(ids)  # everything u3 has is excluded by default
    assert hits["results"][0]["title"].startswith("Film ")
    assert hits["results"][0]["metadata"]["genre"].startswith("g")

    result = json.loads(ok(invoke("evaluate", path, "--json")).stdout)
    for k in (5, 10, 20, 50):
        for metric in ("recall", "ndcg", "hit", "precision", "mrr", "item_coverage"):
            assert 0.0 <= result[f"{metric}@{k}"] <= 1.0
    assert result["users"] == N_USERS and result["split"] == "temporal"
    assert result["recall@50"] == 1.0  # 40 items, 7 excluded: everything is in the top 50


def _seen(path, user):
    users = json.loads((path / "users.json").read_text())
    items = json.loads((path / "items.json").read_text())
    data = np.load(path / "interactions.npz")
    row = users.index(user)
    return {items[i] for i in data["item"][data["user"] == row]}


@pytest.mark.parametrize(("model", "options", "floor"), [
    ("bpr", ["--epochs", "200", "--lr", "0.05"], 0.8),
    ("twotower", ["--epochs", "40", "--lr", "0.01"], 0.7),
])
def test_learned_models_find_each_users_genre(world, tmp_path, model, options, floor):
    """Users stick to one genre: a trained model puts the test item (one of the 3 genre
    items left among 33 candidates) in the top 10; chance is about 0.3."""
    ok(invoke("train", "--store", world.store, "--interactions", world.inter, "--out",
              tmp_path / "m", "--model", model, "--batch-size", "64", "--warmup", "5", *options))
    result = json.loads(ok(invoke("evaluate", tmp_path / "m", "--json")).stdout)
    assert result["recall@10"] >= floor


def test_include_seen_and_history_for_an_unseen_user(models):
    path = models["twotower"][0]
    seen = _seen(path, "u3")
    everything = json.loads(ok(invoke("recommend", path, "--user", "u3", "-k", str(N_ITEMS),
                                      "--include-seen", "--json")).stdout)["results"]
    assert seen <= {h["id"] for h in everything}
    for model in ("twotower", "bpr", "itemknn", "pop"):
        result = ok(invoke("recommend", models[model][0], "--history", "i1,i5,i9", "-k", "4",
                           "--json"))
        ids = [h["id"] for h in json.loads(result.stdout)["results"]]
        assert len(ids) == 4 and not {"i1", "i5", "i9"} & set(ids)


def test_history_is_the_user_tower_input(models):
    """A new user's recommendations depend on the history given."""
    path = models["itemknn"][0]
    a = json.loads(ok(invoke("recommend", path, "--history", "i1", "--json")).stdout)
    b = json.loads(ok(invoke("recommend", path, "--history", "i2", "--json")).stdout)
    assert [h["id"] for h in a["results"]] != [h["id"] for h in b["results"]]


def test_explain_names_history_items_and_modalities(models):
    """--explain --json gives numbers: history items with their share of the score, the
    user's own part, each modality's; the table renders the same as text."""
    path = models["twotower"][0]
    out = json.loads(ok(invoke("recommend", path, "--user", "u3", "-k", "3", "--explain",
                               "--json")).stdout)
    why = out["results"][0]["explanation"]
    assert set(why) == {"history", "user", "modalities"}
    assert len(why["history"]) == 3 and {h["item"] for h in why["history"]} <= _seen(path, "u3")
    shares = [h["contribution"] for h in why["history"]]
    assert shares == sorted(shares, reverse=True) and all(isinstance(v, float) for v in shares)
    assert why["history"][0]["title"].startswith("Film ")
    assert isinstance(why["user"], float) and list(why["modalities"]) == ["text"]
    new_user = json.loads(ok(invoke("recommend", path, "--history", "i1,i5", "-k", "1",
                                    "--explain", "--json")).stdout)["results"][0]["explanation"]
    assert new_user["user"] is None  # no id vector for a user the model never saw
    table = ok(invoke("recommend", path, "--history", "i1,i5", "-k", "2", "--explain")).stdout
    assert "history: Film 1 (i1) +" in table or "history: Film 5 (i5) +" in table
    assert "modalities: text " in table and "user:" not in table
    pop = json.loads(ok(invoke("recommend", models["pop"][0], "--user", "u3", "-k", "1",
                               "--explain", "--json")).stdout)["results"][0]
    counts = np.load(models["pop"][0] / "interactions.npz")
    items = json.loads((models["pop"][0] / "items.json").read_text())
    train_items = counts["item"][counts["part"] == 0]
    assert pop["explanation"] == {"popularity": int((train_items == items.index(pop["id"])).sum())}
    bpr = json.loads(ok(invoke("recommend", models["bpr"][0], "--history", "i1,i5", "-k", "1",
                               "--explain", "--json")).stdout)["results"][0]["explanation"]
    assert {h["item"] for h in bpr["similar"]} == {"i1", "i5"} and "history" not in bpr
    assert all(-1.0 <= h["similarity"] <= 1.0 for h in bpr["similar"])


def test_evaluate_table_and_plot(models, tmp_path):
    result = ok(invoke("evaluate", models["bpr"][0], "--plot", tmp_path / "m.png"))
    assert "ndcg@20" in result.stdout and "item_coverage@50" in result.stdout
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_multimodal_explain_names_each_modality(tmp_path, media, rows):
    catalog = make_catalog(media, rows)
    ok(invoke("encode", catalog, "--out", tmp_path / "s", *FAKE_OPTIONS))
    lines = ["user,item,timestamp"] + [f"u{u},{i},{u + t}" for u in range(6)
                                       for t, i in enumerate(["r1", "g1", "b1", "t1", "s1"])]
    (tmp_path / "i.csv").write_text("\n".join(lines) + "\n")
    ok(invoke("train", "--store", tmp_path / "s", "--interactions", tmp_path / "i.csv",
              "--out", tmp_path / "m", "--model", "itemknn", "--split", "random"))
    out = json.loads(ok(invoke("recommend", tmp_path / "m", "--history", "r1", "-k", "4",
                               "--explain", "--json")).stdout)
    by_id = {h["id"]: h["explanation"]["modalities"] for h in out["results"]}
    assert list(by_id["g1"]) == ["text", "image", "audio"] and "image" not in by_id["s1"]
    assert all(isinstance(v, float) for v in by_id["g1"].values())


def test_cold_item_split_ranks_only_test_cold_items(world, tmp_path):
    ok(train(world, tmp_path / "m", "--model", "twotower", "--split", "cold-item", "--seed", "1"))
    result = json.loads(ok(invoke("evaluate", tmp_path / "m", "--json")).stdout)
    assert result["split"] == "cold-item" and result["candidates"] == 4  # 20% of 40, halved
    recs = json.loads(ok(invoke("recommend", tmp_path / "m", "--history", "i0", "-k", "40",
                                "--json")).stdout)
    assert len(recs["results"]) == N_ITEMS - 1  # cold items stay recommendable


def test_random_split_is_recorded_and_reproducible(world, tmp_path):
    for name in ("a", "b"):
        ok(train(world, tmp_path / name, "--model", "pop", "--split", "random", "--seed", "4"))
    parts = [np.load(tmp_path / n / "interactions.npz")["part"] for n in ("a", "b")]
    np.testing.assert_array_equal(*parts)
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["format"] == "mmrec-model" and config["config"]["split"] == "random"
    assert config["store"]["encoders"]["text"]["encoder"].endswith("FakeText")


def test_hard_and_extra_negatives_train(world, tmp_path):
    report = json.loads(ok(train(world, tmp_path / "m", "--negatives", "8", "--hard-negatives",
                                 "2", "--epochs", "2")).stdout)
    assert report["epochs"] == 2 and len(report["curve"]) == 2


def test_library_call_matches_the_cli(world, tmp_path):
    import mmrec
    from mmrec.query import Query
    from mmrec.recsys import TrainConfig

    report = mmrec.train(world.inter, tmp_path / "m", store=world.store,
                         config=TrainConfig(model="pop"))
    assert report.model == "pop"
    hits = mmrec.recommend(tmp_path / "m", Query(user="u1", k=3))
    assert len(hits) == 3 and all(h.title for h in hits)
    assert mmrec.evaluate(tmp_path / "m")["users"] == N_USERS


def test_aligner_content(world, tmp_path, monkeypatch):
    """--aligner: the aligner's fused vectors are the content, its store the catalog."""
    import mmrec.alignment
    from mmrec.artifacts import Kind, write_config
    from mmrec.store import Store

    store = Store.open(world.store)
    aligner = tmp_path / "aligner"
    aligner.mkdir()
    write_config(aligner, Kind.ALIGNER, {"pivot": "text"}, store)
    vectors = np.random.default_rng(0).standard_normal((len(store), 5)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    calls = []

    def fused_vectors(path):
        calls.append(path)
        return list(store.ids), vectors

    monkeypatch.setattr(mmrec.alignment, "fused_vectors", fused_vectors)
    report = json.loads(ok(invoke("train", "--aligner", aligner, "--interactions", world.inter,
                                  "--out", tmp_path / "m", "--model", "itemknn", "--json")).stdout)
    assert calls and report["items"] == N_ITEMS
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["content"]["aligner"] == str(aligner.resolve())
    assert list(config["content"]["blocks"]) == ["fused"]
    out = json.loads(ok(invoke("recommend", tmp_path / "m", "--history", "i1", "-k", "2",
                               "--explain", "--json")).stdout)
    assert "modalities" not in out["results"][0]["explanation"]  # fused: nothing to take away


# -- bad input: one line, exit 1, no traceback --------------------------------------------

def test_unknown_user(models):
    one_line_error(invoke("recommend", models["bpr"][0], "--user", "nobody"),
                   "unknown user 'nobody'")


@pytest.mark.parametrize("history", ["", ",", " , "])
def test_empty_history(models, history):
    one_line_error(invoke("recommend", models["twotower"][0], "--history", history),
                   "nothing to recommend for")


def test_history_of_unknown_items(models):
    one_line_error(invoke("recommend", models["twotower"][0], "--history", "i1,nope"),
                   "unknown item id(s) 'nope'")


def test_text_query_to_a_model(models):
    one_line_error(invoke("recommend", models["pop"][0], "--text", "hello"), "need an aligner")


def test_interactions_on_unknown_items_only(world, tmp_path):
    (tmp_path / "i.csv").write_text("user,item\nu1,x\nu2,y\n")
    first = one_line_error(invoke("train", "--store", world.store, "--interactions",
                                  tmp_path / "i.csv", "--out", tmp_path / "m"),
                           "none of the 2 interactions is on an item of the store")
    assert "'x'" in first
    assert not (tmp_path / "m").exists()


def test_train_needs_content(world, tmp_path):
    one_line_error(invoke("train", "--interactions", world.inter, "--out", tmp_path / "m"),
                   "--store STORE or --aligner ALIGNER")


def test_temporal_split_without_timestamps(world, tmp_path):
    (tmp_path / "i.csv").write_text("user,item\n" + "".join(f"u{u},i{i}\n" for u in range(3)
                                                           for i in range(5)))
    one_line_error(invoke("train", "--store", world.store, "--interactions", tmp_path / "i.csv",
                          "--out", tmp_path / "m"), "needs a timestamp")


def test_out_is_not_a_model(world, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "precious.txt").write_text("x")
    one_line_error(train(world, tmp_path / "m", "--model", "pop"), "not an mmrec model")
    assert (tmp_path / "m" / "precious.txt").exists()


def test_model_from_another_store_is_refused(world, models, tmp_path):
    """The store a model was built on, re-encoded with another encoder, is refused."""
    store = tmp_path / "store"
    shutil.copytree(world.store, store)
    ok(train(world, tmp_path / "m", "--model", "pop"))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["store"]["path"] = str(store)
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    shutil.rmtree(store)
    catalog = make_catalog(tmp_path / "cat", [{"id": f"i{i}", "title": f"F{i}"} for i in range(5)])
    ok(invoke("encode", catalog, "--out", store, "--text-encoder", f"local:{FAKE}:NaNText"))
    for args in (("recommend", tmp_path / "m", "--user", "u1"), ("evaluate", tmp_path / "m")):
        one_line_error(invoke(*args), "was encoded with", "NaNText")


def test_evaluate_a_store_is_refused(world):
    one_line_error(invoke("evaluate", world.store), "is a store, not an aligner or a model")


def test_bad_option_values(world, tmp_path):
    one_line_error(train(world, tmp_path / "m", "--temperature", "0"), "--temperature")
    result = train(world, tmp_path / "m", "--model", "nope")
    assert result.exit_code == 2 and "twotower" in result.output


def test_positive_lookup_for_large_catalogs_matches_the_bitmap(monkeypatch):
    """Above DENSE_MASK_LIMIT the in-batch positive mask comes from a sorted-key search."""
    import torch

    from mmrec.recsys import twotower
    from mmrec.recsys.config import TrainConfig
    from mmrec.recsys.data import Data
    from mmrec.recsys.splits import make_split

    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 9, 60), rng.integers(0, 15, 60)
    pairs = np.unique(np.stack([users, items], 1), axis=0)
    users, items = pairs[:, 0], pairs[:, 1]
    data = Data([f"i{i}" for i in range(15)], [f"u{u}" for u in range(9)], users, items,
                np.arange(len(users), dtype=float), make_split("random", users, items, None))
    cfg = TrainConfig(batch_size=8).resolved()
    content = rng.standard_normal((15, 4)).astype(np.float32)
    dense = twotower.TwoTowerTrainer(data, content, cfg, torch.device("cpu"))
    monkeypatch.setattr(twotower, "DENSE_MASK_LIMIT", 0)
    searched = twotower.TwoTowerTrainer(data, content, cfg, torch.device("cpu"))
    assert dense.bitmap is not None and searched.bitmap is None
    u, c = torch.arange(9).repeat_interleave(15), torch.arange(15).repeat(9)
    mask = searched._positive(u, c)
    assert torch.equal(dense._positive(u, c), mask)
    train = set(map(tuple, dense.pairs.tolist()))
    assert mask.diagonal().tolist() == [(int(a), int(b)) in train for a, b in zip(u, c, strict=True)]


def test_recent_windows_hold_the_same_users_previous_items():
    from mmrec.recsys.twotower import _windows

    users, items = np.array([0, 0, 0, 1, 1]), np.array([5, 6, 7, 8, 9])
    np.testing.assert_array_equal(_windows(users, items, 2),
                                  [[-1, -1], [5, -1], [6, 5], [-1, -1], [8, -1]])
    assert _windows(users, items, 0) is None


def test_explained_parts_add_up_to_the_score(models):
    """twotower: user part + history parts + the tower's biases == the score, exactly."""
    from mmrec.recsys.model import load_model
    from mmrec.recsys.scoring import History, TwoTowerScorer

    model = load_model(models["twotower"][0])
    s = model.scorer
    assert isinstance(s, TwoTowerScorer)
    history = model.data.items[model.data.users == 3]
    query = s.user_vectors(np.array([3]), History.of([history]))[0]
    tower = s.tower_items
    raw = (s.users[3] + s.history(tower[history].mean(0))
           + s.recent_term(tower[history[-s.recent:]].mean(0)))
    for item in (0, 7, 21):
        parts = s.explain(3, history, item)
        bias = (s.history.bias + s.recent_term.bias) @ tower[item] / np.linalg.norm(raw)
        total = parts.user + parts.history.sum() + bias
        assert total == pytest.approx(float(query @ s.items[item]), abs=1e-5)


def test_one_scorer_class_per_model_round_trips(models):
    """Each model loads back as its own class (the registry), with identical tensors."""
    from mmrec.enums import ModelKind
    from mmrec.recsys.model import load_model
    from mmrec.recsys.scoring import SCORERS

    assert set(SCORERS) == set(ModelKind)
    for name, (path, _) in models.items():
        scorer = load_model(path).scorer
        assert type(scorer) is SCORERS[ModelKind(name)] and scorer.kind is ModelKind(name)
        again = type(scorer).from_tensors(scorer.tensors(), scorer.metadata())
        for key, value in scorer.tensors().items():
            np.testing.assert_array_equal(again.tensors()[key], value)


def test_trains_on_a_real_aligner(world, tmp_path):
    """The same path through `mmrec align` itself (zero-shot heads: fused = text here)."""
    ok(invoke("align", world.store, "--out", tmp_path / "aligner", "--steps", "0"))
    ok(invoke("train", "--aligner", tmp_path / "aligner", "--interactions", world.inter,
              "--out", tmp_path / "m", "--model", "twotower", *FAST))
    result = json.loads(ok(invoke("evaluate", tmp_path / "m", "--json")).stdout)
    assert result["users"] == N_USERS
    hits = json.loads(ok(invoke("recommend", tmp_path / "m", "--user", "u2", "-k", "3",
                                "--json")).stdout)["results"]
    assert len(hits) == 3


def test_no_validation_part_reports_null_not_nan(world, tmp_path):
    lines = ["user,item,timestamp"] + [f"u{u},i{(u + t) % N_ITEMS},{t}" for u in range(6) for t in range(2)]
    inter = tmp_path / "two-each.csv"
    inter.write_text("\n".join(lines) + "\n")
    result = invoke("train", "--store", world.store, "--interactions", inter, "--out",
                    tmp_path / "m", "--model", "bpr", "--epochs", "2", "--json")
    report = json.loads(ok(result).stdout)  # strict JSON: NaN would not parse in other tools
    assert "NaN" not in result.stdout
    assert [c["ndcg@20"] for c in report["curve"]] == [None, None]


def test_evaluate_needs_only_the_model_when_the_store_has_moved(world, tmp_path):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(world.store, store)
    out = tmp_path / "pop"
    ok(invoke("train", "--store", store, "--interactions", world.inter, "--out", out,
              "--model", "pop", "--json"))
    before = json.loads(ok(invoke("evaluate", out, "--json")).stdout)
    shutil.rmtree(store)
    after = json.loads(ok(invoke("evaluate", out, "--json")).stdout)
    assert after == before
