"""The offline default encoders end to end through the CLI: encode -> align -> recommend ->
evaluate, on a few real clip-art pictures shipped in assets/demo."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_catalog
from mmrec.cli.main import app

pytestmark = pytest.mark.slow  # encodes with the real offline default encoders
runner = CliRunner()
DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"
PICTURES = ["cat", "dog", "cow", "horse", "duck", "frog", "guitar", "piano", "bicycle", "boat",
            "car", "clock"]


def run_ok(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    (root / "images").mkdir()
    rows = []
    for name in PICTURES:
        shutil.copy(DEMO / "images" / f"{name}.png", root / "images" / f"{name}.png")
        rows.append({"id": name, "title": f"a {name}", "image": f"images/{name}.png"})
    out = root / "store"
    run_ok("encode", make_catalog(root, rows), "--out", out, "--modalities", "text,image")
    return out


def test_zero_shot_search_finds_pictures_by_text(store, tmp_path):
    out = tmp_path / "zero"
    report = json.loads(run_ok("align", store, "--out", out, "--steps", "0", "--json").stdout)
    assert report["init"] == "shipped" and report["steps"] == 0
    assert report["modalities"] == ["text", "image"] and report["dim"] == 384
    assert report["bridge_weight_from"] == "shipped"  # zero-shot: no peeking at the pairs
    hits = json.loads(run_ok("recommend", out, "--text", "a cat", "--modality", "image", "-k", "3",
                             "--json").stdout)["results"]
    assert "cat" in [h["id"] for h in hits] and {h["matched"] for h in hits} == {"image"}
    # an image query lands on its own picture, and the fused search on the item too
    hits = json.loads(run_ok("recommend", out, "--image", store.parent / "images" / "guitar.png",
                             "-k", "1", "--json").stdout)["results"]
    assert hits[0]["id"] == "guitar"
    metrics = json.loads(run_ok("evaluate", "retrieval", out, "--json").stdout)
    assert set(metrics) == {"text->image", "image->text"}
    everything = __import__("mmrec").evaluate(out, split="all")["text->image"]
    assert everything["gallery"] == len(PICTURES)
    assert everything["recall@5"] > 2 * everything["chance@5"]


def test_fitting_on_real_vectors_keeps_a_usable_aligner(store, tmp_path):
    out = tmp_path / "fitted"
    report = json.loads(run_ok("align", store, "--out", out, "--steps", "30", "--val-split", "0.25",
                               "--json").stdout)
    assert report["train_items"] == 9 and report["val_items"] == 3
    assert 0 <= report["bridge_weight"] <= 1 and report["bridge_weight_from"] == "validation"
    ids, fused = __import__("mmrec.alignment").alignment.fused_vectors(out)
    assert sorted(ids) == sorted(PICTURES)
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, rtol=1e-5)
    hits = json.loads(run_ok("recommend", out, "--item", "cow", "-k", "3", "--json").stdout)
    assert "cow" not in [h["id"] for h in hits["results"]]
