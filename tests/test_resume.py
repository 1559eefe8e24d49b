"""A real `mmrec encode` process killed mid-run resumes and ends identical to a clean run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

from conftest import FAKE_OPTIONS, make_catalog
from mmrec.store import Store


def _command(catalog, out):
    return [sys.executable, "-m", "mmrec.cli.main", "encode", str(catalog), "--out", str(out),
            *FAKE_OPTIONS, "--batch-size", "4", "--json"]


def _same(a: Store, b: Store) -> None:
    assert a.ids == b.ids
    assert a.hashes() == b.hashes()
    for modality in a.modalities:
        ma, ka = a.matrix(modality)
        mb, kb = b.matrix(modality)
        np.testing.assert_array_equal(ka, kb)
        np.testing.assert_array_equal(np.asarray(ma), np.asarray(mb))


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    rows = [{"id": f"i{n:03d}", "title": f"item number {n}", "description": "x" * (n % 7)}
            for n in range(600)]
    catalog = make_catalog(tmp_path / "cat", rows)
    env = {**os.environ, "MMREC_FAKE_DELAY": "0.02"}  # 150 batches: ~3 s of work

    proc = subprocess.Popen(_command(catalog, tmp_path / "killed"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = tmp_path / "killed" / ".partial"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(journal.glob("text-*.npz"))) < 1:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    chunks = list(journal.glob("text-*.npz"))
    assert chunks, "the run was killed before it finished a chunk"
    assert not (tmp_path / "killed" / "manifest.json").exists()

    resumed = subprocess.run(_command(catalog, tmp_path / "killed"), env=env, capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    import json

    report = json.loads(resumed.stdout)
    assert report["reused"]["text"] >= 256          # the finished chunk was not redone
    assert report["reused"]["text"] + report["encoded"]["text"] == 600
    assert not journal.exists()

    clean = subprocess.run(_command(catalog, tmp_path / "clean"), capture_output=True, text=True,
                           timeout=120)
    assert clean.returncode == 0, clean.stderr
    _same(Store.open(tmp_path / "killed"), Store.open(tmp_path / "clean"))


def test_interrupt_mid_publish_keeps_the_old_store(tmp_path, monkeypatch, media, rows):
    """If writing a new generation fails, readers still see the previous complete one."""
    import mmrec.artifacts
    from mmrec.encoding import encode

    catalog = make_catalog(media, rows)
    encoders = dict(zip(["text", "image", "audio"], FAKE_OPTIONS[1::2], strict=True))
    encode(catalog, tmp_path / "s", encoders=encoders)
    before = Store.open(tmp_path / "s")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    rows[0]["title"] = "changed"
    monkeypatch.setattr(mmrec.artifacts, "publish_dir", boom)
    try:
        encode(make_catalog(media, rows), tmp_path / "s", encoders=encoders)
    except KeyboardInterrupt:
        pass
    after = Store.open(tmp_path / "s")
    _same(before, after)
    assert (tmp_path / "s" / ".partial").is_dir()  # the changed item waits in the journal
    assert not list((tmp_path / "s").glob(".data-*"))  # the failed staging is gone


def test_damaged_journal_chunk_and_interrupted_first_publish_resume(tmp_path, media, rows):
    from mmrec.encoding import encode

    encoders = dict(zip(["text", "image", "audio"], FAKE_OPTIONS[1::2], strict=True))
    out = tmp_path / "s"
    (out / ".partial").mkdir(parents=True)
    (out / ".partial" / "text-000000.npz").write_bytes(b"PK\x03\x04 truncated")
    (out / "data-20260101T000000-000000001").mkdir()     # published, manifest never written
    (out / ".data-20260101T000000-000000002.tmp").mkdir()  # staging of a killed run
    report = encode(make_catalog(media, rows), out, encoders=encoders)
    assert report.vectors == {"text": 5, "image": 3, "audio": 3}
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock")[1:] == ["manifest.json"]
