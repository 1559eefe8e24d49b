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
