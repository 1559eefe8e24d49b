"""Every index type: built by index_factory, tuned, saved with its recall, loaded back."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmrec import index as index_module
from mmrec.errors import ConfigError, IndexFileError
from mmrec.index import (
    EXACT_LIMIT,
    IndexType,
    VectorIndex,
    choose_index,
    factory_string,
    memory_budget,
    resolve_kind,
)

GB = 1024**3


def clustered(n, d=32, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_recall(index, vectors, queries, k=10):
    truth = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]
    found = index.search(queries, k)
    return np.mean([len({str(j) for j in t} & {h for h, _ in f}) / k
                    for t, f in zip(truth, found, strict=True)])


def test_auto_is_exact_below_the_limit_then_ivf_then_compressed():
    assert choose_index(EXACT_LIMIT - 1, 384, 2 * GB) is IndexType.FLAT
    assert choose_index(EXACT_LIMIT, 384, 2 * GB) is IndexType.IVF
    assert choose_index(1_000_000, 384, 2 * GB) is IndexType.IVF  # 1.43 GiB of floats fit
    assert choose_index(2_000_000, 384, 2 * GB) is IndexType.SQ8  # 2.9 GiB do not; codes do
    assert choose_index(10_000_000, 384, 2 * GB) is IndexType.IVFPQ  # not even 8-bit codes
    assert choose_index(1_000_000, 384, 512 * 1024**2) is IndexType.SQ8  # 366 MiB of codes
    assert choose_index(1_000_000, 384, 256 * 1024**2) is IndexType.IVFPQ


def test_memory_budget_from_the_environment(monkeypatch):
    monkeypatch.delenv("MMREC_INDEX_MEMORY", raising=False)
    assert memory_budget() == 2 * GB
    monkeypatch.setenv("MMREC_INDEX_MEMORY", "512M")
    assert memory_budget() == 512 * 1024**2
    assert memory_budget("1.5G") == int(1.5 * GB) and memory_budget(1000) == 1000
    for bad in ("lots", "-1G", "0"):
        with pytest.raises(ConfigError, match="MMREC_INDEX_MEMORY must be a positive size"):
            memory_budget(bad)


def test_factory_strings_and_tiny_inputs():
    assert factory_string(IndexType.HNSW, 10_000, 64) == "HNSW32,Flat"
    assert factory_string(IndexType.IVF, 1_000_000, 384) == "IVF2000,Flat"
    assert factory_string(IndexType.SQ8, 1_000_000, 384) == "IVF2000,SQ8"
    assert factory_string(IndexType.IVFPQ, 1_000_000, 384) == "IVF2000,PQ96x8"
    assert factory_string(IndexType.IVFPQ, 100_000, 100).startswith("IVF632,PQ25x")
    # k-means over a handful of vectors is pointless: exact instead; a graph builds anyway
    assert resolve_kind(IndexType.IVFPQ, 10, 8) is IndexType.FLAT
    assert resolve_kind(IndexType.HNSW, 10, 8) is IndexType.HNSW


@pytest.mark.parametrize(("kind", "floor"), [
    (IndexType.FLAT, 1.0), (IndexType.HNSW, 0.9), (IndexType.IVF, 0.9), (IndexType.SQ8, 0.9),
    (IndexType.IVFPQ, 0.3),
])
def test_each_type_is_tuned_saved_and_loaded(tmp_path, kind, floor):
    points = clustered(3050)
    vectors, queries = points[:3000], points[3000:]  # held-out points of the same clusters
    ids = [str(i) for i in range(len(vectors))]
    built = VectorIndex.build(ids, vectors, kind, seed=1)
    assert built.kind is kind and built.info["factory"] == factory_string(kind, 3000, 32)
    measured = exact_recall(built, vectors, queries)
    assert measured >= floor
    # the recall stored at build time predicts the recall on unseen queries
    assert built.recall == pytest.approx(measured, abs=0.15)
    if kind in (IndexType.HNSW, IndexType.IVF, IndexType.SQ8):
        assert built.recall >= 0.95
    built.save(tmp_path)
    meta = json.loads((tmp_path / "index.ids.json").read_text())
    assert meta["kind"] == kind.value and meta["params"] == built.info["params"]
    again = VectorIndex.load(tmp_path)
    assert again.kind is kind and again.recall == built.recall
    assert again.search(queries, 10) == built.search(queries, 10)


def test_tuning_raises_the_search_parameter_until_recall_is_reached():
    vectors = clustered(4000, d=48, clusters=4)  # few, wide clusters: one list is not enough
    built = VectorIndex.build([str(i) for i in range(4000)], vectors, IndexType.IVF)
    assert built.info["params"]["nprobe"] > 1 and built.recall >= 0.97
    # the saved parameter is the one searches use
    import faiss

    assert faiss.extract_index_ivf(built.index).nprobe == built.info["params"]["nprobe"]


def test_auto_switches_with_size_and_budget(monkeypatch):
    monkeypatch.setattr(index_module, "EXACT_LIMIT", 1000)
    vectors = clustered(2000)
    ids = [str(i) for i in range(2000)]
    assert VectorIndex.build(ids[:999], vectors[:999]).kind is IndexType.FLAT
    roomy = VectorIndex.build(ids, vectors, budget=2000 * 32 * 4)
    assert roomy.kind is IndexType.IVF and roomy.info["requested"] == "auto"
    assert VectorIndex.build(ids, vectors, budget=2000 * 32).kind is IndexType.SQ8
    assert VectorIndex.build(ids, vectors, budget=1000).kind is IndexType.IVFPQ


def test_an_index_saved_by_the_old_writer_still_loads(tmp_path):
    import faiss

    vectors = clustered(200)
    flat = faiss.IndexFlatIP(32)
    flat.add(vectors)
    (tmp_path / "index.faiss").write_bytes(faiss.serialize_index(flat).tobytes())
    ids = [f"i{n}" for n in range(200)]
    (tmp_path / "index.ids.json").write_text(json.dumps({"kind": "flat", "ids": ids}))
    old = VectorIndex.load(tmp_path)
    assert old.kind is IndexType.FLAT and old.recall is None
    assert old.search(vectors[5], 1)[0][0][0] == "i5"


def test_unknown_kind_and_damaged_file_are_index_file_errors(tmp_path):
    VectorIndex.build(["a", "b"], clustered(2)).save(tmp_path)
    meta = json.loads((tmp_path / "index.ids.json").read_text())
    (tmp_path / "index.ids.json").write_text(json.dumps({**meta, "kind": "diskann"}))
    with pytest.raises(IndexFileError, match="unknown index type"):
        VectorIndex.load(tmp_path)
    (tmp_path / "index.ids.json").write_text(json.dumps(meta))
    (tmp_path / "index.faiss").write_bytes(b"not an index")
    with pytest.raises(IndexFileError, match="index.faiss"):
        VectorIndex.load(tmp_path)


def test_unknown_index_option_lists_the_choices():
    from mmrec.alignment.config import AlignConfig
    from mmrec.recsys.config import TrainConfig

    with pytest.raises(ConfigError, match="--index must be one of auto, flat, hnsw"):
        AlignConfig(index="annoy").validate()
    with pytest.raises(ConfigError, match="--index must be one of auto, flat, hnsw"):
        TrainConfig(index="annoy").resolved()
    assert TrainConfig(index="hnsw").resolved().index is IndexType.HNSW


def test_a_bad_memory_budget_fails_before_training(monkeypatch):
    from mmrec.recsys.config import TrainConfig

    monkeypatch.setenv("MMREC_INDEX_MEMORY", "plenty")
    with pytest.raises(ConfigError, match="MMREC_INDEX_MEMORY"):
        TrainConfig().resolved()
    assert TrainConfig(index="flat").resolved().index is IndexType.FLAT  # no budget needed
