"""`mmrec encode --engine ray` on a local 2-CPU Ray cluster equals a plain encode."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FAKE, FAKE_OPTIONS, make_catalog, one_line_error, write_png
from mmrec.cli.main import app
from mmrec.store import Store

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'mmrec[ray]'")
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local cluster for the module; encode joins it and leaves it running."""
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def catalog(media, rows):
    for i in range(40):  # enough rows for several chunks per worker
        write_png(media / "img" / f"p{i}.png", (6 * i, 100, 255 - 6 * i))
    (media / "img" / "trunc.png").write_bytes((media / "img" / "red.png").read_bytes()[:60])
    (media / "snd" / "noise.wav").write_bytes(b"RIFF\x00\x00garbage-not-audio" * 10)
    extra = [{"id": f"p{i}", "title": f"picture {i}", "image": f"img/p{i}.png"} for i in range(40)]
    bad = [{"id": "m1", "title": "missing image", "image": "img/nope.png"},
           {"id": "t2", "title": "truncated", "image": "img/trunc.png"},
           {"id": "a2", "title": "bad audio", "audio": "snd/noise.wav"},
           {"id": "e1", "title": "   "}, {"title": "no id"}]
    return make_catalog(media, rows + extra + bad)


def encode(catalog, out, *extra):
    result = runner.invoke(app, ["encode", str(catalog), "--out", str(out), *FAKE_OPTIONS,
                                 "--device", "cpu", "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_ray_store_equals_a_local_store_and_reruns_incrementally(catalog, tmp_path):
    local = encode(catalog, tmp_path / "local")
    remote = encode(catalog, tmp_path / "ray", "--engine", "ray", "--workers", "2")
    assert remote["device"] == "ray 2x cpu"
    assert remote["vectors"] == local["vectors"] and remote["encoded"] == local["encoded"]
    key = lambda p: (p["row"], p["modality"], p["reason"])  # noqa: E731
    assert sorted(map(key, remote["skipped"])) == sorted(map(key, local["skipped"]))
    assert len(local["skipped"]) == 5
    a, b = Store.open(tmp_path / "local"), Store.open(tmp_path / "ray")
    assert a.ids == b.ids
    for modality in a.modalities:
        (ma, mask_a), (mb, mask_b) = a.matrix(modality), b.matrix(modality)
        assert (mask_a == mask_b).all()
        np.testing.assert_allclose(ma, mb, atol=1e-4)
        np.testing.assert_allclose(a.norms(modality), b.norms(modality), rtol=1e-4)
    again = encode(catalog, tmp_path / "ray", "--engine", "ray", "--workers", "2")
    assert again["encoded"] == {"text": 0, "image": 0, "audio": 0}
    assert len(again["skipped"]) == 5  # bad rows reported again, not retried
    assert again["device"] is None  # nothing to encode: no actor started


def test_more_workers_than_the_cluster_holds(catalog, tmp_path):
    result = runner.invoke(app, ["encode", str(catalog), "--out", str(tmp_path / "s"),
                                 *FAKE_OPTIONS, "--engine", "ray", "--workers", "3"])
    assert "the Ray cluster has 2 CPUs" in one_line_error(result)


def test_a_worker_that_cannot_load_its_encoder(catalog, tmp_path):
    result = runner.invoke(app, ["encode", str(catalog), "--out", str(tmp_path / "s"),
                                 *FAKE_OPTIONS, "--text-encoder", f"local:{FAKE}:NoWeightsText",
                                 "--engine", "ray", "--workers", "1"])
    assert "no weights for NoWeightsText" in one_line_error(result)


def test_ray_options_need_the_ray_engine(catalog, tmp_path):
    result = runner.invoke(app, ["encode", str(catalog), "--out", str(tmp_path / "s"),
                                 *FAKE_OPTIONS, "--workers", "2"])
    assert one_line_error(result) == "error: --workers and --ray-address need --engine ray"
