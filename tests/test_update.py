"""`mmrec update`, `train --no-test` and `evaluate --test`, on planted genre data."""
from __future__ import annotations

import json
import types

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FAKE_OPTIONS, make_catalog, one_line_error
from mmrec.cli.main import app

runner = CliRunner()
N_ITEMS, N_NEW_ITEMS, N_USERS, GENRES = 40, 4, 24, 4
FAST = ["--batch-size", "64", "--warmup", "5"]
LEARN = ["--epochs", "40", "--lr", "0.01", *FAST]  # enough for twotower to learn the genres


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def genre(item: str) -> int:
    return int(item.lstrip("i")) % GENRES


def write(path, rows, header="user,item,rating,timestamp"):
    path.write_text("\n".join([header, *(",".join(map(str, r)) for r in rows)]) + "\n")
    return path


def base_rows(rng):
    """Each user takes 8 items of one genre (u % 4), one a step in time."""
    rows = []
    for u in range(N_USERS):
        pool = [i for i in range(N_ITEMS) if i % GENRES == u % GENRES]
        rows += [(f"u{u}", f"i{i}", 4, 1000 + 7 * t + u)
                 for t, i in enumerate(rng.choice(pool, size=8, replace=False))]
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store of 40 items, a twotower trained with --no-test, then 4 new items encoded."""
    root = tmp_path_factory.mktemp("update")
    rows = [{"id": f"i{i}", "title": f"Film {i}", "genre": f"g{i % GENRES}"}
            for i in range(N_ITEMS + N_NEW_ITEMS)]
    ok(invoke("encode", make_catalog(root / "cat", rows[:N_ITEMS]), "--out", root / "store",
              *FAKE_OPTIONS))
    base = write(root / "base.csv", base_rows(np.random.default_rng(0)))
    report = json.loads(ok(invoke("train", "--store", root / "store", "--interactions", base,
                                  "--out", root / "model", "--no-test", "--json", *LEARN)).stdout)
    # the catalog grows after training: `mmrec encode` adds the new items to the store
    ok(invoke("encode", make_catalog(root / "cat2", rows), "--out", root / "store", *FAKE_OPTIONS))
    return types.SimpleNamespace(root=root, store=root / "store", base=base, model=root / "model",
                                 report=report)


def top(model, *query, k=5):
    hits = json.loads(ok(invoke("recommend", model, *query, "-k", k, "--json")).stdout)["results"]
    return [h["id"] for h in hits]


def test_no_test_leaves_no_test_part(world):
    from mmrec.enums import SplitKind
    from mmrec.recsys.splits import TEST, VALID, make_split

    assert world.report["interactions"] == {"train": 7 * N_USERS, "valid": N_USERS, "test": 0}
    users, items = np.repeat(np.arange(30), 10), np.arange(300) % 50
    times = np.tile(np.arange(10.0), 30)
    for kind in SplitKind:
        split = make_split(kind, users, items, times, seed=1, test=False)
        assert not (split.part == TEST).any() and (split.part == VALID).any(), kind
    cold = make_split(SplitKind.COLD_ITEM, users, items, times, seed=1, test=False)
    full = make_split(SplitKind.COLD_ITEM, users, items, times, seed=1)
    assert np.array_equal(cold.valid_items, full.valid_items)  # the same validation items
    one_line_error(invoke("evaluate", world.model), "no user has test interactions")


def _update(world, tmp_path, rows, *extra):
    new = write(tmp_path / "new.csv", rows)
    out = tmp_path / "updated"
    report = json.loads(ok(invoke("update", world.model, "--interactions", new, "--out", out,
                                  "--json", *extra)).stdout)
    return out, report


def test_update_adds_users_items_and_interactions(world, tmp_path):
    rows = [("u0", "i41", 5, 5000), ("newbie", "i2", 5, 5000), ("newbie", "i6", 5, 5001),
            ("newbie", "i40", 5, 5002), ("u1", "i1", 5, 5003),  # u1 may hold i1 already
            ("u2", "not-an-item", 5, 5004)]
    out, report = _update(world, tmp_path, rows)
    held = 1 if ("u1", "i1") in {(u, i) for u, i, *_ in base_rows(np.random.default_rng(0))} else 0
    assert report["new_users"] == 1 and report["new_items"] == N_NEW_ITEMS
    assert report["interactions"] == 5 - held and report["already_seen"] == held
    assert report["read"]["unknown_items"] == 1 and report["users_updated"] == 2 - held
    items = json.loads((out / "items.json").read_text())
    assert items[N_ITEMS:] == [f"i{i}" for i in range(N_ITEMS, N_ITEMS + N_NEW_ITEMS)]
    assert json.loads((out / "users.json").read_text())[-1] == "newbie"
    meta = {json.loads(line)["id"]: json.loads(line) for line in (out / "items.jsonl").open()}
    assert meta["i42"]["title"] == "Film 42"  # new items carry the store's metadata
    data = np.load(out / "interactions.npz")
    assert len(data["part"]) == 8 * N_USERS + report["interactions"] and data["part"].max() == 1
    # a known user's new interactions are served and excluded; a new user is known now
    assert "i41" not in top(out, "--user", "u0", k=N_ITEMS + N_NEW_ITEMS)
    assert not {"i2", "i6", "i40"} & set(top(out, "--user", "newbie", k=10))
    assert top(out, "--item", "i43")  # a new item has a vector and is in the index
    assert json.loads((world.model / "items.json").read_text()) == [f"i{i}" for i in range(N_ITEMS)]


def test_new_history_shifts_a_users_genre(world, tmp_path):
    """u0 took 8 of the 10 genre-0 items; after 6 new genre-2 interactions its top 5 holds
    more of the 4 genre-2 items left than before; a new user is served by its history."""
    before = top(world.model, "--user", "u0")
    seen = {i for u, i, *_ in base_rows(np.random.default_rng(0)) if u == "u0"}
    assert sum(genre(i) == 0 for i in before) == 2  # the two genre-0 items u0 lacks
    rows = [("u0", f"i{i}", 5, 9000 + t) for t, i in enumerate(range(2, 24, GENRES))]
    rows += [("fresh", f"i{i}", 5, 9000 + t) for t, i in enumerate(range(3, 24, GENRES))]
    out, report = _update(world, tmp_path, rows)
    after = top(out, "--user", "u0")
    assert sum(genre(i) == 2 for i in after) >= 3 > sum(genre(i) == 2 for i in before)
    assert not seen & set(after)
    assert sum(genre(i) == 3 for i in top(out, "--user", "fresh")) >= 3


def test_in_place_update_is_atomic(world, tmp_path, monkeypatch):
    import shutil

    from mmrec.index import VectorIndex

    model = tmp_path / "model"
    shutil.copytree(world.model, model)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    new = write(tmp_path / "new.csv", [("u0", "i41", 5, 5000)])

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(VectorIndex, "build", broken)
    result = invoke("update", model, "--interactions", new)
    assert result.exit_code != 0
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left
    monkeypatch.undo()
    ok(invoke("update", model, "--interactions", new))  # in place, no --out
    assert "i41" in json.loads((model / "items.json").read_text())
    assert json.loads((model / "config.json").read_text())["updates"][0]["interactions"] == 1


def test_evaluate_test_file_excludes_seen_and_counts_unknowns(world, tmp_path):
    held = next(i for u, i, *_ in base_rows(np.random.default_rng(0)) if u == "u1")
    ranked = top(world.model, "--user", "u1", k=N_ITEMS)
    target = ranked[3]  # the model's 4th pick for u1, among what u1 never had
    test = write(tmp_path / "test.csv", [("u1", held, 5, 9000), ("u1", target, 5, 9001),
                                         ("stranger", "i3", 5, 9000), ("u2", "nope", 5, 9000)])
    result = json.loads(ok(invoke("evaluate", world.model, "--test", test, "--json")).stdout)
    assert result["users"] == 1 and result["unknown_users"] == 1
    assert result["unknown_items"] == 1 and result["already_seen"] == 1
    # the held item is excluded from the ranking, so target is 4th: ndcg = 1/log2(5)
    assert result["ndcg@20"] == pytest.approx(1 / np.log2(5))
    assert result["recall@5"] == 1.0

    out, _ = _update(world, tmp_path, [("u1", target, 5, 8000)])
    # what the update added counts as seen too: u1 has nothing new left to evaluate
    one_line_error(invoke("evaluate", out, "--test", test), "no interaction of a user the model knows")
    one_line_error(invoke("evaluate", out, "--test", tmp_path / "missing.csv"), "not found")


def test_update_errors_are_one_line(world, tmp_path):
    new = write(tmp_path / "new.csv", [("u0", "i41", 5, 5000)])
    one_line_error(invoke("update", world.store, "--interactions", new), "not a model")
    one_line_error(invoke("update", tmp_path / "nothing", "--interactions", new), "not found")
    unknown = write(tmp_path / "unknown.csv", [("u0", "zzz", 5, 1)])
    one_line_error(invoke("update", world.model, "--interactions", unknown, "--out", tmp_path / "o"),
                   "none of the 1 interactions")
    held = write(tmp_path / "held.csv", base_rows(np.random.default_rng(0))[:3])
    one_line_error(invoke("update", world.model, "--interactions", held, "--out", tmp_path / "o"),
                   "nothing new")
    one_line_error(invoke("update", world.model, "--interactions", new, "--out", world.store),
                   "not an mmrec model")


def test_bpr_skips_new_items_and_folds_in_new_users(world, tmp_path):
    bpr = tmp_path / "bpr"
    ok(invoke("train", "--store", world.store, "--interactions", world.base, "--out", bpr,
              "--model", "bpr", "--epochs", "2", *FAST))
    # trained on all 44 items now; a further item is encoded after it
    rows = [{"id": f"i{i}", "title": f"Film {i}"} for i in range(N_ITEMS + N_NEW_ITEMS + 1)]
    store = tmp_path / "store"
    import shutil

    shutil.copytree(world.store, store)
    ok(invoke("encode", make_catalog(tmp_path / "cat", rows), "--out", store, *FAKE_OPTIONS))
    new = write(tmp_path / "new.csv", [("fresh", "i1", 5, 1), ("fresh", "i5", 5, 2),
                                       ("fresh", "i44", 5, 3)])
    report = json.loads(ok(invoke("update", bpr, "--interactions", new, "--store", store,
                                  "--out", tmp_path / "b2", "--json")).stdout)
    assert report["items_without_vectors"] == 1 and report["new_items"] == 0
    assert report["read"]["unknown_items"] == 1 and report["new_users"] == 1
    from mmrec.recsys.model import load_model

    updated = load_model(tmp_path / "b2")
    row = updated.user_row("fresh")
    expected = updated.scorer.items[[updated.item_row("i1"), updated.item_row("i5")]].mean(axis=0)
    assert np.allclose(updated.scorer.users[row], expected)
    one_line_error(invoke("update", bpr, "--interactions", new, "--steps", "3"), "twotower")


def test_pop_without_a_store_takes_new_items(world, tmp_path):
    pop = tmp_path / "pop"
    ok(invoke("train", "--interactions", world.base, "--out", pop, "--model", "pop"))
    new = write(tmp_path / "new.csv", [(f"u{u}", "brand-new", 5, 9000) for u in range(10)])
    ok(invoke("update", pop, "--interactions", new))
    assert top(pop, "--user", "u10", k=1) == ["brand-new"]  # 10 takers: the most popular now


def test_feedback_log_appends_and_applies_in_batches(world, tmp_path):
    import shutil

    from mmrec.errors import InputError
    from mmrec.recsys.update import FeedbackLog

    model = tmp_path / "model"
    shutil.copytree(world.model, model)
    now = [1000.0]
    log = FeedbackLog(model, batch=3, seconds=60, clock=lambda: now[0])
    with pytest.raises(InputError, match="item id"):
        log.append([{"user": "a", "item": "i1"}, {"user": "a"}])  # all or nothing
    with pytest.raises(InputError, match="unknown feedback field"):
        log.append({"user": "a", "item": "i1", "colour": "red"})
    assert log.pending() == 0 and not log.due()
    assert log.append([{"user": "fan", "item": "i2", "rating": 5}, {"user": "fan", "item": "i6"}]) == 2
    assert log.pending() == 2 and not log.due() and log.apply() is None
    now[0] += 61  # the oldest event has waited long enough
    assert log.due()
    report = log.apply()
    assert report.interactions == 2 and report.new_users == 1
    assert "fan" in json.loads((model / "users.json").read_text()) and log.pending() == 0
    log.append({"user": "fan", "item": "zzz", "timestamp": "2026-01-01T00:00:00Z"})
    assert log.apply(force=True) is None and log.pending() == 0  # nothing usable: passed over
    state = json.loads((tmp_path / "model.feedback" / "applied.json").read_text())
    assert state["applied"] == 2 and state["skipped"] == 1
    lines = (tmp_path / "model.feedback" / "events.jsonl").read_text().splitlines()
    assert [json.loads(x)["item"] for x in lines] == ["i2", "i6", "zzz"]


def test_steps_fine_tune_the_towers_on_the_new_interactions(world, tmp_path):
    from mmrec.recsys.model import load_model

    rows = [("u0", f"i{i}", 5, 9000 + t) for t, i in enumerate(range(2, 24, GENRES))]
    plain, _ = _update(world, tmp_path, rows)
    tuned = tmp_path / "tuned"
    new = tmp_path / "new.csv"
    report = json.loads(ok(invoke("update", world.model, "--interactions", new, "--out", tuned,
                                  "--steps", "20", "--device", "cpu", "--json")).stdout)
    assert report["steps"] == 20
    a, b = load_model(plain), load_model(tuned)
    assert a.data.item_ids == b.data.item_ids and a.data.user_ids == b.data.user_ids
    assert not np.allclose(a.scorer.items, b.scorer.items)  # the towers moved
    # trained towards u0's new items: their scores for u0 rise
    new_items = [b.item_row(f"i{i}") for i in range(2, 24, GENRES)]
    u0 = np.array([b.user_row("u0")])
    score = [m.scorer.user_vectors(u0, m.data.history(0).take(u0)) @ m.scorer.items[new_items].T
             for m in (a, b)]
    assert score[1].mean() > score[0].mean()


def test_update_without_the_store_takes_the_models_own_items(world, tmp_path):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(world.store, store)
    knn = tmp_path / "knn"
    ok(invoke("train", "--store", store, "--interactions", world.base, "--out", knn,
              "--model", "itemknn"))
    shutil.rmtree(store)  # gone: new items cannot come, the model's own still take behaviour
    new = write(tmp_path / "new.csv", [("fresh", "i1", 5, 1), ("fresh", "i99", 5, 2)])
    report = json.loads(ok(invoke("update", knn, "--interactions", new, "--json")).stdout)
    assert report["interactions"] == 1 and report["read"]["unknown_items"] == 1
    assert "i1" not in top(knn, "--user", "fresh", k=10)


def test_update_reports_what_reading_skipped_like_train(world, tmp_path):
    """The same read summary as `mmrec train`: unknown items, duplicates, bad rows."""
    new = write(tmp_path / "new.csv", [("u1", "i2", 5, 90_000), ("u1", "i2", 5, 90_000),
                                       ("u1", "nowhere", 5, 90_001), ("u1", "i3", "x", 90_002)])
    out = ok(invoke("update", world.model, "--interactions", new, "--out", tmp_path / "m")).stdout
    assert "skipped 1 interactions on items the model's content does not have (e.g. nowhere)" in out
    assert "skipped 1 duplicates" in out
    assert "skipped row 5:" in out
