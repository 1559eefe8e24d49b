from __future__ import annotations

import pytest

from mmrec.artifacts import Kind, check_out, kind_of, read_config, write_config
from mmrec.errors import StoreError


class _Store:
    path = "/somewhere/store"

    def encoders(self):
        return {"text": {"encoder": "builtin:minilm-l6-v2", "dim": 384}}


def test_check_out_never_replaces_another_kind(tmp_path):
    aligner = tmp_path / "aligner"
    aligner.mkdir()
    write_config(aligner, Kind.ALIGNER, {"pivot": "text"}, _Store())
    assert kind_of(aligner) is Kind.ALIGNER
    check_out(aligner, Kind.ALIGNER)              # replacing an aligner with an aligner: fine
    check_out(tmp_path / "new", Kind.MODEL)       # absent: fine
    with pytest.raises(StoreError, match="is a non-empty directory that is not an mmrec model"):
        check_out(aligner, Kind.MODEL)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        check_out(tmp_path / "file", Kind.MODEL)
    with pytest.raises(StoreError, match="is an aligner, not a model"):
        read_config(aligner, Kind.MODEL)
