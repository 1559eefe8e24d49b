"""`mmrec encode` through the CLI: formats, summary, incremental runs and every bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FAKE, FAKE_OPTIONS, make_catalog, write_png
from mmrec.cli.main import app
from mmrec.store import Store

runner = CliRunner()


def encode(catalog, out, *extra):
    return runner.invoke(app, ["encode", str(catalog), "--out", str(out), *FAKE_OPTIONS,
                               "--json", *extra])


def summary(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_encode_writes_unit_vectors_per_modality(tmp_path, media, rows, fmt):
    catalog = make_catalog(media, rows, fmt)
    report = summary(encode(catalog, tmp_path / "store"))
    assert report["items"] == 5
    assert report["vectors"] == {"text": 5, "image": 3, "audio": 3}
    assert report["skipped"] == []
    store = Store.open(tmp_path / "store")
    ids, matrix = store.vectors("image")
    assert ids == ["r1", "g1", "b1"]
    assert matrix.shape == (3, 6)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)
    assert store.items()["r1"]["title"] == "Red apple"
    assert store.manifest["modalities"]["text"]["encoder"].endswith("FakeText")


def test_rerun_encodes_nothing_and_changes_only_what_changed(tmp_path, media, rows):
    catalog = make_catalog(media, rows)
    first = summary(encode(catalog, tmp_path / "s"))
    before = Store.open(tmp_path / "s").vectors("text")[1]
    again = summary(encode(catalog, tmp_path / "s"))
    assert again["encoded"] == {"text": 0, "image": 0, "audio": 0}
    assert again["reused"] == first["vectors"]
    np.testing.assert_array_equal(Store.open(tmp_path / "s").vectors("text")[1], before)

    rows[0]["title"] = "Red cherry"                  # text changed
    write_png(media / "img" / "green.png", (0, 90, 0))  # image file changed
    del rows[2]                                      # item removed
    changed = summary(encode(make_catalog(media, rows), tmp_path / "s"))
    assert changed["encoded"] == {"text": 1, "image": 1, "audio": 0}
    assert changed["removed"] == 1
    store = Store.open(tmp_path / "s")
    assert "b1" not in store.ids and len(store) == 4


def test_modalities_option_keeps_other_modalities(tmp_path, media, rows):
    catalog = make_catalog(media, rows)
    summary(encode(catalog, tmp_path / "s"))
    report = summary(encode(catalog, tmp_path / "s", "--modalities", "text"))
    assert report["encoded"]["text"] == 0 and report["vectors"]["image"] == 3


def test_text_fields(tmp_path, media, rows):
    catalog = make_catalog(media, rows)
    summary(encode(catalog, tmp_path / "a", "--text-fields", "title"))
    summary(encode(catalog, tmp_path / "b"))
    a = Store.open(tmp_path / "a").vectors("text")[1]
    b = Store.open(tmp_path / "b").vectors("text")[1]
    assert not np.allclose(a[0], b[0])  # title only vs title + description


def test_bad_rows_are_skipped_and_reported(tmp_path, media, rows):
    (media / "img" / "trunc.png").write_bytes((media / "img" / "red.png").read_bytes()[:60])
    (media / "snd" / "noise.wav").write_bytes(b"RIFF\x00\x00garbage-not-audio" * 10)
    bad = [
        {"id": "m1", "title": "missing image", "image": "img/nope.png"},
        {"id": "t2", "title": "truncated", "image": "img/trunc.png"},
        {"id": "a2", "title": "bad audio", "audio": "snd/noise.wav"},
        {"id": "e1", "title": "   ", "description": ""},
        {"title": "no id"},
    ]
    report = summary(encode(make_catalog(media, rows + bad), tmp_path / "s"))
    reasons = {(p["row"], p["id"], p["modality"]): p["reason"] for p in report["skipped"]}
    assert reasons[(6, "m1", "image")].startswith("file not found")
    assert "image" in reasons[(7, "t2", "image")]
    assert "audio" in reasons[(8, "a2", "audio")]
    assert reasons[(9, "e1", "text")] == "empty text"
    assert reasons[(10, None, None)] == "missing id"
    rows_reported = [p["row"] for p in report["skipped"]]
    assert rows_reported == sorted(rows_reported)  # catalog and decoding problems interleaved
    store = Store.open(tmp_path / "s")
    assert {"m1", "t2", "a2"} <= set(store.ids)  # their text was still encoded
    assert "e1" not in store.ids
    # the same bad inputs are reported again without being decoded again
    again = summary(encode(make_catalog(media, rows + bad), tmp_path / "s"))
    assert again["encoded"] == {"text": 0, "image": 0, "audio": 0}
    assert len(again["skipped"]) == len(report["skipped"])


@pytest.mark.parametrize("bad_row, message", [
    ({"id": "x", "title": "t", "image": "img/nope.png"}, "row 2 (id x): image: file not found"),
    ({"id": "x", "title": ""}, "row 2 (id x): text: empty text"),
])
def test_on_error_fail_exits_1_with_one_line(tmp_path, media, bad_row, message):
    catalog = make_catalog(media, [{"id": "ok", "title": "fine"}, bad_row])
    result = encode(catalog, tmp_path / "s", "--on-error", "fail")
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "s" / "manifest.json").exists()


def test_on_error_fail_on_undecodable_image(tmp_path, media):
    (media / "img" / "junk.png").write_bytes(b"not a png at all")
    catalog = make_catalog(media, [{"id": "ok", "title": "fine"},
                                   {"id": "j", "title": "junk", "image": "img/junk.png"}])
    result = encode(catalog, tmp_path / "s", "--on-error", "fail")
    assert result.exit_code == 1
    assert "row 2 (id j): image: not an image" in result.output


@pytest.mark.parametrize("content, fmt, message", [
    ('{"id": "a", "title": "x"}\n{"id": "a", "title": "y"}\n', "jsonl", "duplicate id 'a' in rows 1 and 2"),
    ("", "jsonl", "the catalog is empty"),
    ("id,title\n", "csv", "the catalog is empty"),
    ('{oops\n[1, 2]\n', "jsonl", "no usable item: row 1: invalid JSON"),
    ('id,title\na,x\nb,y,extra\n', "csv", None),
])
def test_catalog_level_errors(tmp_path, content, fmt, message):
    catalog = tmp_path / f"c.{fmt}"
    catalog.write_text(content)
    result = encode(catalog, tmp_path / "s")
    if message is None:  # an extra CSV value is a row problem, skipped and reported
        report = summary(result)
        assert report["skipped"][0]["row"] == 3 and "beyond the header" in report["skipped"][0]["reason"]
        return
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) <= 2  # the error and at most a hint
    assert "Traceback" not in result.output


def test_an_invalid_json_line_is_a_bad_row_not_the_end_of_the_run(tmp_path):
    catalog = tmp_path / "c.jsonl"
    catalog.write_text('{"id": "a", "title": "x"}\n{oops\n{"id": "b", "title": "y"}\n'
                       '"just a string"\n{"id": "c", "title": "", "image": "nope.png"}\n')
    report = summary(encode(catalog, tmp_path / "s"))  # --on-error skip: the default
    assert report["items"] == 2
    assert [(p["row"], p["reason"]) for p in report["skipped"]] == [
        (2, "invalid JSON (Expecting property name enclosed in double quotes)"),
        (4, "expected a JSON object"),
        (5, "empty text"),
        (5, "file not found: nope.png"),
    ]
    failed = encode(catalog, tmp_path / "f", "--on-error", "fail")
    assert failed.exit_code == 1 and failed.stdout == ""
    assert "row 2: invalid JSON" in failed.output and "(and 3 more)" in failed.output


@pytest.mark.parametrize("args, message", [
    (["missing.jsonl"], "catalog not found"),
    (["."], ". is a directory; expected a catalog file (.jsonl, .csv or .tsv)"),
    (["c.jsonl", "--text-fields", "title,colour"], "unknown text field(s) colour"),
    (["c.jsonl", "--modalities", "smell"], "unknown modality 'smell'"),
    (["c.jsonl", "--modalities", "audio"], "no item has audio"),
    (["c.txt"], "unknown catalog format"),
    (["c.jsonl", "--text-encoder", "nope:thing"], "unknown encoder 'nope:thing'"),
    (["c.jsonl", "--text-encoder", "builtin:bert-huge"], "builtin encoders: builtin:minilm-l6-v2"),
    (["c.jsonl", "--text-encoder", "local:/nowhere/enc.py:X"], "local encoder file not found"),
    (["c.jsonl", "--text-encoder", f"local:{FAKE}:FakeImage"], "encodes image, not text"),
    (["c.jsonl", "--preset", "huge"], "unknown preset 'huge'; known presets: default"),
])
def test_option_errors_are_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.jsonl").write_text('{"id": "a", "title": "x"}\n')
    (tmp_path / "c.txt").write_text("x")
    result = runner.invoke(app, ["encode", *args, "--out", str(tmp_path / "s")]
                           + (FAKE_OPTIONS[2:] if "--text-encoder" in args else FAKE_OPTIONS))
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_out_must_be_a_store_directory(tmp_path, media, rows):
    catalog = make_catalog(media, rows)
    (tmp_path / "file").write_text("x")
    assert "is a file" in encode(catalog, tmp_path / "file").output
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("mine")
    result = encode(catalog, tmp_path / "dir")
    assert result.exit_code == 1 and "not an mmrec store" in result.output


def test_store_from_other_encoder_is_refused(tmp_path, media, rows):
    catalog = make_catalog(media, rows)
    summary(encode(catalog, tmp_path / "s"))
    result = encode(catalog, tmp_path / "s", "--text-encoder", f"local:{FAKE}:NaNText")
    assert result.exit_code == 1
    assert "holds 8-d text vectors from" in result.output


def test_nan_vectors_are_skipped(tmp_path, media):
    catalog = make_catalog(media, [{"id": "a", "title": "x"}, {"id": "b", "title": "yy"}])
    result = runner.invoke(app, ["encode", str(catalog), "--out", str(tmp_path / "s"), "--json",
                                 "--text-encoder", f"local:{FAKE}:NaNText"])
    report = summary(result)
    assert [p["reason"] for p in report["skipped"]] == ["encoder returned NaN or infinite values"]
    assert report["vectors"]["text"] == 1


def test_human_summary_and_debug_traceback(tmp_path, media, rows):
    catalog = make_catalog(media, rows)
    result = runner.invoke(app, ["encode", str(catalog), "-o", str(tmp_path / "s"), *FAKE_OPTIONS])
    assert result.exit_code == 0
    assert "5 items" in result.stdout and "FakeText" in result.stdout
    debug = runner.invoke(app, ["--debug", "encode", "nope.jsonl", "-o", str(tmp_path / "x")])
    from mmrec.errors import CatalogError

    assert isinstance(debug.exception, CatalogError)  # raised for the traceback, not rendered
    plain = runner.invoke(app, ["encode", "nope.jsonl", "-o", str(tmp_path / "x")])
    assert isinstance(plain.exception, SystemExit) and plain.exit_code == 1


def test_encoders_lists_the_registry():
    result = runner.invoke(app, ["encoders", "--json"])
    assert result.exit_code == 0
    names = {e["name"]: e for e in json.loads(result.stdout)}
    assert names["builtin:minilm-l6-v2"]["dim"] == 384 and names["builtin:minilm-l6-v2"]["offline"]
    assert names["builtin:efficientnet-lite0"]["dim"] == 1280
    assert names["builtin:aisfx"] == {"name": "builtin:aisfx", "modality": "audio", "dim": 512,
                                      "offline": True, "description": names["builtin:aisfx"]["description"]}


def test_a_second_writer_is_refused(tmp_path, media, rows):
    from mmrec.store import write_lock

    catalog = make_catalog(media, rows)
    with write_lock(tmp_path / "s"):
        result = encode(catalog, tmp_path / "s")
    assert result.exit_code == 1 and "being written by another mmrec process" in result.output
    summary(encode(catalog, tmp_path / "s"))  # lock released: a later run goes through


def test_failed_first_run_can_be_rerun(tmp_path, media):
    (media / "img" / "junk.png").write_bytes(b"junk")
    rows = [{"id": "j", "title": "junk", "image": "img/junk.png"}]
    assert encode(make_catalog(media, rows), tmp_path / "s", "--on-error", "fail").exit_code == 1
    rows[0]["image"] = "img/red.png"
    assert summary(encode(make_catalog(media, rows), tmp_path / "s"))["vectors"]["image"] == 1


def test_user_data_is_not_parsed_as_markup(tmp_path, media):
    catalog = make_catalog(media, [{"id": "[/x]", "title": "[bold]Frog"}])
    result = runner.invoke(app, ["encode", str(catalog), "-o", str(tmp_path / "s"), *FAKE_OPTIONS])
    assert result.exit_code == 0, result.output
    missing = runner.invoke(app, ["encode", str(tmp_path / "[/x].jsonl"), "-o", str(tmp_path / "t")])
    assert missing.exit_code == 1 and "catalog not found:" in missing.output
    assert "[/x].jsonl" in missing.output and "Traceback" not in missing.output


def test_changed_media_outside_modalities_is_reported_not_silently_dropped(tmp_path, media, rows):
    catalog = make_catalog(media, rows)
    summary(encode(catalog, tmp_path / "s"))
    write_png(media / "img" / "red.png", (9, 9, 9))
    report = summary(encode(catalog, tmp_path / "s", "--modalities", "text"))
    assert report["vectors"]["image"] == 2
    [problem] = [p for p in report["skipped"] if p["modality"] == "image"]
    assert problem["id"] == "r1" and "not re-encoded without --modalities image" in problem["reason"]


def test_damaged_store_and_wrong_encoder_dims_are_one_line_errors(tmp_path, media, rows):
    catalog = make_catalog(media, rows)
    summary(encode(catalog, tmp_path / "s"))
    store = Store.open(tmp_path / "s")
    (store.data_dir / "image.npy").write_bytes(b"\x93NUMPY trunc")
    result = encode(catalog, tmp_path / "s")
    assert result.exit_code == 1 and "image.npy: damaged file" in result.output
    assert "internal error" not in result.output

    (tmp_path / "bad.py").write_text(
        "import torch\nfrom mmrec.encoders.base import Encoder\nfrom mmrec.enums import Modality\n"
        "class Liar(Encoder):\n    modality = Modality.TEXT\n    dim = 5\n"
        "    def encode_batch(self, inputs):\n        return torch.ones(len(inputs), 7)\n")
    result = runner.invoke(app, ["encode", str(catalog), "-o", str(tmp_path / "t"),
                                 "--text-encoder", f"local:{tmp_path / 'bad.py'}:Liar"])
    assert result.exit_code == 1
    assert "returned shape (5, 7) for 5 inputs; it declares 5-d vectors" in result.output


def test_library_and_os_errors_are_one_line(tmp_path, media, rows):
    from mmrec.encoding import encode as encode_lib
    from mmrec.errors import CatalogError, ConfigError

    catalog = make_catalog(media, rows)
    with pytest.raises(ConfigError, match="unknown modality 'video'; choose from text, image, audio"):
        encode_lib(catalog, tmp_path / "s", modalities=["video"])
    with pytest.raises(ConfigError, match="unknown preset '../heads/config'"):
        encode_lib(catalog, tmp_path / "s", preset="../heads/config")
    (tmp_path / "nothing.csv").write_text("title\nno ids here\n")
    with pytest.raises(CatalogError, match="no usable item: row 2: missing id"):
        encode_lib(tmp_path / "nothing.csv", tmp_path / "s")
    (tmp_path / "c.jsonl").write_text("x")
    result = encode(catalog, tmp_path / "c.jsonl" / "sub")  # a path through a file
    assert result.exit_code == 1 and "internal error" not in result.output
    assert "Not a directory" in result.output or "is a file" in result.output


def test_rerun_remembers_text_fields(tmp_path, media, rows):
    catalog = make_catalog(media, rows)
    summary(encode(catalog, tmp_path / "s", "--text-fields", "title"))
    assert summary(encode(catalog, tmp_path / "s"))["encoded"]["text"] == 0
    assert summary(encode(catalog, tmp_path / "s", "--text-fields", "title,description"))["encoded"]["text"] == 4


def test_a_local_encoder_has_one_name_however_its_path_is_spelt(tmp_path, media, rows, monkeypatch):
    catalog = make_catalog(media, rows)
    monkeypatch.chdir(FAKE.parent)
    relative = ["--text-encoder", f"local:{FAKE.name}:FakeText", "--modalities", "text"]
    first = runner.invoke(app, ["encode", str(catalog), "-o", str(tmp_path / "s"), "--json", *relative])
    assert summary(first)["encoders"]["text"] == f"local:{FAKE}:FakeText"
    again = runner.invoke(app, ["encode", str(catalog), "-o", str(tmp_path / "s"), "--json",
                                "--text-encoder", f"local:{FAKE}:FakeText", "--modalities", "text"])
    assert summary(again)["encoded"]["text"] == 0


@pytest.mark.slow
def test_the_builtin_encoders_write_nothing_foreign_to_stderr(tmp_path):
    """CI logs carry only mmrec's lines: no transformers "Loading weights" bar, no warnings."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    demo = Path(__file__).resolve().parents[1] / "assets" / "demo"
    lines = (demo / "catalog.jsonl").read_text().splitlines()[:2]
    for folder in ("images", "audio"):
        shutil.copytree(demo / folder, tmp_path / folder)
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    result = subprocess.run([sys.executable, "-m", "mmrec", "encode", str(tmp_path / "c.jsonl"),
                             "--out", str(tmp_path / "s"), "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["encoded"] == {"text": 2, "image": 2, "audio": 2}
    assert result.stderr == ""
