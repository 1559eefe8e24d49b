"""Encode at scale: what a re-run may not do (re-read media, rewrite the store) and how
vectors reach the disk (by chunk into a memory map, not through one in-memory matrix)."""
from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from conftest import FAKE, FAKE_ENCODERS, make_catalog, write_png
from mmrec import encoding, store
from mmrec.catalog import Item
from mmrec.encoders.base import Encoder
from mmrec.encoding import encode
from mmrec.store import Journal, Store, copy_rows, write_store


def _encode(catalog, out, **kwargs):
    return encode(catalog, out, encoders=FAKE_ENCODERS, **kwargs)


def _files(out):
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"}


def test_a_no_op_rerun_reads_no_media_and_rewrites_nothing(tmp_path, media, rows, monkeypatch):
    catalog = make_catalog(media, rows)
    _encode(catalog, tmp_path / "s")
    before = _files(tmp_path / "s")
    hashed = []
    original = Item.content_hash

    def counting(self, modality):
        if self.source(modality) is not None:
            hashed.append((self.id, modality.value))
        return original(self, modality)

    monkeypatch.setattr(Item, "content_hash", counting)
    report = _encode(catalog, tmp_path / "s")
    assert report.encoded == {"text": 0, "image": 0, "audio": 0}
    assert report.reused == {"text": 5, "image": 3, "audio": 3}
    assert hashed == []                        # same catalog bytes, same media stats
    assert _files(tmp_path / "s") == before    # no new generation, no file touched

    rows[3]["title"] = "Only text, edited"
    edited = _encode(make_catalog(media, rows), tmp_path / "s")
    assert edited.encoded == {"text": 1, "image": 0, "audio": 0}
    assert {m for _, m in hashed} == {"text"}  # media were trusted by path, size and mtime


def test_a_touched_media_file_is_hashed_again_and_an_edited_one_re_encoded(tmp_path, media, rows):
    catalog = make_catalog(media, rows)
    _encode(catalog, tmp_path / "s")
    red = media / "img" / "red.png"
    os.utime(red, ns=(red.stat().st_atime_ns, red.stat().st_mtime_ns + 10**9))
    touched = _encode(catalog, tmp_path / "s")
    assert touched.encoded["image"] == 0      # same bytes: the hash matched after all
    write_png(red, (10, 10, 250))
    os.utime(red, ns=(red.stat().st_atime_ns, red.stat().st_mtime_ns + 2 * 10**9))
    edited = _encode(catalog, tmp_path / "s")
    assert edited.encoded == {"text": 0, "image": 1, "audio": 0}


def test_vectors_stream_into_a_memory_map_by_chunk(tmp_path, monkeypatch):
    """Each chunk is written into the new generation as it is encoded, and the published
    matrix equals a store built in one go; items that failed everywhere are compacted out."""
    rows = [{"id": f"i{n}", "title": f"item {n}"} for n in range(700)] + [{"id": "e", "title": ""}]
    catalog = make_catalog(tmp_path / "cat", rows)
    writes = []
    original = Journal.append

    def spy(self, modality, encoder, ids, hashes, vectors, norms):
        draft = next((tmp_path / "s").glob(".data-*.tmp"))
        assert isinstance(np.load(draft / "text.npy", mmap_mode="r"), np.memmap)
        writes.append(len(ids))
        return original(self, modality, encoder, ids, hashes, vectors, norms)

    monkeypatch.setattr(Journal, "append", spy)
    report = _encode(catalog, tmp_path / "s", chunk_size=256)
    assert writes == [256, 256, 188] and report.items == 700
    store = Store.open(tmp_path / "s")
    ids, matrix = store.vectors("text")
    assert ids == [f"i{n}" for n in range(700)]
    monkeypatch.setattr(Journal, "append", original)
    _encode(catalog, tmp_path / "one", chunk_size=10_000)
    np.testing.assert_array_equal(matrix, Store.open(tmp_path / "one").vectors("text")[1])


def test_the_journal_lists_its_directory_once_not_per_chunk(tmp_path, monkeypatch):
    journal = Journal(tmp_path)
    listed = []
    original = type(journal.dir).glob

    def counting(self, pattern):
        listed.append(pattern)
        return original(self, pattern)

    monkeypatch.setattr(type(journal.dir), "glob", counting)
    for n in range(5):
        journal.append("text", "enc", [f"i{n}"], ["h"], np.ones((1, 2), np.float32),
                       np.ones(1, np.float32))
    assert len(listed) == 1
    assert sorted(p.name for p in journal.dir.iterdir()) == [f"text-{n:06d}.npz" for n in range(5)]


