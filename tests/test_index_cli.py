"""`--index` on `mmrec align` and `mmrec train`: the index written is the one recommend uses."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FAKE_OPTIONS, make_catalog
from mmrec.cli.main import app

runner = CliRunner()
N_ITEMS, N_USERS = 40, 24


def ok(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("indexcli")
    rows = [{"id": f"i{i}", "title": f"thing number {i}"} for i in range(N_ITEMS)]
    ok("encode", make_catalog(root / "cat", rows), "--out", root / "store", *FAKE_OPTIONS)
    rng = np.random.default_rng(0)
    lines = ["user,item,timestamp"]
    for u in range(N_USERS):
        for t, i in enumerate(rng.choice([i for i in range(N_ITEMS) if i % 4 == u % 4], 8, replace=False)):
            lines.append(f"u{u},i{i},{1000 + t}")
    (root / "inter.csv").write_text("\n".join(lines) + "\n")
    return root


def kind(directory, name="index"):
    return json.loads((directory / f"{name}.ids.json").read_text())["kind"]


def results(*args):
    return [(h["id"], round(h["score"], 4)) for h in json.loads(ok(*args, "--json").stdout)["results"]]


def test_align_with_hnsw_searches_like_flat(store):
    for index in ("flat", "hnsw"):
        ok("align", store / "store", "--out", store / f"al-{index}", "--steps", "0", "--index", index)
        assert kind(store / f"al-{index}") == index
        assert kind(store / f"al-{index}", "index-text") == index
    hnsw, flat = (results("recommend", store / f"al-{i}", "--text", "thing number 7", "-k", "5")
                  for i in ("hnsw", "flat"))
    assert hnsw == flat and hnsw[0][0] == "i7"


def test_train_with_hnsw_recommends_like_flat(store):
    for index in ("flat", "hnsw"):
        ok("train", "--store", store / "store", "--interactions", store / "inter.csv", "--out",
           store / f"m-{index}", "--model", "bpr", "--epochs", "2", "--index", index)
        assert kind(store / f"m-{index}") == index
        config = json.loads((store / f"m-{index}" / "config.json").read_text())
        assert config["config"]["index"] == index
    hnsw, flat = (results("recommend", store / f"m-{i}", "--user", "u3", "-k", "5")
                  for i in ("hnsw", "flat"))
    assert hnsw == flat and len(hnsw) == 5


def test_unknown_index_is_one_line(store):
    result = runner.invoke(app, ["align", str(store / "store"), "--out", str(store / "x"),
                                 "--index", "annoy"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "annoy" in result.output
