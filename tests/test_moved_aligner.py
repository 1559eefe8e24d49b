"""An aligner answers for itself: moved elsewhere with its store deleted, it still serves."""
from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from conftest import FAKE_OPTIONS, make_catalog, write_png
from mmrec.cli.main import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def moved(tmp_path):
    """An aligner whose store is gone, in a directory other than where align wrote it."""
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(12):
        write_png(tmp_path / "img" / f"{i}.png", (20 * i, 255 - 20 * i, (50 * i) % 256))
        rows.append({"id": f"item{i}", "title": f"thing number {i}", "image": f"img/{i}.png"})
    store, first = tmp_path / "store", tmp_path / "first" / "aligner"
    assert _run("encode", make_catalog(tmp_path, rows), "--out", store, *FAKE_OPTIONS).exit_code == 0
    result = _run("align", store, "--out", first, "--steps", "5", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    moved = tmp_path / "elsewhere" / "aligner"
    moved.parent.mkdir()
    shutil.move(first, moved)
    shutil.rmtree(store)
    shutil.rmtree(first.parent)
    return moved


def test_a_moved_aligner_without_its_store_still_searches_and_evaluates(moved):
    by_item = _run("recommend", moved, "--item", "item3", "-k", "3", "--json")
    assert by_item.exit_code == 0, by_item.output
    hits = json.loads(by_item.stdout)["results"]
    assert len(hits) == 3 and "item3" not in [h["id"] for h in hits]
    by_text = _run("recommend", moved, "--text", "thing number 5", "-k", "1", "--json")
    assert by_text.exit_code == 0, by_text.output
    assert json.loads(by_text.stdout)["results"][0]["id"] == "item5"
    metrics = _run("evaluate", "retrieval", moved, "--json")
    assert metrics.exit_code == 0, metrics.output
    assert {"text->image", "image->text"} <= set(json.loads(metrics.stdout))


def test_what_needs_the_store_names_the_reference_and_suggests_store(moved, tmp_path):
    inter = tmp_path / "inter.csv"
    inter.write_text("user,item\nu1,item1\nu1,item2\nu2,item3\n")
    result = _run("train", "--aligner", moved, "--interactions", inter, "--out", tmp_path / "m",
                  "--model", "pop")
    assert result.exit_code == 1
    assert f"aligner {moved} refers to the store" in result.output
    assert "--store" in result.output and "mmrec encode" not in result.output


def test_store_aligner_and_model_directories_follow_the_umask(tmp_path):
    import os
    import stat

    (tmp_path / "img").mkdir()
    rows = [{"id": f"i{i}", "title": f"thing {i}", "image": f"img/{i}.png"} for i in range(8)]
    for i in range(8):
        write_png(tmp_path / "img" / f"{i}.png", (30 * i, 200 - 20 * i, 90))
    inter = tmp_path / "inter.csv"
    inter.write_text("user,item\n" + "".join(f"u{i % 3},i{i}\n" for i in range(8)))
    old = os.umask(0o022)
    try:
        for args in (["encode", make_catalog(tmp_path, rows), "--out", tmp_path / "s", *FAKE_OPTIONS],
                     ["align", tmp_path / "s", "--out", tmp_path / "a", "--steps", "2",
                      "--batch-size", "4"],
                     ["train", "--aligner", tmp_path / "a", "--store", tmp_path / "s",
                      "--interactions", inter, "--out", tmp_path / "m", "--model", "pop",
                      "--split", "random"]):
            result = _run(*args)
            assert result.exit_code == 0, result.output
    finally:
        os.umask(old)
    for name in ("s", "a", "m"):
        for path in [tmp_path / name, *(tmp_path / name).rglob("*")]:
            want = 0o755 if path.is_dir() else 0o644
            assert stat.S_IMODE(path.stat().st_mode) == want, path