def _titles(n, edited=()):
    return [{"id": f"i{k}", "title": f"item {k}" + (" edited" if k in edited else "")}
            for k in range(n)]


def test_a_one_percent_change_encodes_only_that_and_copies_the_rest_unchanged(tmp_path,
                                                                              monkeypatch):
    """Only the edited items reach the encoder; every other row of the new generation is
    the old row byte for byte; the old generation stays whole and published until the
    new one is; parts that did not change (the id list) are carried over as they were."""
    n, edited = 1200, set(range(0, 1200, 100))
    out = tmp_path / "s"
    _encode(make_catalog(tmp_path / "a", _titles(n)), out, chunk_size=256)
    old = Store.open(out)
    old_matrix, old_norms = np.array(old.matrix("text")[0]), old.norms("text")
    old_files = {p.name: p.read_bytes() for p in old.data_dir.iterdir()}
    seen, published = [], []
    encode_inputs = Encoder.encode

    def spy_encode(self, inputs, *args, **kwargs):
        seen.extend(inputs)
        return encode_inputs(self, inputs, *args, **kwargs)

    def spy_publish(path, *args, **kwargs):  # the moment before the new generation goes in
        assert Store.open(path).data_dir == old.data_dir
        assert {p.name: p.read_bytes() for p in old.data_dir.iterdir()} == old_files
        published.append(True)
        return write_store(path, *args, **kwargs)

    serialised, copies = [], []
    write_json, kernel = store.write_json, getattr(os, "copy_file_range", None)
    monkeypatch.setattr(Encoder, "encode", spy_encode)
    monkeypatch.setattr(encoding, "write_store", spy_publish)
    monkeypatch.setattr(store, "write_json",
                        lambda path, *a, **k: serialised.append(path.name) or write_json(path, *a, **k))
    if kernel is not None:
        monkeypatch.setattr(os, "copy_file_range", lambda *a: copies.append(a) or kernel(*a))
    catalog = make_catalog(tmp_path / "b", _titles(n, edited))
    report = _encode(catalog, out, chunk_size=256)
    assert report.encoded == {"text": 12} and report.reused == {"text": n - 12} and published
    assert sorted(seen) == sorted(f"item {k} edited" for k in edited)
    assert sorted(serialised) == ["hashes.json", "manifest.json"]  # the rest is carried over
    if kernel is not None:  # 12 runs of unchanged rows and 3 carried files, not 1188 rows
        assert 15 <= len(copies) <= 18

    new = Store.open(out)
    matrix = np.asarray(new.matrix("text")[0])
    same = [k for k in range(n) if k not in edited]
    assert matrix[same].tobytes() == old_matrix[same].tobytes()
    assert new.norms("text")[same].tobytes() == old_norms[same].tobytes()
    assert not np.isclose(matrix[sorted(edited)], old_matrix[sorted(edited)]).all(axis=1).any()
    assert (new.data_dir / "ids.json").read_bytes() == old_files["ids.json"]
    assert not old.data_dir.exists()

    monkeypatch.undo()
    clean = Store.open(_encode(catalog, tmp_path / "clean").store)
    np.testing.assert_array_equal(matrix, np.asarray(clean.matrix("text")[0]))
    np.testing.assert_array_equal(new.norms("text"), clean.norms("text"))
    assert new.hashes() == clean.hashes() and new.items() == clean.items()


