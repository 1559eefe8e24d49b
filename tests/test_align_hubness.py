"""Pair memory and hubness correction: what they compute, and that every path uses them."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FAKE_OPTIONS, make_catalog, write_png
from mmrec.alignment.hubness import hub_scores
from mmrec.alignment.memory import PairMemory, weights_file
from mmrec.alignment.retrieval import pair_ranks
from mmrec.cli.main import app
from mmrec.index import VectorIndex
from mmrec.vectors import unit_rows

runner = CliRunner()


def _unit(rng, n, d=16):
    return unit_rows(rng.normal(size=(n, d)))


def test_the_correction_lowers_a_planted_hub():
    """Queries share a skew c; a gallery item at c tops many rankings; the correction drops it."""
    rng = np.random.default_rng(0)
    c = _unit(rng, 1)
    answers = _unit(rng, 40)
    queries = unit_rows(answers + 0.8 * rng.normal(size=(40, 16)) + 0.8 * c)
    bank = unit_rows(_unit(rng, 200) + 0.8 * c)  # training queries: the same skew
    gallery = np.vstack([answers, c])
    r = hub_scores(gallery, bank, k=10)
    assert r[-1] == r.max() and r[-1] > np.median(r) + 0.2
    projected = {"text": (np.vstack([queries, queries[:1]]), np.array([True] * 40 + [False])),
                 "image": (gallery, np.ones(41, dtype=bool))}
    rows = np.arange(41)

    def hub_first(weight):
        return int(((queries @ gallery.T - weight * r).argmax(axis=1) == 40).sum())

    plain, _ = pair_ranks(projected, "text", "image", rows)
    zero, _ = pair_ranks(projected, "text", "image", rows, hubs={"image": {"text": -0.0 * r}})
    np.testing.assert_array_equal(plain, zero)  # weight 0: the old ranking, exactly
    assert hub_first(0.0) >= 5 and hub_first(1.0) == 0
    corrected, _ = pair_ranks(projected, "text", "image", rows, hubs={"image": {"text": -1.0 * r}})
    assert not np.array_equal(plain, corrected)
    other, _ = pair_ranks(projected, "text", "image", rows, hubs={"image": {"audio": -1.0 * r}})
    np.testing.assert_array_equal(plain, other)  # another query modality's term: not used


def test_hub_scores_leave_out_an_item_s_own_bank_rows():
    rng = np.random.default_rng(1)
    bank = _unit(rng, 30)
    gallery = bank[:5] * 1.0  # each gallery item's own query is in the bank
    with_own = hub_scores(gallery, bank, k=1)
    np.testing.assert_allclose(with_own, 1.0, atol=1e-6)
    own = np.arange(5)[:, None]
    without = hub_scores(gallery, bank, k=1, exclude=own)
    expected = np.sort(np.where(np.eye(30)[:5] > 0, -np.inf, gallery @ bank.T), axis=1)[:, -1]
    np.testing.assert_allclose(without, expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_an_index_with_bias_columns_ranks_by_cosine_plus_the_query_s_terms(tmp_path, kind):
    rng = np.random.default_rng(2)
    vectors, bias = _unit(rng, 80), rng.normal(scale=0.3, size=(80, 2)).astype(np.float32)
    ids = [f"i{i}" for i in range(80)]
    VectorIndex.build(ids, vectors, kind, bias=bias).save(tmp_path, "index-image")
    index = VectorIndex.load(tmp_path, "index-image")
    assert index.dim == 16 and index.bias_columns == 2
    queries = _unit(rng, 5)
    columns = np.array([[1, 0], [0, 1], [0.5, 0.5], [0, 0], [1, 0]], dtype=np.float32)
    expected = np.argsort(-(queries @ vectors.T + columns @ bias.T), axis=1)[:, :3]
    for found, want in zip(index.search(queries, 3, columns=columns), expected, strict=True):
        assert [i for i, _ in found] == [ids[j] for j in want]
    plain = np.argsort(-(queries @ vectors.T), axis=1)[:, :3]  # no columns given: no term
    for found, want in zip(index.search(queries, 3), plain, strict=True):
        assert [i for i, _ in found] == [ids[j] for j in want]
    assert VectorIndex.build(ids, vectors, "flat").bias_columns == 0


def test_the_memory_leaves_out_own_pairs_and_round_trips(tmp_path):
    rng = np.random.default_rng(3)
    keys, values = _unit(rng, 20, 8), _unit(rng, 20, 4)
    memory = PairMemory("image", keys, values, weight=0.5, temperature=0.01, k=1)
    np.testing.assert_allclose(memory.recall(keys[:3]), values[:3], atol=1e-5)  # itself, nearest
    other = memory.recall(keys[:3], exclude=np.arange(3))
    nearest = np.argsort(-(keys[:3] @ keys.T), axis=1)[:, 1]
    np.testing.assert_allclose(other, values[nearest], atol=1e-5)
    projected = _unit(rng, 3, 4)
    np.testing.assert_array_equal(memory.apply(projected, keys[:3], weight=0.0), projected)
    memory.save(tmp_path)
    loaded = PairMemory.load(tmp_path, "image")
    assert (loaded.weight, loaded.k, loaded.temperature) == (0.5, 1, 0.01)
    np.testing.assert_allclose(loaded.keys, keys, atol=1e-3)
    assert PairMemory.load(tmp_path, "audio") is None


@pytest.fixture
def store(tmp_path):
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(24):
        write_png(tmp_path / "img" / f"{i}.png", ((37 * i) % 256, 250 - 10 * i, (60 * i) % 256))
        rows.append({"id": f"i{i}", "title": f"thing {i % 6} number {i}", "image": f"img/{i}.png"})
    out = tmp_path / "store"
    result = runner.invoke(app, ["encode", str(make_catalog(tmp_path, rows)), "--out", str(out),
                                 *FAKE_OPTIONS])
    assert result.exit_code == 0, result.output
    return out


def _align(store, out, *extra):
    result = runner.invoke(app, ["align", str(store), "--out", str(out), "--steps", "4",
                                 "--batch-size", "8", "--val-split", "0.25", "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_given_weights_are_stored_and_used_by_search_and_evaluation(store, tmp_path):
    import mmrec
    from mmrec.alignment.aligner import Aligner
    from mmrec.query import Query

    report = _align(store, tmp_path / "a", "--memory-weight", "0.5", "--hub-weight", "1")
    assert report["memory_weights"] == {"image": 0.5}
    assert report["hub_weights"] == {"image->text": 1.0, "text->image": 1.0}
    a = Aligner.open(tmp_path / "a")
    assert (tmp_path / "a" / weights_file("image")).is_file()
    assert set(a.hubs) == {"text", "image"} and np.any(a.hubs["image"]["text"] < 0)
    assert a.info["memory"]["image"]["weight"] == 0.5
    # a query is projected with the memory, and the image index ranks by cosine + term
    text = "thing 2 number 8"
    handle = mmrec.open(tmp_path / "a")
    hits = handle.ask(Query(text=text, modality="image", k=24))
    vector = handle._vector(Query(text=text))
    images, mask = a.projected("image")
    scores = images @ vector + a.hubs["image"]["text"]
    want = [a.ids[i] for i in np.argsort(-scores, kind="stable") if mask[i]]
    assert [h.id for h in hits] == want[:len(hits)]
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores[mask])[::-1][:len(hits)],
                               atol=1e-5)
    # an item's own image, projected as a query is, equals its stored vector (held-out item)
    held = a.split()["val"][0]
    row = a.row(held)
    from mmrec.store import Store

    s = Store.open(store)
    unit, norms = s.matrix("image", mmap=False)[0][[s.row(held)]], s.norms("image")[[s.row(held)]]
    np.testing.assert_allclose(a.projector().project("image", unit, norms)[0], images[row], atol=1e-5)
    # evaluation counts the correction: without it the ranks differ
    found = mmrec.evaluate(tmp_path / "a")
    assert found["text->image"]["queries"] > 0


def test_weight_zero_reproduces_the_plain_aligner(store, tmp_path):
    from mmrec.alignment.aligner import Aligner

    report = _align(store, tmp_path / "off", "--memory-weight", "0", "--hub-weight", "0")
    assert report["memory_weights"] == {} and report["hub_weights"] == {}
    a = Aligner.open(tmp_path / "off")
    assert not a.hubs and not list((tmp_path / "off").glob("memory-*"))
    assert a.index("image").bias_columns == 0
    on = _align(store, tmp_path / "on", "--memory-weight", "0.5", "--hub-weight", "0")
    assert on["memory_weights"] == {"image": 0.5}
    b = Aligner.open(tmp_path / "on")
    # the same heads (same seed): the text vectors agree, the images differ by the memory only
    np.testing.assert_array_equal(a.projected("text")[0], b.projected("text")[0])
    assert not np.allclose(a.projected("image")[0], b.projected("image")[0])


def test_chosen_weights_are_recorded_with_their_validation_scores(store, tmp_path):
    from mmrec.alignment.aligner import Aligner

    _align(store, tmp_path / "a")
    info = Aligner.open(tmp_path / "a").info
    assert set(info["memory"]["image"]["val_r10_by_weight"]) == {"0.0", "0.125", "0.25", "0.5", "0.75", "1.0"}
    assert set(info["hubness"]) == {"text->image", "image->text"}
    assert "0.0" in info["hubness"]["text->image"]["val_r10_by_weight"]


def test_bad_weights_fail_in_one_line(store, tmp_path):
    result = runner.invoke(app, ["align", str(store), "--out", str(tmp_path / "a"), "--hub-weight", "-1"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    from mmrec.alignment.config import AlignConfig
    from mmrec.errors import ConfigError

    with pytest.raises(ConfigError, match="--memory-weight must be in"):
        AlignConfig(memory_weight=9).validate()


def test_serve_ranks_with_the_memory_and_the_correction(store, tmp_path):
    """The service answers what the stored vectors plus the stored terms rank first."""
    from fastapi.testclient import TestClient

    from mmrec.alignment.aligner import Aligner
    from mmrec.handle import AlignerHandle
    from mmrec.query import Query
    from mmrec.serve.app import create_app
    from mmrec.serve.config import ServeConfig

    _align(store, tmp_path / "a", "--memory-weight", "1", "--hub-weight", "2")
    a = Aligner.open(tmp_path / "a")
    vector = AlignerHandle(tmp_path / "a")._vector(Query(text="thing 3"))
    images, mask = a.projected("image")
    scores = images @ vector + a.hubs["image"]["text"]
    want = [a.ids[i] for i in np.argsort(-scores, kind="stable") if mask[i]][:5]
    plain = [a.ids[i] for i in np.argsort(-(images @ vector), kind="stable") if mask[i]][:5]
    with TestClient(create_app(ServeConfig([tmp_path / "a"]))) as client:
        response = client.post("/search", json={"text": "thing 3", "modality": "image", "k": 5})
    assert response.status_code == 200, response.text
    got = [r["id"] for r in response.json()["results"]]
    assert got == want
    assert want != plain  # with weight 2 the term reorders the top 5: it is really applied



def test_a_memory_weight_is_judged_with_the_correction_it_will_get():
    """The memory's candidate weights are scored by their pairs' R@10 under the best
    correction for each pair: on a planted hub that is the corrected recall, above the
    uncorrected one; with the correction off it is the uncorrected one."""
    from mmrec.alignment.pipeline import _corrected_recall
    from mmrec.alignment.retrieval import mean_recall

    rng = np.random.default_rng(0)
    c = _unit(rng, 1)
    answers = _unit(rng, 40)
    queries = unit_rows(answers + 0.8 * rng.normal(size=(40, 16)) + 0.8 * c)
    bank = unit_rows(_unit(rng, 200) + 0.8 * c)
    projected = {"text": (np.vstack([queries, queries[:1]]), np.array([True] * 40 + [False])),
                 "image": (np.vstack([answers, c]), np.ones(41, dtype=bool))}
    pair, rows = [("text", "image")], np.arange(41)
    plain = mean_recall(projected, rows, k=10, pairs=pair)
    r = hub_scores(projected["image"][0], bank)
    best = max(mean_recall(projected, rows, k=10, pairs=pair, hubs={"image": {"text": -w * r}})
               for w in (0.0, 0.25, 0.5, 0.75, 1.0))
    banks = {"text": (np.arange(200), bank)}
    assert best > plain
    assert _corrected_recall(projected, banks, pair, None) == {"text->image": pytest.approx(best)}
    assert _corrected_recall(projected, banks, pair, 0.0) == {"text->image": pytest.approx(plain)}


def test_a_memory_weight_that_lowers_any_pair_is_no_candidate():
    from mmrec.alignment.pipeline import best_memory_weight

    by_pair = {0.0: {"text->image": 0.70, "audio->image": 0.50},
               0.5: {"text->image": 0.90, "audio->image": 0.45},  # best mean, audio worse
               0.25: {"text->image": 0.75, "audio->image": 0.50},
               1.0: {"text->image": 0.75, "audio->image": 0.50}}
    scores = {w: sum(p.values()) / 2 for w, p in by_pair.items()}
    assert best_memory_weight(scores, by_pair) == 0.25  # ties to the smaller
    del by_pair[0.25], by_pair[1.0], scores[0.25], scores[1.0]
    assert best_memory_weight(scores, by_pair) == 0.0
