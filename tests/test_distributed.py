"""Data-parallel align and train: 2 CPU processes (gloo) against one process."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import dist_steps
import numpy as np
import pytest

from conftest import FAKE_OPTIONS, make_catalog, write_png, write_wav
from mmrec import distributed

TIMEOUT = 120  # seconds: a hung group fails the test instead of the whole run


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_step_equals_one_process_on_the_global_batch(tmp_path):
    import torch
    import torch.multiprocessing as mp

    assert not distributed.active()
    reference = dist_steps.both_steps(torch.device("cpu"))
    mp.spawn(dist_steps.rank_main, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = np.load(tmp_path / f"rank{rank}.npz")
        for name, (loss, grads) in reference.items():
            assert abs(float(got[f"{name}/loss"]) - loss) < 1e-5, (name, rank)
            assert grads and all(np.abs(g).sum() > 0 for k, g in grads.items()
                                 if "item_id" not in k), name  # real gradients, not zeros
            for key, grad in grads.items():
                np.testing.assert_allclose(got[f"{name}/{key}"], grad, atol=1e-5, rtol=1e-5,
                                           err_msg=f"{name} {key} rank {rank}")


def test_shards_cover_the_batch_in_order(monkeypatch):
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "3")
    cuts = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        cuts.append(distributed.shard(10))
    assert [(s.start, s.stop) for s in cuts] == [(0, 4), (4, 7), (7, 10)]
    assert distributed.shard_sizes(2, 3) == [1, 1, 0]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from typer.testing import CliRunner

    from mmrec.cli.main import app

    root = tmp_path_factory.mktemp("dist")
    (root / "img").mkdir()
    (root / "snd").mkdir()
    rows = []
    for i in range(48):
        write_png(root / "img" / f"{i}.png", (5 * i, 255 - 5 * i, (40 * i) % 256))
        row = {"id": f"i{i}", "title": f"thing number {i}", "image": f"img/{i}.png"}
        if i % 2 == 0:
            write_wav(root / "snd" / f"{i}.wav", 200.0 + 30 * i)
            row["audio"] = f"snd/{i}.wav"
        rows.append(row)
    result = CliRunner().invoke(app, ["encode", str(make_catalog(root, rows)), "--out",
                                      str(root / "store"), *FAKE_OPTIONS])
    assert result.exit_code == 0, result.output
    lines = ["user,item,timestamp"]
    rng = np.random.default_rng(0)
    for u in range(20):
        for t, i in enumerate(rng.choice([i for i in range(48) if i % 4 == u % 4], 7, False)):
            lines.append(f"u{u},i{i},{100 * t + u}")
    (root / "inter.csv").write_text("\n".join(lines) + "\n")
    return root


def mmrec(*args, procs=1, env=None):
    """``python -m mmrec ...``, or the same under ``torchrun --nproc_per_node procs``."""
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(procs)] if procs > 1 else [sys.executable])
    result = subprocess.run([*launch, "-m", "mmrec", *map(str, args)], capture_output=True,
                            text=True, timeout=TIMEOUT, env={**os.environ, **(env or {})})
    return result


def report(*args, procs=1):
    result = mmrec(*args, "--json", "--device", "cpu", procs=procs)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)  # rank 0 alone prints: one JSON document


@pytest.mark.slow  # three python+torch start-ups: ~10 s idle, ~40 s on a busy box
def test_torchrun_align_matches_one_process(store, tmp_path):
    args = ("align", store / "store", "--steps", "30", "--batch-size", "15")
    one = report(*args, "--out", tmp_path / "a1")
    two = report(*args, "--out", tmp_path / "a2", procs=2)
    assert two["steps"] == one["steps"] and two["best_step"] == one["best_step"]
    assert two["val_r10"] == pytest.approx(one["val_r10"], rel=0.02)
    for pair, metrics in one["retrieval"].items():
        assert two["retrieval"][pair]["recall@10"] == pytest.approx(metrics["recall@10"], rel=0.02)
    assert (tmp_path / "a2" / "config.json").is_file()


@pytest.mark.slow  # three python+torch start-ups: ~10 s idle, ~40 s on a busy box
def test_torchrun_train_matches_one_process(store, tmp_path):
    args = ("train", "--store", store / "store", "--interactions", store / "inter.csv",
            "--epochs", "4", "--batch-size", "25", "--warmup", "2")
    one = report(*args, "--out", tmp_path / "m1")
    two = report(*args, "--out", tmp_path / "m2", procs=2)
    assert [c["loss"] for c in two["curve"]] == pytest.approx([c["loss"] for c in one["curve"]],
                                                               rel=0.02)
    for metric, value in one["valid"].items():
        assert two["valid"][metric] == pytest.approx(value, rel=0.02, abs=1e-6), metric
    assert (tmp_path / "m2" / "config.json").is_file()


def test_a_rank_that_dies_ends_the_run(tmp_path):
    """Rank 1 dies before a collective; rank 0 must not wait for it for ever."""
    script = tmp_path / "dies.py"
    script.write_text(
        "import os\nfrom mmrec import distributed\n"
        "distributed.setup('cpu')\n"
        "if distributed.world().rank == 1:\n    os._exit(3)\n"
        "try:\n    distributed.barrier()\n    distributed.barrier()\n"
        "except distributed.DistributedError as exc:\n    print('error:', exc)\n    raise SystemExit(1)\n")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node", "2", str(script)], capture_output=True,
                            text=True, timeout=TIMEOUT, env={**os.environ, "MMREC_DIST_TIMEOUT": "20"})
    assert result.returncode != 0
    assert "exitcode  : 3" in result.stderr  # torchrun names the rank that died


def test_bpr_refuses_torchrun(store, tmp_path):
    result = mmrec("train", "--store", store / "store", "--interactions", store / "inter.csv",
                   "--out", tmp_path / "m", "--model", "bpr", "--device", "cpu",
                   env={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert result.returncode == 1
    assert result.stderr.startswith("error: --model bpr does not train data-parallel")
