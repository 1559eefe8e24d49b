"""The store's reading API and its refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FAKE_ENCODERS, make_catalog
from mmrec.encoding import encode
from mmrec.enums import Modality
from mmrec.errors import StoreError
from mmrec.store import Store


@pytest.fixture
def store(tmp_path, media, rows):
    encode(make_catalog(media, rows), tmp_path / "s", encoders=FAKE_ENCODERS)
    return Store.open(tmp_path / "s")


def test_round_trip_and_raw_norms(store):
    from fake_encoders import _seeded

    # enum members, not strings, in the catalog's modality order
    assert store.modalities == [Modality.TEXT, Modality.IMAGE, Modality.AUDIO]
    assert all(type(m) is Modality for m in store.modalities)
    assert store.encoders()["text"]["dim"] == 8
    ids, unit = store.vectors("text")
    raw = unit * store.norms("text")[[store.row(i) for i in ids], None]
    texts = {"r1": "Red apple. A crisp fruit", "t1": "Only text. No media at all"}
    for item_id, text in texts.items():
        np.testing.assert_allclose(raw[ids.index(item_id)], _seeded(text.encode(), 8).numpy(),
                                   rtol=1e-5)
    full, mask = store.matrix("audio")
    assert full.shape == (5, 4) and mask.tolist() == [True, True, False, False, True]
    assert not full[~mask].any()
    assert store.items()["r1"] == {"title": "Red apple", "description": "A crisp fruit", "price": 3}


def test_refusals(tmp_path, store):
    with pytest.raises(StoreError, match="store not found"):
        Store.open(tmp_path / "nothing")
    with pytest.raises(StoreError, match="unknown item id 'zz'"):
        store.row("zz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="manifest.json is missing"):
        Store.open(tmp_path / "empty")
    manifest = json.loads((store.path / "manifest.json").read_text())
    for change, message in [({"format": "other"}, "is not an mmrec store"),
                            ({"format_version": 99}, "newer mmrec")]:
        (store.path / "manifest.json").write_text(json.dumps({**manifest, **change}))
        with pytest.raises(StoreError, match=message):
            Store.open(store.path)
    (store.path / "manifest.json").write_text("{broken")
    with pytest.raises(StoreError, match="manifest.json: damaged file"):
        Store.open(store.path)


def test_absent_modality(tmp_path, media):
    encode(make_catalog(media, [{"id": "a", "title": "x"}]), tmp_path / "t", encoders=FAKE_ENCODERS)
    with pytest.raises(StoreError, match="has no image vectors \\(it has: text\\)"):
        Store.open(tmp_path / "t").vectors("image")


def test_publish_dir_replaces_and_keeps_the_old_copy_until_the_new_one_is_in(tmp_path, monkeypatch):
    import os

    from mmrec import atomic

    final, staging = tmp_path / "out", tmp_path / "stage"
    final.mkdir()
    (final / "v").write_text("old")
    staging.mkdir()
    (staging / "v").write_text("new")
    real = os.replace
    calls = []

    def failing_second(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing_second)
    with pytest.raises(OSError):
        atomic.publish_dir(staging, final)
    monkeypatch.setattr(atomic.os, "replace", real)
    assert (final / "v").read_text() == "old"           # rolled back
    atomic.publish_dir(staging, final)
    assert (final / "v").read_text() == "new" and not staging.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no copy left aside
