from __future__ import annotations

import numpy as np
import pytest

import mmrec.catalog as catalog_module
from conftest import write_wav
from mmrec.catalog import load_audio, load_image, read_catalog
from mmrec.errors import CatalogError, InputError


def test_image_orientation_transparency_and_size_limit(tmp_path, monkeypatch):
    from PIL import Image

    img = Image.new("RGBA", (40, 20), (0, 0, 0, 0))        # fully transparent, wide
    exif = img.getexif()
    exif[0x0112] = 6                                         # EXIF: rotate 90° on display
    img.save(tmp_path / "a.png", exif=exif)
    out = load_image(tmp_path / "a.png")
    assert out.mode == "RGB" and out.size == (20, 40)        # transposed
    assert out.getpixel((5, 5)) == (255, 255, 255)           # transparency on white
    monkeypatch.setattr(catalog_module, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(InputError, match="image too large \\(40x20 pixels\\)"):
        load_image(tmp_path / "a.png")


def test_audio_is_mono_and_resampled(tmp_path):
    import soundfile as sf

    t = np.arange(16000) / 16000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype(np.float32)
    sf.write(tmp_path / "s.wav", stereo, 16000)
    wave = load_audio(tmp_path / "s.wav", 8000)
    assert wave.dtype == np.float32 and wave.shape == (8000,)
    assert 0.2 < np.abs(wave).max() <= 0.51                  # the two channels averaged
    assert load_audio(write_wav(tmp_path / "m.wav", 220, sr=8000), 8000).shape == (4000,)
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 8000)
    with pytest.raises(InputError, match="no samples"):
        load_audio(tmp_path / "empty.wav", 8000)


def test_tsv_bom_lists_and_metadata(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("\ufeffid\ttitle\tbrand\n1\tLamp\tAcme\n2\t\tNoName\n", encoding="utf-8")
    cat = read_catalog(path)
    assert [i.id for i in cat.items] == ["1"]
    assert cat.items[0].metadata == {"title": "Lamp", "brand": "Acme"}
    assert [(p.row, p.id, p.reason) for p in cat.problems] == [(3, "2", "empty text")]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"id": 7, "title": "Mug", "tags": ["kitchen", "cup"]}\n')
    item = read_catalog(jsonl).items[0]
    assert item.id == "7" and item.text == "Mug. kitchen, cup"


def test_image_only_item_has_no_text_problem(tmp_path):
    from conftest import write_png

    write_png(tmp_path / "x.png", (1, 2, 3))
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "image": "x.png"}\n')
    cat = read_catalog(path)
    assert cat.problems == [] and cat.items[0].text is None and cat.items[0].image.name == "x.png"


def test_not_utf8(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(b"id,title\n1,caf\xe9\n")
    with pytest.raises(CatalogError, match="not UTF-8"):
        read_catalog(path)


def test_row_numbers_survive_multiline_fields_and_odd_characters(tmp_path):
    from mmrec.catalog import read_interactions

    csv_path = tmp_path / "c.csv"
    csv_path.write_text('id, title\n1,"two\nlines"\n2,\n3,form\x0cfeed\n')
    cat = read_catalog(csv_path)
    assert [(i.id, i.row, i.text) for i in cat.items] == [("1", 2, "two\nlines"), ("3", 5, "form\x0cfeed")]
    assert [(p.row, p.id) for p in cat.problems] == [(4, "2")]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"id": "a", "title": "x\u2028y"}\n{"id": "b", "title": "z"}\n', encoding="utf-8")
    assert [(i.id, i.row) for i in read_catalog(jsonl).items] == [("a", 1), ("b", 2)]
    inter = tmp_path / "r.inter"
    inter.write_text("user_id:token\titem_id:token\nu1\ta\nu1\tzz\n")
    found = read_interactions(inter, known_items={"a"})
    assert found.summary()["unknown_items"] == 1


def test_an_unparsable_csv_row_is_reported_and_the_rows_after_it_keep_their_numbers(tmp_path):
    import csv

    path = tmp_path / "c.csv"
    huge = "x" * (csv.field_size_limit() + 1)
    path.write_text(f'id,title\na,ok\nb,{huge}\nc,"two\nlines"\nd,last\n')
    cat = read_catalog(path)
    assert [(i.id, i.row) for i in cat.items] == [("a", 2), ("c", 4), ("d", 6)]
    assert [(p.row, p.reason) for p in cat.problems] == [
        (3, "unreadable CSV row (field larger than field limit (131072))")]


def test_a_directory_is_not_a_catalog(tmp_path):
    (tmp_path / "items.jsonl").write_text('{"id": "a", "title": "x"}\n')
    with pytest.raises(CatalogError, match="is a directory; expected a catalog file") as info:
        read_catalog(tmp_path)
    assert info.value.hint == "catalog files in it: items.jsonl"


def test_invalid_json_interactions_are_problems_too(tmp_path):
    from mmrec.catalog import read_interactions

    path = tmp_path / "i.jsonl"
    path.write_text('{"user": "u1", "item": "a"}\nnot json\n{"user": "u2", "item": "a"}\n')
    found = read_interactions(path, known_items={"a"})
    assert found.users == ["u1", "u2"]
    assert [(p.row, p.reason) for p in found.problems] == [(2, "invalid JSON (Expecting value)")]
    path.write_text("nope\n")
    with pytest.raises(CatalogError, match="no interactions \\(first problem: row 1: invalid JSON"):
        read_interactions(path)
