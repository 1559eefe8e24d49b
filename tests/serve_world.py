"""A small catalog with real pictures and sounds, its store, aligner and model: what the
handle, API, server and browser tests serve (fake encoders, built in a few seconds)."""
from __future__ import annotations

import types
from pathlib import Path

from typer.testing import CliRunner

from conftest import FAKE_OPTIONS, make_catalog, write_png, write_wav
from mmrec.cli.main import app

N_ITEMS, N_USERS = 24, 12
COLOURS = ["red", "green", "blue", "yellow"]
RGB = {"red": (220, 30, 30), "green": (30, 190, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


def invoke(*args: object):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def _rows(root: Path) -> list[dict]:
    (root / "img").mkdir(parents=True)
    (root / "snd").mkdir()
    rows = []
    for i in range(N_ITEMS):
        colour = COLOURS[i % len(COLOURS)]
        shade = tuple(max(0, c - 6 * (i // len(COLOURS))) for c in RGB[colour])
        write_png(root / "img" / f"{i}.png", shade, size=64)
        row = {"id": f"item{i}", "title": f"A {colour} thing, number {i}",
               "description": f"{colour} object {i}", "image": f"img/{i}.png", "colour": colour}
        if i % 3 == 0:
            write_wav(root / "snd" / f"{i}.wav", 200.0 + 40 * i)
            row["audio"] = f"snd/{i}.wav"
        rows.append(row)
    return rows


def _interactions(path: Path) -> Path:
    """User u takes items of colour u % 4, one a step in time."""
    lines = ["user,item,rating,timestamp"]
    for u in range(N_USERS):
        pool = [i for i in range(N_ITEMS) if i % len(COLOURS) == u % len(COLOURS)]
        for t, i in enumerate(pool[(u // 4) % 2 :][:5]):
            lines.append(f"u{u},item{i},5,{1000 + 10 * t + u}")
    path.write_text("\n".join(lines) + "\n")
    return path


def build(root: Path) -> types.SimpleNamespace:
    catalog = make_catalog(root / "cat", _rows(root / "cat"))
    invoke("encode", catalog, "--out", root / "store", *FAKE_OPTIONS)
    invoke("align", root / "store", "--out", root / "aligner", "--steps", "30",
           "--batch-size", "8")
    inter = _interactions(root / "inter.csv")
    invoke("train", "--store", root / "store", "--interactions", inter, "--out", root / "model",
           "--epochs", "3", "--batch-size", "32", "--warmup", "2")
    return types.SimpleNamespace(root=root, catalog=catalog, store=root / "store",
                                 aligner=root / "aligner", model=root / "model", inter=inter)


_BUILT: dict[str, types.SimpleNamespace] = {}


def shared(tmp_path_factory) -> types.SimpleNamespace:
    """One world per test session: every serve test module reads it, none writes it."""
    if "world" not in _BUILT:
        _BUILT["world"] = build(tmp_path_factory.mktemp("serve-world"))
    return _BUILT["world"]