def test_an_interrupted_changed_run_keeps_the_old_store_and_resumes_from_its_journal(
        tmp_path, monkeypatch):
    n, edited = 1200, set(range(0, 1200, 2))
    out = tmp_path / "s"
    _encode(make_catalog(tmp_path / "a", _titles(n)), out, chunk_size=256)
    old = Store.open(out)
    old_matrix = np.array(old.matrix("text")[0])
    calls = []
    original = Journal.append

    def killed_after_one_chunk(self, *args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(True)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Journal, "append", killed_after_one_chunk)
    catalog = make_catalog(tmp_path / "b", _titles(n, edited))
    with pytest.raises(KeyboardInterrupt):
        _encode(catalog, out, chunk_size=256)
    kept = Store.open(out)  # still the old generation, whole; the draft is gone
    assert kept.data_dir == old.data_dir and not list(out.glob(".data-*.tmp"))
    np.testing.assert_array_equal(np.asarray(kept.matrix("text")[0]), old_matrix)
    assert len(list((out / ".partial").glob("text-*.npz"))) == 1

    monkeypatch.setattr(Journal, "append", original)
    resumed = _encode(catalog, out, chunk_size=256)
    assert resumed.encoded == {"text": len(edited) - 256}  # the journalled chunk is not redone
    assert resumed.reused == {"text": n - len(edited) + 256}
    clean = Store.open(_encode(catalog, tmp_path / "clean").store)
    np.testing.assert_array_equal(np.asarray(Store.open(out).matrix("text")[0]),
                                  np.asarray(clean.matrix("text")[0]))


def _matrices(tmp_path, old_rows, new_rows):
    from numpy.lib.format import open_memmap

    source = np.random.default_rng(0).standard_normal((old_rows, 6)).astype(np.float32)
    np.save(tmp_path / "old.npy", source)
    open_memmap(tmp_path / "new.npy", mode="w+", dtype="float32", shape=(new_rows, 6))
    return source


@pytest.mark.parametrize("kernel", [True, False], ids=["copy_file_range", "read-write"])
def test_copy_rows_copies_runs_file_to_file_and_leaves_other_rows_zero(tmp_path, monkeypatch,
                                                                        kernel):
    source = _matrices(tmp_path, 50, 60)
    calls = []

    def refusing(*args):  # a file system without in-kernel copies
        calls.append(args)
        raise OSError(errno.EXDEV, "cross-device")

    real = getattr(os, "copy_file_range", None)
    if kernel and real is None:
        pytest.skip("no os.copy_file_range on this system")
    monkeypatch.setattr(os, "copy_file_range",
                        (lambda *a: calls.append(a) or real(*a)) if kernel else refusing,
                        raising=False)
    # item 20-24 removed, 5 new items at 20-24 and 50-59 left to encode: two runs of rows
    new_rows = np.r_[0:20, 25:50]
    old_rows = np.r_[0:20, 20:45]
    copy_rows(tmp_path / "old.npy", tmp_path / "new.npy", new_rows, old_rows)
    expected = np.zeros((60, 6), np.float32)
    expected[new_rows] = source[old_rows]
    np.testing.assert_array_equal(np.load(tmp_path / "new.npy"), expected)
    assert len(calls) == (2 if kernel else 1)  # one call per run, not per row; refused once


def test_copy_rows_gathers_scattered_rows(tmp_path, monkeypatch):
    source = _matrices(tmp_path, 40, 40)
    monkeypatch.setattr(os, "copy_file_range", None, raising=False)  # must not be needed
    old_rows = np.random.default_rng(1).permutation(40)[:30]
    new_rows = np.arange(30)
    copy_rows(tmp_path / "old.npy", tmp_path / "new.npy", new_rows, old_rows)
    expected = np.zeros((40, 6), np.float32)
    expected[:30] = source[old_rows]
    np.testing.assert_array_equal(np.load(tmp_path / "new.npy"), expected)


def test_items_without_any_vector_are_compacted_out_row_for_row(tmp_path):
    """A failure in the middle of the catalog (NaN from the encoder) leaves a gap the
    publish closes: the rows after it move up, unchanged."""
    rows = _titles(300)
    catalog = make_catalog(tmp_path / "cat", rows)
    nan = {"text": f"local:{FAKE}:NaNText"}  # the first input of each batch fails
    report = encode(catalog, tmp_path / "s", encoders=nan, batch_size=100, chunk_size=100)
    failed = {p.id for p in report.skipped}
    assert failed == {"i0", "i100", "i200"}
    store = Store.open(tmp_path / "s")
    assert store.ids == [r["id"] for r in rows if r["id"] not in failed]
    clean = Store.open(_encode(catalog, tmp_path / "clean").store)
    keep = [clean.row(i) for i in store.ids]
    np.testing.assert_array_equal(np.asarray(store.matrix("text")[0]),
                                  np.asarray(clean.matrix("text")[0])[keep])
