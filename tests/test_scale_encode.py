"""Encode at scale: what a re-run may not do (re-read media, rewrite the store) and how
vectors reach the disk (by chunk into a memory map, not through one in-memory matrix)."""
from __future__ import annotations

import os

import numpy as np

from conftest import FAKE_ENCODERS, make_catalog, write_png
from mmrec.catalog import Item
from mmrec.encoding import encode
from mmrec.store import Journal, Store


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
