"""The artifact layer: one descriptor reader, one error per kind, one staging scheme."""
from __future__ import annotations

import json
import os
import stat

import pytest

from mmrec.artifacts import Artifact, Kind, check_out, kind_of, read_config, staging, write_config
from mmrec.atomic import save_npy, write_json
from mmrec.errors import (
    AlignerError,
    ArtifactError,
    HeadsError,
    ModelError,
    StoreError,
)


class _Store:
    path = "/somewhere/store"

    def encoders(self):
        return {"text": {"encoder": "builtin:minilm-l6-v2", "dim": 384}}


def _aligner(tmp_path):
    aligner = tmp_path / "aligner"
    aligner.mkdir()
    write_config(aligner, Kind.ALIGNER, {"pivot": "text"}, _Store())
    return aligner


def test_check_out_never_replaces_another_kind(tmp_path):
    aligner = _aligner(tmp_path)
    assert kind_of(aligner) is Kind.ALIGNER
    check_out(aligner, Kind.ALIGNER)              # replacing an aligner with an aligner: fine
    check_out(tmp_path / "new", Kind.MODEL)       # absent: fine
    with pytest.raises(ModelError, match="is a non-empty directory that is not an mmrec model"):
        check_out(aligner, Kind.MODEL)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelError, match="is a file"):
        check_out(tmp_path / "file", Kind.MODEL)
    with pytest.raises(ModelError, match="is an aligner, not a model"):
        read_config(aligner, Kind.MODEL)


@pytest.mark.parametrize("kind, error", [(Kind.STORE, StoreError), (Kind.ALIGNER, AlignerError),
                                         (Kind.MODEL, ModelError), (Kind.HEADS, HeadsError)])
def test_each_kind_has_its_own_error(tmp_path, kind, error):
    assert issubclass(error, ArtifactError) and kind.error is error
    with pytest.raises(error, match=f"{kind.value} not found"):
        Artifact.open(tmp_path / "absent", kind)
    other = Kind.MODEL if kind is Kind.ALIGNER else Kind.ALIGNER
    directory = tmp_path / "other"
    directory.mkdir()
    write_config(directory, other, {}, _Store())
    with pytest.raises(error, match=f"is {other.article}, not {kind.article}"):
        Artifact.open(directory, kind)


def test_open_refuses_a_newer_format_and_a_foreign_directory(tmp_path):
    aligner = _aligner(tmp_path)
    config = json.loads((aligner / "config.json").read_text())
    (aligner / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(AlignerError, match="newer mmrec"):
        Artifact.open(aligner, Kind.ALIGNER)
    (aligner / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ArtifactError, match="is not an mmrec aligner or model"):
        kind_of(aligner)
    (aligner / "config.json").write_text("{broken")
    with pytest.raises(AlignerError, match="config.json: damaged file"):
        Artifact.open(aligner, Kind.ALIGNER)


def test_staging_publishes_whole_or_leaves_the_old_directory(tmp_path):
    final = tmp_path / "out"
    with staging(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".out.")
        write_json(tmp / "a.json", 1)
    assert json.loads((final / "a.json").read_text()) == 1
    with pytest.raises(RuntimeError), staging(final) as tmp:
        write_json(tmp / "a.json", 2)
        raise RuntimeError("killed half way")
    assert json.loads((final / "a.json").read_text()) == 1  # the old one, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left behind


def test_create_checks_out_before_and_after_the_work(tmp_path):
    out = tmp_path / "m"
    with pytest.raises(ModelError, match="not an mmrec model"), \
            Artifact.create(out, Kind.MODEL) as tmp:
        write_config(tmp, Kind.MODEL, {}, _Store())
        out.mkdir()
        (out / "precious.txt").write_text("someone else's")  # appeared while training ran
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_artifact_directories_follow_the_umask(tmp_path):
    import numpy as np

    old = os.umask(0o022)
    try:
        with Artifact.create(tmp_path / "m", Kind.MODEL) as tmp:
            write_config(tmp, Kind.MODEL, {}, _Store())
            (tmp / "sub").mkdir()
            save_npy(tmp / "sub" / "x.npy", np.zeros(2))
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode)
             for p in [tmp_path / "m", *(tmp_path / "m").rglob("*")]}
    assert modes == {"m": 0o755, "config.json": 0o644, "sub": 0o755, "x.npy": 0o644}
