from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
FAKE = HERE / "fake_encoders.py"
FAKE_ENCODERS = {
    "text": f"local:{FAKE}:FakeText",
    "image": f"local:{FAKE}:FakeImage",
    "audio": f"local:{FAKE}:FakeAudio",
}
FAKE_OPTIONS = [
    "--text-encoder", FAKE_ENCODERS["text"],
    "--image-encoder", FAKE_ENCODERS["image"],
    "--audio-encoder", FAKE_ENCODERS["audio"],
]


@pytest.fixture(autouse=True)
def mmrec_home(tmp_path, monkeypatch):
    home = tmp_path / "mmrec-home"
    monkeypatch.setenv("MMREC_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MMREC_FAKE_DELAY", raising=False)
    return home


def one_line_error(result, *needles):
    """A CLI result that failed as users should see it: exit 1, one ``error:`` line first
    on stderr (containing each of ``needles``), no traceback; returns that line."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith("error: "), result.stderr
    for needle in needles:
        assert needle in first, first
    return first


def write_png(path: Path, color: tuple[int, int, int], size: int = 32) -> Path:
    from PIL import Image

    img = Image.new("RGB", (size, size), color)
    img.putpixel((0, 0), (255 - color[0], 0, 0))  # not flat: some structure
    img.save(path)
    return path


def write_wav(path: Path, freq: float, seconds: float = 0.5, sr: int = 16000) -> Path:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return path


def make_catalog(root: Path, rows: list[dict], fmt: str = "jsonl") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"catalog.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import csv

        fields = sorted({k for r in rows for k in r})
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return path


@pytest.fixture
def media(tmp_path):
    """A catalog directory with real small PNG and WAV files."""
    root = tmp_path / "cat"
    (root / "img").mkdir(parents=True)
    (root / "snd").mkdir()
    colors = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 210)}
    for name, color in colors.items():
        write_png(root / "img" / f"{name}.png", color)
    for name, freq in {"low": 220.0, "mid": 440.0, "high": 880.0}.items():
        write_wav(root / "snd" / f"{name}.wav", freq)
    return root


@pytest.fixture
def rows():
    return [
        {"id": "r1", "title": "Red apple", "description": "A crisp fruit", "image": "img/red.png",
         "audio": "snd/low.wav", "price": 3},
        {"id": "g1", "title": "Green leaf", "description": "From a tree", "image": "img/green.png",
         "audio": "snd/mid.wav"},
        {"id": "b1", "title": "Blue sea", "description": "Waves", "image": "img/blue.png"},
        {"id": "t1", "title": "Only text", "description": "No media at all"},
        {"id": "s1", "title": "A sound", "audio": "snd/high.wav"},
    ]


def train_matrix(data) -> np.ndarray:
    """The dense (users, items) 0/1 matrix of a Data's training part: the reference the
    item-item models' blocked Gram matrix (``itemitem.train_gram``) is checked against."""
    from mmrec.recsys.splits import TRAIN

    train = data.split.part == TRAIN
    x = np.zeros((data.n_users, data.n_items), dtype=np.float32)
    x[data.users[train], data.items[train]] = 1.0
    return x
