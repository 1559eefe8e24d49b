from __future__ import annotations

import numpy as np
import pytest

from mmrec.enums import IndexType
from mmrec.errors import ConfigError, IndexFileError
from mmrec.index import VectorIndex


def _unit(n, d, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", [IndexType.FLAT, IndexType.IVF])
def test_search_matches_brute_force(tmp_path, kind):
    vecs = _unit(2000, 16)
    ids = [f"i{n}" for n in range(2000)]
    index = VectorIndex.build(ids, vecs, kind)
    queries = _unit(5, 16, seed=1)
    truth = np.argsort(-(queries @ vecs.T), axis=1)[:, :10]
    found = index.search(queries, 10)
    recall = np.mean([len({ids[j] for j in truth[q]} & {h for h, _ in found[q]}) / 10
                      for q in range(5)])
    assert recall == 1.0 if kind is IndexType.FLAT else recall >= 0.8
    index.save(tmp_path)
    again = VectorIndex.load(tmp_path)
    assert again.kind is kind and again.search(queries, 10) == found


def test_exclusions_and_auto_kind():
    vecs = _unit(50, 8)
    ids = [str(n) for n in range(50)]
    index = VectorIndex.build(ids, vecs)
    assert index.kind is IndexType.FLAT
    top = index.search(vecs[:1], 3, exclude=[{"0"}])[0]
    assert "0" not in [h for h, _ in top] and len(top) == 3
    assert top == sorted(top, key=lambda h: -h[1])


def test_bad_inputs():
    with pytest.raises(ConfigError, match="zero items"):
        VectorIndex.build([], np.zeros((0, 4), np.float32))
    index = VectorIndex.build(["a"], _unit(1, 4))
    with pytest.raises(ConfigError, match="3 dimensions, the index 4"):
        index.search(np.zeros((1, 3), np.float32), 1)


def test_load_missing(tmp_path):
    with pytest.raises(IndexFileError, match="no index named"):
        VectorIndex.load(tmp_path)
