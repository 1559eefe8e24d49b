"""align at catalog size: a step reads its batch's rows from the (memory-mapped)
matrices, never a whole matrix, and validation ranks a bounded, seeded sample."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import FAKE_OPTIONS, make_catalog, write_png
from mmrec.alignment import pipeline
from mmrec.alignment import train as align_train
from mmrec.alignment.config import AlignConfig
from mmrec.alignment.fusion import fuse
from mmrec.alignment.heads import HeadSet
from mmrec.alignment.train import TrainData, fit, gallery_sample
from mmrec.cli.main import app
from mmrec.enums import Pivot


class RowReads:
    """A matrix that only answers row reads, and counts them: whoever wants the whole
    matrix (``np.asarray``, ``torch.as_tensor``) fails instead of quietly copying it."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix, self.reads = matrix, []
        self.shape, self.dtype = matrix.shape, matrix.dtype

    def __len__(self) -> int:
        return len(self.matrix)

    def __getitem__(self, rows):
        out = self.matrix[rows]
        self.reads.append(len(out))
        return out


def _pairs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((n, 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    rotation = np.linalg.qr(rng.standard_normal((8, 8)))[0].astype(np.float32)
    return text, text @ rotation


def test_steps_read_batches_and_checks_read_the_bounded_gallery(monkeypatch):
    monkeypatch.setattr(align_train, "VAL_GALLERY", 40)
    n = 3_000
    text, image = _pairs(n)
    matrices = {"text": RowReads(text), "image": RowReads(image)}
    rows = np.arange(n)
    val = gallery_sample(rows[2_000:], align_train.VAL_GALLERY, seed=0)
    data = TrainData(matrices, {"text": np.ones(n, bool), "image": np.ones(n, bool)}, rows[:2_000], val)
    heads = HeadSet({"text": 8, "image": 8}, 8, "linear", 8, Pivot.TEXT)
    config = AlignConfig(steps=60, lr=0.05, batch_size=32, eval_every=10, patience=100)
    result = fit(heads, data, config, torch.device("cpu"))
    assert result.steps == 60 and len(result.history) == 7  # step 0 and every 10th
    reads = matrices["image"].reads
    assert reads and max(reads) <= 40  # batches of 32 and the 40-item gallery, never 3,000
    assert reads.count(40) == 7  # one gallery read per check
    assert result.best_r10 > 0.5  # a learnable rotation is learned (chance: 10/40)


def test_the_gallery_sample_is_fixed_seeded_and_only_when_there_are_many():
    rows = np.arange(100, 1_100)
    assert gallery_sample(rows, 5_000, seed=0) is rows
    one, again, other = (gallery_sample(rows, 50, seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(one, again)
    assert len(one) == 50 and len(set(one)) == 50 and set(one) <= set(rows)
    assert np.all(np.diff(one) > 0) and not np.array_equal(one, other)


def test_chunked_fusion_equals_the_whole_matrix_one(monkeypatch):
    import mmrec.alignment.fusion as fusion
    from mmrec.vectors import unit_rows

    rng = np.random.default_rng(0)
    text, image = (unit_rows(rng.standard_normal((1_000, 6))) for _ in range(2))
    masks = rng.random((2, 1_000)) < [[0.9], [0.5]]
    projected = {"text": (text, masks[0]), "image": (image, masks[1])}
    whole = unit_rows(np.where(masks[0][:, None], text, 0) + 0.5 * np.where(masks[1][:, None], image, 0))
    monkeypatch.setattr(fusion, "FUSE_CHUNK", 64)
    fused, have = fuse(projected, {"image": 0.5})
    np.testing.assert_allclose(fused, whole, atol=1e-6)
    np.testing.assert_array_equal(have, masks[0] | masks[1])


@pytest.fixture
def store(tmp_path):
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(40):
        write_png(tmp_path / "img" / f"{i}.png", (6 * i, 250 - 6 * i, (60 * i) % 256))
        rows.append({"id": f"i{i}", "title": f"thing {i}", "image": f"img/{i}.png"})
    out = tmp_path / "store"
    result = CliRunner().invoke(app, ["encode", str(make_catalog(tmp_path, rows)), "--out", str(out),
                                      *FAKE_OPTIONS])
    assert result.exit_code == 0, result.output
    return out


def test_align_maps_the_store_and_ranks_bounded_samples(store, tmp_path, monkeypatch):
    from mmrec.store import Store

    monkeypatch.setattr(align_train, "VAL_GALLERY", 6)
    monkeypatch.setattr(pipeline, "REPORT_GALLERY", 8)
    monkeypatch.setattr(pipeline, "PROJECT_CHUNK", 7)  # projection in several chunks
    checked: list[int] = []
    scores = align_train.validation_pairs
    monkeypatch.setattr(align_train, "validation_pairs",
                        lambda heads, data: checked.append(len(data.val)) or scores(heads, data))
    config = AlignConfig(steps=20, batch_size=8, eval_every=5, val_split=0.5, device="cpu")
    plan = pipeline.plan(Store.open(store), config, pipeline.NullProgress())
    assert all(isinstance(m, np.memmap) for m in plan.arrays.matrices.values())  # not read whole
    assert len(plan.val_rows) == 20 and len(plan.gallery) == 6 and set(plan.gallery) <= set(plan.val_rows)
    report = pipeline.align(store, tmp_path / "aligner", config)
    assert report.val_items == 20 and checked and set(checked) == {6}
    assert {r["gallery"] for r in report.retrieval.values()} == {8}
    # the chunked projection is the whole-matrix one
    projected = np.load(tmp_path / "aligner" / "vectors" / "image.npy")
    from mmrec.alignment.heads import load_heads

    heads = load_heads(tmp_path / "aligner")
    matrix, mask = Store.open(store).matrix("image")
    np.testing.assert_allclose(projected, np.where(mask[:, None], heads.project("image", matrix), 0), atol=1e-6)


def test_a_tuned_text_matrix_is_an_in_memory_copy(store):
    from mmrec.store import Store

    arrays = pipeline.StoreArrays.read(Store.open(store), ["text", "image"], writable=("text",))
    assert not isinstance(arrays.matrices["text"], np.memmap) and arrays.matrices["text"].flags.writeable
    assert isinstance(arrays.matrices["image"], np.memmap)


@pytest.fixture
def some_images(tmp_path):
    """40 items, a third of them without an image."""
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(40):
        row = {"id": f"i{i}", "title": f"thing {i}"}
        if i % 3:
            write_png(tmp_path / "img" / f"{i}.png", (6 * i, 250 - 6 * i, (60 * i) % 256))
            row["image"] = f"img/{i}.png"
        rows.append(row)
    out = tmp_path / "store"
    result = CliRunner().invoke(app, ["encode", str(make_catalog(tmp_path, rows)), "--out", str(out),
                                      *FAKE_OPTIONS])
    assert result.exit_code == 0, result.output
    return out


def _in_memory_aligner(plan, trained, chosen, out):
    """The aligner as arrays held in memory and handed to ``write_aligner``: the reference."""
    from mmrec.alignment.aligner import write_aligner
    from mmrec.alignment.retrieval import retrieval_metrics

    projected = pipeline.project(plan, chosen.projector)
    assert not any(isinstance(m, np.memmap) for m, _ in projected.values())
    fused, have = fuse(projected, plan.config.fusion)
    keep = have.nonzero()[0]
    ids = [plan.arrays.ids[i] for i in keep]
    projected = {m: (matrix[keep], mask[keep]) for m, (matrix, mask) in projected.items()}
    val = {plan.arrays.ids[i] for i in plan.val_rows}
    rows = pipeline._rows_of(ids, val)
    hubs = pipeline._hubs(plan, trained, projected, rows)
    metrics = retrieval_metrics(projected, gallery_sample(rows, pipeline.REPORT_GALLERY, plan.config.seed),
                                hubs=hubs.terms)
    info = pipeline._info(plan, trained, chosen, metrics, hubs)
    contents = pipeline._contents(plan.store, ids, projected, fused[keep], val, plan.config, info)
    contents.hubs, contents.memories = hubs.terms, list(chosen.projector.memories.values())
    write_aligner(out, plan.config, plan.store, trained.heads.to("cpu"), contents)


@pytest.mark.parametrize("fusion", [{}, {"text": 0.0}])  # all items kept; only those with images
def test_the_write_projects_into_maps_and_writes_the_in_memory_aligner(some_images, tmp_path,
                                                                       monkeypatch, fusion):
    import filecmp

    import mmrec.index
    import mmrec.store
    from mmrec.runtime import resolve_device
    from mmrec.store import Store

    monkeypatch.setattr(pipeline, "PROJECT_CHUNK", 7)  # projection in several chunks
    config = AlignConfig(steps=6, batch_size=8, val_split=0.25, fusion=fusion, device="cpu").validate()
    plan = pipeline.plan(Store.open(some_images), config, pipeline.NullProgress())
    trained = pipeline.train(plan, resolve_device("cpu"), pipeline.NullProgress())
    chosen = pipeline.projection(plan, trained)
    built, released = [], []
    build, release = mmrec.index.VectorIndex.build.__func__, mmrec.store.release
    monkeypatch.setattr(mmrec.index.VectorIndex, "build", classmethod(
        lambda cls, ids, vectors, *a, **k: built.append(vectors) or build(cls, ids, vectors, *a, **k)))
    monkeypatch.setattr(mmrec.store, "release",
                        lambda array: released.append(getattr(array, "filename", None)) or release(array))
    report = pipeline.write(plan, tmp_path / "mapped", trained, chosen)
    # every index was built from a memory map of the file being published (the image
    # index from a copy of the rows with an image, when some lack one), and the maps'
    # pages were dropped as they were written and read: no matrix was held in memory
    maps = sorted(Path(v.filename).name for v in built if isinstance(v, np.memmap))
    mapped = ["fused.npy", "text.npy"] + (["image.npy"] if fusion else [])
    assert len(built) == 3 and maps == sorted(mapped), maps
    for name in ("text.npy", "image.npy", "fused.npy"):
        assert sum(Path(f).name == name for f in released if f) >= 2, name
    assert report.items == (40 if not fusion else 26)
    _in_memory_aligner(plan, trained, chosen, tmp_path / "memory")
    files = sorted(p.relative_to(tmp_path / "memory") for p in (tmp_path / "memory").rglob("*"))
    assert files == sorted(p.relative_to(tmp_path / "mapped") for p in (tmp_path / "mapped").rglob("*"))
    assert "vectors/fused.npy" in {str(f) for f in files}
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "memory", tmp_path / "mapped",
                                           [str(f) for f in files if (tmp_path / "memory" / f).is_file()],
                                           shallow=False)
    assert not mismatch and not errors, mismatch


def test_no_item_to_keep_is_a_clear_error_and_writes_nothing(store, tmp_path):
    from mmrec.errors import ConfigError

    with pytest.raises(ConfigError, match="nothing to align: no item has a vector"):
        pipeline.align(store, tmp_path / "aligner", steps=2, batch_size=8, device="cpu",
                       fusion={"text": 0.0, "image": 0.0})
    assert not (tmp_path / "aligner").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".aligner")]  # no staging left
