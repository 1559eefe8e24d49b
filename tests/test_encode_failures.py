"""A first encode that fails before writing anything leaves no directory behind."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from conftest import FAKE_OPTIONS, make_catalog
from mmrec.cli.main import app

runner = CliRunner()


@pytest.fixture
def no_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


CAUSES = {
    "device": (["--device", "cuda"], "--device cuda asked for"),
    "missing hf model": (["--text-encoder", "hf:/nonexistent"], "/nonexistent"),
}


def _fails(catalog, out, extra, message):
    result = runner.invoke(app, ["encode", str(catalog), "--out", str(out), *FAKE_OPTIONS, *extra])
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("cause", CAUSES)
def test_failed_first_run_leaves_no_directory(tmp_path, media, rows, no_cuda, cause):
    out = tmp_path / "new" / "store"
    _fails(make_catalog(media, rows), out, *CAUSES[cause])
    assert not out.exists()


@pytest.mark.parametrize("cause", CAUSES)
def test_failed_run_leaves_an_existing_empty_directory_as_it_was(tmp_path, media, rows, no_cuda,
                                                                 cause):
    out = tmp_path / "store"
    out.mkdir()
    _fails(make_catalog(media, rows), out, *CAUSES[cause])
    assert out.is_dir() and list(out.iterdir()) == []


def test_failed_rerun_keeps_the_store(tmp_path, media, rows, no_cuda):
    from mmrec.store import Store

    catalog, out = make_catalog(media, rows), tmp_path / "store"
    assert runner.invoke(app, ["encode", str(catalog), "--out", str(out), *FAKE_OPTIONS]).exit_code == 0
    before = sorted(p.name for p in out.iterdir())
    rows[0]["title"] = "changed, so the re-run needs the device"
    _fails(make_catalog(media, rows), out, *CAUSES["device"])
    assert sorted(p.name for p in out.iterdir()) == before
    assert len(Store.open(out)) == len(rows)
