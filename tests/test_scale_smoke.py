"""bench/scale.py end to end at a small size: every stage runs, a no-op re-encode encodes
nothing and costs less than the first run, 1% changed re-encodes exactly that 1%, align
learns the planted text-image pairs."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
def test_every_scale_stage_runs_and_reruns_are_incremental(tmp_path):
    sys.path.insert(0, str(BENCH))
    import scale

    scale.prepare(tmp_path, 20_000, 2_000, 10, ("alignencode",))
    results = {}
    for name in ("encode", "noop", "changed", "interactions", "train", "evaluate", "index",
                 "recommend", "alignencode", "align"):
        results[name] = scale.measure(name, tmp_path, 900)
        assert "error" not in results[name], results[name]
    assert results["noop"]["encoded"] == 0 and results["noop"]["reused"] == 20_000
    assert results["noop"]["seconds"] < results["encode"]["seconds"]
    assert results["changed"]["encoded"] == 200
    assert results["recommend"]["hits"] == 10
    # validation and the final metrics rank bounded samples; the planted pairs are learned
    assert results["align"]["gallery"] == 4_000 and results["align"]["r10_image->text"] > 0.5
