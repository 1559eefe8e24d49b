"""Model directories answer for themselves: moved, without their store or aligner;
popularity from interactions alone; --store beside --aligner."""
from __future__ import annotations

import json
import shutil

import pytest
from test_recsys_cli import FAST, N_ITEMS, N_USERS, invoke, ok, one_line_error, world  # noqa: F401

from conftest import FAKE, make_catalog


def _recommend(path, *args):
    return json.loads(ok(invoke("recommend", path, *args, "--json")).stdout)["results"]


@pytest.mark.parametrize("source", ["store", "aligner"])
def test_a_moved_model_answers_without_its_store(world, tmp_path, source):  # noqa: F811
    store = tmp_path / "store"
    shutil.copytree(world.store, store)
    content = ["--store", store]
    if source == "aligner":
        ok(invoke("align", store, "--out", tmp_path / "aligner", "--steps", "0"))
        content = ["--aligner", tmp_path / "aligner"]
    ok(invoke("train", *content, "--interactions", world.inter, "--out", tmp_path / "m", *FAST))
    before = json.loads(ok(invoke("evaluate", tmp_path / "m", "--json")).stdout)
    explained = _recommend(tmp_path / "m", "--user", "u3", "-k", "3", "--explain")
    shutil.move(tmp_path / "m", tmp_path / "elsewhere")
    shutil.move(store, tmp_path / "moved-store")
    shutil.rmtree(tmp_path / "aligner", ignore_errors=True)
    moved = tmp_path / "elsewhere"
    assert json.loads(ok(invoke("evaluate", moved, "--json")).stdout) == before
    hits = _recommend(moved, "--user", "u3", "-k", "3", "--explain")
    assert [h["id"] for h in hits] == [h["id"] for h in explained]
    assert all(h["title"].startswith("Film ") and h["metadata"]["genre"] for h in hits)
    why = hits[0]["explanation"]
    assert why["history"] == explained[0]["explanation"]["history"] and "user" in why
    if source == "store":  # the modality split needs the content, and says so
        assert "modalities" not in why and "--store" in why["note"]
        again = _recommend(moved, "--user", "u3", "-k", "3", "--explain", "--store",
                           tmp_path / "moved-store")[0]["explanation"]
        assert again["modalities"] == explained[0]["explanation"]["modalities"]
        assert "note" not in again
    else:  # fused vectors: there never was a modality split to give
        assert "modalities" not in why and "note" not in why
    assert len(_recommend(moved, "--history", "i1,i5", "-k", "4")) == 4
    assert (moved / "store.manifest.json").is_file()


def test_recommend_refuses_a_store_from_other_encoders(world, tmp_path):  # noqa: F811
    ok(invoke("train", "--store", world.store, "--interactions", world.inter, "--out",
              tmp_path / "m", "--model", "itemknn"))
    catalog = make_catalog(tmp_path / "cat", [{"id": f"i{i}", "title": f"F{i}"} for i in range(5)])
    ok(invoke("encode", catalog, "--out", tmp_path / "other", "--text-encoder", f"local:{FAKE}:NaNText"))
    one_line_error(invoke("recommend", tmp_path / "m", "--history", "i1", "--explain", "--store",
                          tmp_path / "other"), "was encoded with", "NaNText")


def test_pop_trains_on_interactions_alone(world, tmp_path):  # noqa: F811
    report = json.loads(ok(invoke("train", "--interactions", world.inter, "--out", tmp_path / "m",
                                  "--model", "pop", "--json")).stdout)
    assert report["items"] == N_ITEMS + 1  # every item interacted with, "not-an-item" too
    assert report["read"]["unknown_items"] == 0 and report["users"] == N_USERS
    hits = _recommend(tmp_path / "m", "--user", "u3", "-k", "3", "--explain")
    counts = [h["explanation"]["popularity"] for h in hits]
    assert len(hits) == 3 and counts == sorted(counts, reverse=True) and counts[0] > 1
    assert json.loads(ok(invoke("evaluate", tmp_path / "m", "--json")).stdout)["users"] == N_USERS
    one_line_error(invoke("recommend", tmp_path / "m", "--user", "u3", "--store", world.store),
                   "trained on interactions alone")


@pytest.mark.parametrize("model", ["twotower", "bpr", "itemknn"])
def test_other_models_need_content(world, tmp_path, model):  # noqa: F811
    one_line_error(invoke("train", "--interactions", world.inter, "--out", tmp_path / "m",
                          "--model", model), f"--model {model} needs", "--store STORE or --aligner")


def test_store_beside_aligner_is_where_the_aligners_store_now_lives(world, tmp_path):  # noqa: F811
    store = tmp_path / "store"
    shutil.copytree(world.store, store)
    ok(invoke("align", store, "--out", tmp_path / "aligner", "--steps", "0"))
    shutil.move(store, tmp_path / "moved")
    args = ["--aligner", tmp_path / "aligner", "--interactions", world.inter, "--model", "itemknn"]
    one_line_error(invoke("train", *args, "--out", tmp_path / "a"), "which is not there")
    ok(invoke("train", *args, "--store", tmp_path / "moved", "--out", tmp_path / "b"))
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["store"]["path"] == str((tmp_path / "moved").resolve())
    catalog = make_catalog(tmp_path / "cat", [{"id": f"i{i}", "title": f"F{i}"} for i in range(5)])
    ok(invoke("encode", catalog, "--out", tmp_path / "other", "--text-encoder", f"local:{FAKE}:NaNText"))
    one_line_error(invoke("train", *args, "--store", tmp_path / "other", "--out", tmp_path / "c"),
                   "was encoded with")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
