#!/usr/bin/env python3
"""Fetch and prepare the real benchmark data for cross-modal alignment (``bench/data/``).

Every dataset is built from packages fetched by name with the ordinary package clients
and written as an mmrec catalog (JSONL; ``image`` / ``audio`` paths relative to it).
``bench/data/`` is gitignored: nothing here is committed or shipped.

Datasets (``python scripts/fetch_bench_data.py {tuxpaint,openmoji,gm,openclipart,all}``):

``bench/data/tuxpaint/catalog.jsonl`` -- Debian ``tuxpaint-stamps-default``
    (Tux Paint's stamps, GPL-2, per the package's ``copyright`` file).  One item per
    stamp (~950): ``title`` (cleaned file name), ``description`` (the stamp's English
    caption, first line of its ``.txt``), ``category`` (stamp directory, e.g.
    ``animals/mammals``), ``image`` (PNG, or the SVG rendered; fit in 256 px on white)
    and, for ~100 stamps, ``audio``: the stamp's sound effect, copied as is (Ogg
    Vorbis).  Narration is not used: the ``*_desc*`` sounds are spoken captions, and
    the sounds of ``symbols/math`` (digits), ``symbols/alphabets`` (letters) and the
    dreidels (Hebrew letters) are spoken names, so those stamps get no audio; nor do
    the four stamps whose sound file is digital silence.

``bench/data/openmoji/catalog.jsonl`` -- npm ``openmoji`` (OpenMoji, CC BY-SA 4.0,
    https://openmoji.org; attribution: "All emojis designed by OpenMoji - the
    open-source emoji and icon project. License: CC BY-SA 4.0").  ~2.4k items: the
    colour SVGs rendered to 160 px PNG on white; ``title`` (annotation), ``tags``
    (Unicode CLDR tags + OpenMoji tags), ``category`` (group/subgroup), ``emoji``.
    Skin-tone variants (and the skin-tone modifier components) are dropped, and so are
    the 26 bare regional-indicator letters.

``bench/data/gm/catalog.jsonl`` -- General MIDI instrument renders: the 128 GM programs
    plus the 47 GM percussion-kit sounds, each a short phrase (about 3 s) written here
    as a Standard MIDI File and rendered by FluidSynth with Debian
    ``timgm6mb-soundfont`` (TimGM6mb.sf2, GPL-2) to 44.1 kHz mono 16-bit WAV,
    peak-normalised.  ``title`` (GM name), ``description`` (e.g. "Acoustic Grand Piano,
    a piano instrument"), ``category`` (GM family, or "Drum Kit"), ``program``/``note``.
    NEEDS the ``fluidsynth`` program: ``apt-get install fluidsynth`` (Debian package,
    LGPL-2.1; only used to render, never an mmrec dependency).  This script checks for
    it and says so.

``bench/data/openclipart/catalog.jsonl`` -- Debian ``openclipart-svg`` (Open Clip Art
    Library 0.18; every picture dedicated to the public domain, per the package's
    ``copyright`` file).  Several thousand image+caption pairs to train the default
    projection heads: the SVGs rendered to fit 224 px on white.  Text from the SVG's
    own metadata (``dc:title``, ``dc:description``, ``dc:subject`` keywords) and its
    file name; collection-wide titles ("Part of the Flat Icon Collection", "Clipart by
    ...") are replaced by the file name; author names, numbers and ids are removed;
    items left without a real English word (checked against Debian ``wamerican``'s
    word list, SCOWL, permissive licence) are dropped, and so are exact duplicates,
    empty renders, and more than 3 items with the same caption.  ``title``,
    ``description`` (when meaningful), ``tags``, ``category`` (directory).

Downloads are kept in ``bench/data/_downloads/`` and reused (delete a file there to
fetch it again).  A dataset whose catalog already exists is not rebuilt unless
``--force`` is given.  Each dataset is built in a temporary directory next to its place
and renamed into place, so an interrupted run leaves the previous one intact; what
other tools wrote beside a catalog (encoded stores, aligners) is kept across rebuilds.

Needs: ``apt-get`` (run ``apt-get update`` once first) and ``dpkg-deb``; ``npm`` (for
openmoji); ``fluidsynth`` (for gm); Python packages Pillow, numpy, soundfile and the
SVG renderer ``resvg-py`` (``import resvg_py``).  resvg-py is NOT an mmrec dependency:
install it in a scratch venv that sees the system packages, e.g.::

    python3 -m venv --system-site-packages /tmp/benchvenv
    /tmp/benchvenv/bin/pip install resvg-py
    /tmp/benchvenv/bin/python scripts/fetch_bench_data.py all
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import hashlib
import html
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "bench" / "data"
DOWNLOADS = DATA / "_downloads"
DATASETS = ("tuxpaint", "openmoji", "gm", "openclipart")


class FetchError(SystemExit):
    """A one-line failure the user can act on."""

    def __init__(self, msg: str):
        super().__init__(f"fetch_bench_data: {msg}")


# --- tools and downloads ----------------------------------------------------------------

def need_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise FetchError(f"'{name}' not found: {hint}")
    return path


def need_module(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise FetchError(
            f"Python package '{package}' is missing (import {module}): pip install {package}"
            " (in a scratch venv such as /tmp/benchvenv; it is not an mmrec dependency)"
        ) from None


def fetch_deb(package: str) -> Path:
    """The package's .deb in DOWNLOADS, downloaded with apt-get if not there yet."""
    found = sorted(glob.glob(str(DOWNLOADS / f"{package}_*.deb")))
    if found:
        return Path(found[-1])
    need_tool("apt-get", "this script needs Debian's apt-get to fetch packages")
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    print(f"  downloading Debian package {package} ...", file=sys.stderr)
    proc = subprocess.run(
        ["apt-get", "download", "-o", "APT::Sandbox::User=root", package],
        cwd=DOWNLOADS, capture_output=True, text=True)
    found = sorted(glob.glob(str(DOWNLOADS / f"{package}_*.deb")))
    if proc.returncode != 0 or not found:
        err = (proc.stderr.strip().splitlines() or ["no .deb written"])[-1]
        raise FetchError(f"apt-get download {package} failed ({err}); "
                         "run 'apt-get update' once first")
    return Path(found[-1])


def fetch_npm(package: str) -> Path:
    found = sorted(glob.glob(str(DOWNLOADS / f"{package}-[0-9]*.tgz")))
    if found:
        return Path(found[-1])
    need_tool("npm", "install Node.js/npm to fetch the openmoji package")
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    print(f"  downloading npm package {package} ...", file=sys.stderr)
    proc = subprocess.run(["npm", "pack", package, "--pack-destination", str(DOWNLOADS)],
                          capture_output=True, text=True)
    found = sorted(glob.glob(str(DOWNLOADS / f"{package}-[0-9]*.tgz")))
    if proc.returncode != 0 or not found:
        err = (proc.stderr.strip().splitlines() or ["no .tgz written"])[-1]
        raise FetchError(f"npm pack {package} failed ({err})")
    return Path(found[-1])


def extract_deb(deb: Path, dest: Path) -> Path:
    need_tool("dpkg-deb", "this script needs dpkg-deb to unpack Debian packages")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    return dest


def check_licence(copyright_file: Path, *needles: str) -> None:
    """Fail unless the package's copyright file still says what the docstring claims."""
    text = copyright_file.read_text(errors="replace") if copyright_file.is_file() else ""
    missing = [n for n in needles if n.lower() not in text.lower()]
    if missing:
        raise FetchError(f"{copyright_file}: licence text changed (no {missing}); "
                         "check the licence before using this data")


# --- images -------------------------------------------------------------------------------

def flatten(img, box: int):
    """RGB on white, fit in box x box (never enlarged)."""
    from PIL import Image

    img = img.convert("RGBA")
    if max(img.size) > box:
        img.thumbnail((box, box), Image.Resampling.LANCZOS)
    out = Image.new("RGBA", img.size, (255, 255, 255, 255))
    out.alpha_composite(img)
    return out.convert("RGB")


def render_svg(svg: Path, box: int):
    """Render an SVG to fit box x box; None when it has nothing visible."""
    from PIL import Image

    resvg_py = need_module("resvg_py", "resvg-py")
    try:
        png = bytes(resvg_py.svg_to_bytes(svg_path=str(svg), dpi=96, width=box, height=box,
                                          resources_dir=str(svg.parent)))
    except Exception:  # noqa: BLE001 - resvg raises ValueError/RuntimeError/PanicException
        return None
    img = Image.open(io.BytesIO(png))
    img.load()
    img = img.convert("RGBA")
    if img.getextrema()[3][1] == 0:  # fully transparent
        return None
    return img


def visible(img) -> bool:
    """Not a blank (near-uniform) picture once flattened."""
    return max(hi - lo for lo, hi in img.convert("RGB").getextrema()) > 16


def save_png(img, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", optimize=True)


# --- building -----------------------------------------------------------------------------

def write_catalog(out: Path, rows: list[dict]) -> None:
    with open(out / "catalog.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps({k: v for k, v in row.items() if v not in (None, "", [])},
                                ensure_ascii=False) + "\n")


def summarize(name: str, note: str = "") -> str:
    cat = DATA / name / "catalog.jsonl"
    rows = [json.loads(line) for line in cat.read_text(encoding="utf-8").splitlines() if line]
    n_img = sum(1 for r in rows if r.get("image"))
    n_aud = sum(1 for r in rows if r.get("audio"))
    n_txt = sum(1 for r in rows if r.get("title") or r.get("description") or r.get("tags"))
    own = [DATA / name / e for e in sorted(OWN_ENTRIES)]
    size = sum(f.stat().st_size for e in own for f in ([e] if e.is_file() else e.rglob("*"))
               if f.is_file())
    return (f"{name}: {len(rows)} items (image {n_img}, audio {n_aud}, text {n_txt}), "
            f"{size / 2**20:.1f} MiB -> {cat.relative_to(REPO)}{note}")


OWN_ENTRIES = {"catalog.jsonl", "images", "audio", "README.txt", "LICENSE.txt"}


def build(name: str, builder, force: bool) -> None:
    final = DATA / name
    if (final / "catalog.jsonl").is_file() and not force:
        print(summarize(name, " (already built; --force rebuilds)"))
        return
    DATA.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=DATA))
    work = Path(tempfile.mkdtemp(prefix=f".work-{name}-", dir=DATA))
    try:
        builder(tmp, work)
        os.chmod(tmp, 0o755)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{name}-", dir=DATA))
            os.rename(final, old / name)
            os.rename(tmp, final)
            # keep what others wrote beside the catalog (bench stores, aligners, ...):
            # encoding is incremental, so a store stays valid for the new catalog
            for entry in (old / name).iterdir():
                if entry.name not in OWN_ENTRIES and not (final / entry.name).exists():
                    os.rename(entry, final / entry.name)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(summarize(name))


def readme(out: Path, text: str) -> None:
    (out / "README.txt").write_text(text.strip() + "\n", encoding="utf-8")


# --- tuxpaint -------------------------------------------------------------------------------

LOCALE_LINE = re.compile(r"^[A-Za-z]{2,3}(_[A-Za-z]{2,3})?(@\w+)?\.utf8=")
STAMP_VARIANTS = ("_mirror", "_flip", "_back")
# stamps whose "sound" is a spoken name (digits, letters, the dreidel's Hebrew letters)
SPOKEN_SOUNDS = ("symbols/math/*", "symbols/alphabets/*", "seasonal/hanukkah/dreydl-*")
COLOURS = {"red", "green", "blue", "yellow", "white", "black", "brown", "pink", "purple",
           "orange", "golden", "grey", "gray", "silver"}


def stamp_title(stem: str) -> str:
    s = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem)
    words = [w for w in re.split(r"[\s_\-]+", s.lower()) if w]
    if len(words) > 1:
        words = [w for w in words if not w.isdigit() and w != "photo"] or words
    words = [re.sub(r"(?<=[a-z])\d+$", "", w) for w in words]  # "bluejeans1" -> "bluejeans"
    if len(words) == 2 and words[1] in COLOURS:
        words = [words[1], words[0]]  # "apple_red" -> "red apple"
    return " ".join(w for w in words if w)


def _dat(base: Path) -> str:
    dat = base.with_suffix(".dat")
    return dat.read_text(errors="replace") if dat.is_file() else ""


def sound_rms(path: Path) -> float:
    import numpy as np
    import soundfile as sf

    data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    return float(np.sqrt(np.mean(np.square(data)))) if data.size else 0.0


def build_tuxpaint(out: Path, work: Path) -> None:
    deb = fetch_deb("tuxpaint-stamps-default")
    extract_deb(deb, work)
    check_licence(work / "usr/share/doc/tuxpaint-stamps-default/copyright", "GPL-2")
    root = work / "usr/share/tuxpaint/stamps"
    if not root.is_dir():
        raise FetchError(f"{deb.name}: no usr/share/tuxpaint/stamps inside")
    stems: dict[Path, list[Path]] = defaultdict(list)
    for f in root.rglob("*"):
        if f.suffix.lower() in (".png", ".svg") and not f.stem.endswith(STAMP_VARIANTS):
            stems[f.with_suffix("")].append(f)
    rows, ids, dropped_silent = [], set(), 0
    for base in sorted(stems):
        rel = base.relative_to(root)
        category = rel.parent.as_posix()
        item_id = rel.as_posix().replace("/", ".")
        if item_id in ids:
            continue
        files = {f.suffix.lower(): f for f in stems[base]}
        if ".png" in files:
            from PIL import Image

            with Image.open(files[".png"]) as im:
                im.load()
                img = flatten(im, 256)
        else:
            rendered = render_svg(files[".svg"], 256)
            img = flatten(rendered, 256) if rendered is not None else None
        if img is not None and not visible(img) and "colorable" in _dat(base):
            # a colourable stamp is a mask that Tux Paint fills with the chosen colour
            # (white ones vanish on white): fill it with Tux Paint's first colour, black
            from PIL import Image

            src = (Image.open(files[".png"]) if ".png" in files
                   else render_svg(files[".svg"], 256)).convert("RGBA")
            black = Image.new("RGBA", src.size, (0, 0, 0, 255))
            black.putalpha(src.getchannel("A"))
            img = flatten(black, 256)
        if img is None or not visible(img):
            continue
        txt = base.with_suffix(".txt")
        caption = ""
        if txt.is_file():
            english = []
            for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
                if LOCALE_LINE.match(line):
                    break
                english.append(line.strip())
            caption = " ".join(x for x in english if x)
        audio = None
        if not any(fnmatch.fnmatch(rel.as_posix(), pat) for pat in SPOKEN_SOUNDS):
            for ext in (".ogg", ".wav"):
                snd = base.with_suffix(ext)
                if snd.is_file():
                    if sound_rms(snd) < 1e-4:
                        dropped_silent += 1
                        break
                    audio = f"audio/{item_id}{ext}"
                    (out / "audio").mkdir(exist_ok=True)
                    shutil.copyfile(snd, out / audio)
                    break
        image = f"images/{item_id}.png"
        save_png(img, out / image)
        ids.add(item_id)
        rows.append({"id": item_id, "title": stamp_title(base.name), "description": caption,
                     "category": category, "image": image, "audio": audio})
    write_catalog(out, rows)
    if dropped_silent:
        print(f"  tuxpaint: {dropped_silent} silent sound(s) left out", file=sys.stderr)
    readme(out, f"""
Tux Paint stamps, from Debian package {deb.name} (tuxpaint-stamps, GPL-2; copyright
2002-2022 Bill Kendrick and contributors). Built by scripts/fetch_bench_data.py.
Images: stamp PNG (or SVG rendered), fit in 256 px on white. Audio: the stamp's sound
effect as shipped (spoken captions and spoken digits/letters are not used).
""")


# --- openmoji -------------------------------------------------------------------------------

SKIN_TONES = re.compile(r"1F3F[B-F]")


def build_openmoji(out: Path, work: Path) -> None:
    import tarfile

    from PIL import Image  # noqa: F401 - fail early if Pillow is missing

    need_module("resvg_py", "resvg-py")
    tgz = fetch_npm("openmoji")
    with tarfile.open(tgz) as tf:
        members = [m for m in tf.getmembers()
                   if m.isfile() and (m.name.startswith("package/color/svg/")
                                      or m.name in ("package/data/openmoji.json",
                                                    "package/LICENSE.txt",
                                                    "package/package.json"))]
        if hasattr(tarfile, "data_filter"):
            tf.extractall(work, members=members, filter="data")
        else:  # Python < 3.11.4: the members above are plain files under package/
            tf.extractall(work, members=members)
    pkg = work / "package"
    licence = json.loads((pkg / "package.json").read_text()).get("license", "")
    if licence != "CC-BY-SA-4.0":
        raise FetchError(f"openmoji's package.json says licence {licence!r}, not CC-BY-SA-4.0")
    entries = json.loads((pkg / "data/openmoji.json").read_text(encoding="utf-8"))
    rows, skipped = [], Counter()
    for e in entries:
        hexcode = e["hexcode"]
        if e.get("skintone") or SKIN_TONES.search(hexcode):
            skipped["skin tone"] += 1
            continue
        if e.get("subgroups") == "regional-indicator":
            skipped["regional indicator"] += 1
            continue
        svg = pkg / "color/svg" / f"{hexcode}.svg"
        rendered = render_svg(svg, 160) if svg.is_file() else None
        if rendered is None:
            skipped["no image"] += 1
            continue
        img = flatten(rendered, 160)
        if not visible(img):
            skipped["blank image"] += 1
            continue
        tags: list[str] = []
        for field in ("tags", "openmoji_tags"):
            for t in (e.get(field) or "").split(","):
                t = t.strip()
                if t and t.lower() not in (x.lower() for x in tags):
                    tags.append(t)
        image = f"images/{hexcode}.png"
        save_png(img, out / image)
        rows.append({"id": hexcode, "title": e["annotation"].strip(), "tags": ", ".join(tags),
                     "category": f"{e['group']}/{e['subgroups']}", "emoji": e.get("emoji"),
                     "image": image})
    write_catalog(out, rows)
    shutil.copyfile(pkg / "LICENSE.txt", out / "LICENSE.txt")
    print(f"  openmoji: left out {dict(skipped)}", file=sys.stderr)
    readme(out, f"""
OpenMoji, from npm package {tgz.name}. All emojis designed by OpenMoji - the
open-source emoji and icon project. License: CC BY-SA 4.0 (LICENSE.txt). Colour SVGs
rendered to 160 px PNG on white by scripts/fetch_bench_data.py (an adaptation: share
alike).
""")


# --- gm ---------------------------------------------------------------------------------------

GM_FAMILIES = [
    ("Piano", "a piano instrument"),
    ("Chromatic Percussion", "a chromatic percussion instrument"),
    ("Organ", "an organ instrument"),
    ("Guitar", "a guitar instrument"),
    ("Bass", "a bass instrument"),
    ("Strings", "a string instrument"),
    ("Ensemble", "an ensemble instrument"),
    ("Brass", "a brass instrument"),
    ("Reed", "a reed instrument"),
    ("Pipe", "a pipe instrument"),
    ("Synth Lead", "a synth lead instrument"),
    ("Synth Pad", "a synth pad instrument"),
    ("Synth Effects", "a synth effects instrument"),
    ("Ethnic", "an ethnic instrument"),
    ("Percussive", "a percussive instrument"),
    ("Sound Effects", "a sound effect"),
]
GM_PROGRAMS = [
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano",
    "Honky-tonk Piano", "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet",
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone", "Marimba", "Xylophone",
    "Tubular Bells", "Dulcimer",
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ", "Reed Organ",
    "Accordion", "Harmonica", "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)",
    "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar",
    "Distortion Guitar", "Guitar Harmonics",
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass",
    "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    "Violin", "Viola", "Cello", "Contrabass", "Tremolo Strings", "Pizzicato Strings",
    "Orchestral Harp", "Timpani",
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2",
    "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit",
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section",
    "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe", "English Horn",
    "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi", "Whistle",
    "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)",
    "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)",
    "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)",
    "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum", "Melodic Tom",
    "Synth Drum", "Reverse Cymbal",
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet", "Telephone Ring",
    "Helicopter", "Applause", "Gunshot",
]
GM_DRUMS = {
    35: "Acoustic Bass Drum", 36: "Bass Drum 1", 37: "Side Stick", 38: "Acoustic Snare",
    39: "Hand Clap", 40: "Electric Snare", 41: "Low Floor Tom", 42: "Closed Hi-Hat",
    43: "High Floor Tom", 44: "Pedal Hi-Hat", 45: "Low Tom", 46: "Open Hi-Hat",
    47: "Low-Mid Tom", 48: "Hi-Mid Tom", 49: "Crash Cymbal 1", 50: "High Tom",
    51: "Ride Cymbal 1", 52: "Chinese Cymbal", 53: "Ride Bell", 54: "Tambourine",
    55: "Splash Cymbal", 56: "Cowbell", 57: "Crash Cymbal 2", 58: "Vibraslap",
    59: "Ride Cymbal 2", 60: "Hi Bongo", 61: "Low Bongo", 62: "Mute Hi Conga",
    63: "Open Hi Conga", 64: "Low Conga", 65: "High Timbale", 66: "Low Timbale",
    67: "High Agogo", 68: "Low Agogo", 69: "Cabasa", 70: "Maracas", 71: "Short Whistle",
    72: "Long Whistle", 73: "Short Guiro", 74: "Long Guiro", 75: "Claves",
    76: "Hi Wood Block", 77: "Low Wood Block", 78: "Mute Cuica", 79: "Open Cuica",
    80: "Mute Triangle", 81: "Open Triangle",
}
# Root note (MIDI number) per family, then per-program overrides: a comfortable register.
FAMILY_ROOT = [60, 72, 60, 52, 36, 60, 60, 60, 60, 72, 60, 60, 60, 60, 60, 60]
PROGRAM_ROOT = {
    9: 79, 14: 60, 40: 67, 41: 60, 42: 48, 43: 36, 47: 43, 56: 65, 57: 53, 58: 41, 59: 65,
    60: 57, 64: 67, 65: 62, 66: 55, 67: 48, 68: 67, 70: 46, 72: 79, 78: 60, 104: 60,
    108: 72, 109: 65, 110: 67, 111: 67, 112: 79, 113: 72, 115: 72, 116: 48, 117: 50, 118: 50,
}
SECONDS = 3.0
TICKS = 480  # per quarter note; default tempo 120 bpm -> 960 ticks per second


def phrase(program: int) -> list[tuple[float, float, int]]:
    """(start s, duration s, note) for a short phrase in the instrument's register."""
    family = program // 8
    root = PROGRAM_ROOT.get(program, FAMILY_ROOT[family])
    if family in (11, 12):  # pads, synth effects: a held chord
        return [(0.0, 2.2, root), (0.0, 2.2, root + 4), (0.0, 2.2, root + 7)]
    if family == 15 or program == 119:  # sound effects, reverse cymbal: one long note
        return [(0.0, 2.4, root)]
    if family in (2, 5, 6, 7, 8, 9, 10) and program not in (45, 46, 47):
        # sustained instruments: a legato line
        return [(0.0, 0.6, root), (0.6, 0.6, root + 4), (1.2, 0.6, root + 7),
                (1.8, 0.8, root + 12)]
    # struck / plucked: an arpeggio with the last note let ring
    return [(0.0, 0.4, root), (0.4, 0.4, root + 4), (0.8, 0.4, root + 7),
            (1.2, 1.0, root + 12)]


def varlen(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def smf(events: list[tuple[float, bytes]], end: float) -> bytes:
    """A format-0 Standard MIDI File from (time s, MIDI message bytes)."""
    per_s = TICKS * 2
    track, now = bytearray(), 0
    for t, msg in sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 != 0x80)):
        tick = round(t * per_s)
        track += varlen(tick - now) + msg
        now = tick
    track += varlen(round(end * per_s) - now) + b"\xff\x2f\x00"
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS)
            + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))


def render_midi(mid: bytes, sf2: Path, wav: Path, work: Path) -> bool:
    """Render with fluidsynth, then mono, SECONDS long, peak-normalised; False if silent."""
    import numpy as np
    import soundfile as sf

    midi_path = work / (wav.stem + ".mid")
    raw = work / (wav.stem + ".raw.wav")
    midi_path.write_bytes(mid)
    proc = subprocess.run(["fluidsynth", "-n", "-i", "-q", "-g", "0.8", "-r", "44100",
                           "-T", "wav", "-O", "s16", "-F", str(raw), str(sf2), str(midi_path)],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not raw.is_file():
        raise FetchError(f"fluidsynth failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    data, sr = sf.read(str(raw), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)[: int(SECONDS * sr)]
    peak = float(np.abs(mono).max()) if mono.size else 0.0
    if peak < 1e-3:
        return False
    fade = int(0.02 * sr)  # no click where the render is cut
    mono[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    sf.write(str(wav), mono * (0.9 / peak), sr, subtype="PCM_16")
    return True


def build_gm(out: Path, work: Path) -> None:
    need_tool("fluidsynth", "the gm dataset is rendered with FluidSynth: "
                            "apt-get install fluidsynth")
    need_module("soundfile", "soundfile")
    deb = fetch_deb("timgm6mb-soundfont")
    extract_deb(deb, work / "deb")
    check_licence(work / "deb/usr/share/doc/timgm6mb-soundfont/copyright", "GPL-2")
    sf2 = work / "deb/usr/share/sounds/sf2/TimGM6mb.sf2"
    if not sf2.is_file():
        raise FetchError(f"{deb.name}: no TimGM6mb.sf2 inside")
    (out / "audio").mkdir()
    rows, silent = [], []
    for program, name in enumerate(GM_PROGRAMS):
        family, phrase_of = GM_FAMILIES[program // 8]
        events = [(0.0, bytes([0xC0, program])), (0.0, bytes([0xB0, 7, 100]))]
        for start, dur, note in phrase(program):
            events += [(start, bytes([0x90, note, 100])), (start + dur, bytes([0x80, note, 0]))]
        item_id = f"gm{program:03d}"
        audio = f"audio/{item_id}.wav"
        if not render_midi(smf(events, SECONDS), sf2, out / audio, work):
            silent.append(name)
            continue
        rows.append({"id": item_id, "title": name, "description": f"{name}, {phrase_of}",
                     "category": family, "program": program, "audio": audio})
    for note, name in GM_DRUMS.items():
        events = [(0.0, bytes([0xB9, 7, 100]))]
        for start, vel in ((0.0, 110), (0.75, 85), (1.5, 110)):
            events += [(start, bytes([0x99, note, vel])), (start + 0.3, bytes([0x89, note, 0]))]
        item_id = f"drum{note:03d}"
        audio = f"audio/{item_id}.wav"
        if not render_midi(smf(events, SECONDS), sf2, out / audio, work):
            silent.append(name)
            continue
        rows.append({"id": item_id, "title": name,
                     "description": f"{name}, a drum kit percussion sound",
                     "category": "Drum Kit", "note": note, "audio": audio})
    write_catalog(out, rows)
    if silent:
        print(f"  gm: silent in this soundfont, left out: {', '.join(silent)}", file=sys.stderr)
    readme(out, f"""
General MIDI renders: a short phrase per GM program (and one sound per GM percussion
key), written as MIDI by scripts/fetch_bench_data.py and rendered with FluidSynth using
TimGM6mb.sf2 from Debian package {deb.name} (GPL-2; Tim Brechbill, David Bolton).
44.1 kHz mono 16-bit WAV, {SECONDS:.0f} s, peak-normalised.
""")


# --- openclipart ------------------------------------------------------------------------------

NS_DC = "{http://purl.org/dc/elements/1.1/}"
NS_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
GENERIC_TITLE = re.compile(
    r"clip ?arts?\b|collection|theme|icon ?set|\bicons\b|sibmission|submission|^svg\b"
    r"|symbol[_ ]signs|road ?signs|map symbols|australian maps|boating rules|^sallite$"
    r"|^various\b|^etiquette|^advertising$|^untitled|^drawing|^new document|^image\d*$"
    r"|^layer\b|^clip ?art$|inkscape|converted from", re.I)
JUNK_TAGS = {
    "hash", "theme", "icons", "magick", "lemon theme icon", "united nations member",
    "unsorted", "mapsym", "networksym", "appicon", "mime-types", "mimetypes", "special",
    "signs and symbols", "clipart", "clip art", "svg", "openclipart", "inkscape", "image",
    "media", "icon theme", "etiquette", "action", "application", "work", "webpage", "menu",
    "festive", "externalsource", "public domain", "remix", "png", "tango",
}
CARD_SUITS = {"s": "spades", "h": "hearts", "d": "diamonds", "c": "clubs"}
CARD_RANKS = {"a": "ace", "k": "king", "q": "queen", "j": "jack", "1": "ace"}
CAPTION_CAP = 3  # at most this many items with the same caption


def load_words(work: Path) -> set[str]:
    deb = fetch_deb("wamerican")
    extract_deb(deb, work / "wamerican")
    words_file = work / "wamerican/usr/share/dict/american-english"
    if not words_file.is_file():
        raise FetchError(f"{deb.name}: no usr/share/dict/american-english inside")
    # common words only: no proper nouns ("Verde"), no possessives
    return {w.strip() for w in words_file.read_text(errors="replace").splitlines()
            if w.strip().isalpha() and w.strip().islower() and len(w.strip()) >= 3}


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def meaningful(text: str, dictionary: set[str]) -> bool:
    """Mostly real English words: of its words of 3+ letters, at least one and at least
    half are in the dictionary (so "Sacco a pelo per campeggio" is not)."""
    words = [w for w in words_of(text) if len(w) >= 3]
    known = sum(w in dictionary or (w.endswith("s") and w[:-1] in dictionary) for w in words)
    return known >= 1 and 2 * known >= len(words)


SHORT_WORDS = {"a", "an", "at", "by", "cd", "dj", "go", "in", "it", "me", "my", "no", "of",
               "ok", "on", "or", "pc", "tv", "to", "up", "us"}


def segment(token: str, dictionary: set[str]) -> str:
    """Split a run-together word ("fontsizedown" -> "font size down") into dictionary
    words, fewest pieces first; the token unchanged when it cannot be split."""
    if len(token) < 6 or token in dictionary:
        return token
    n = len(token)
    best: list[list[str] | None] = [None] * (n + 1)
    best[0] = []
    for end in range(1, n + 1):
        for start in range(max(0, end - 20), end):
            piece = token[start:end]
            prev = best[start]
            short_ok = piece in SHORT_WORDS and 0 < start and end < n  # "bird of peace"
            if prev is None or not (piece in dictionary or short_ok):
                continue
            if best[end] is None or len(prev) + 1 < len(best[end]):
                best[end] = [*prev, piece]
    return " ".join(best[n]) if best[n] else token


def clean_text(text: str) -> str:
    text = html.unescape(text)
    text = re.sub(r"https?://\S+|www\.\S+|\S+@\S+|#\d+", " ", text)
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text.replace("_", " "))
    return re.sub(r"\s+", " ", text).strip(" -:;,.")


def name_from_file(path: Path, author: str, dictionary: set[str]) -> str:
    stem = re.sub(r"(\.svg)+", " ", path.name, flags=re.I)
    stem = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem)
    tokens = [t for t in re.split(r"[\s_\-.,()#]+", stem.lower()) if t]
    author_words = [w for w in words_of(author) if len(w) >= 3]
    kept: list[str] = []
    for i, t in enumerate(tokens):
        if i > 0 and author_words and any(t == w or (len(t) >= 3 and w.startswith(t))
                                          for w in author_words):
            break  # "<title>_<author>_<nn>": the rest is the author and a number
        t = re.sub(r"(?<=[a-z])\d+[a-z]?$", "", t)  # "head6" -> "head", "man02b" -> "man"
        if any(c.isdigit() for c in t):
            continue
        kept.append(segment(t, dictionary))
    if len(kept) > 1 and len(kept[-1]) == 1:  # a trailing variant letter
        kept = kept[:-1]
    return " ".join(kept)


def svg_metadata(path: Path) -> dict[str, object]:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError, ValueError):
        return {}
    work = next((e for e in root.iter() if e.tag.endswith("}Work")), None)
    if work is None:
        return {}

    def text(tag: str) -> str:
        e = work.find(NS_DC + tag)
        return (e.text or "").strip() if e is not None else ""

    subject = work.find(NS_DC + "subject")
    keywords = ([(li.text or "").strip() for li in subject.iter(NS_RDF + "li")]
                if subject is not None else [])
    creator = work.find(NS_DC + "creator")
    author = ""
    if creator is not None:
        for e in creator.iter(NS_DC + "title"):
            author = (e.text or "").strip()
    return {"title": text("title"), "description": text("description"),
            "keywords": [k for k in keywords if k], "author": author}


def clean_tags(keywords, dictionary: set[str]) -> list[str]:
    tags: list[str] = []
    for k in keywords:
        k = re.sub(r"\s+", " ", html.unescape(str(k)).replace("_", " ")).strip().lower()
        if (len(k) < 3 or k in JUNK_TAGS or any(c.isdigit() for c in k) or "hash" in k
                or k in tags or not meaningful(k, dictionary)):
            continue
        tags.append(k)
    return tags


def card_name(rel: Path) -> str | None:
    if "cards" not in rel.parts[:-1]:
        return None
    m = re.fullmatch(r"[a-z]+_([shdc])_(\w+)", rel.stem.lower())
    if not m:
        return None
    rank = CARD_RANKS.get(m.group(2), m.group(2) if m.group(2).isdigit() else None)
    return f"{rank} of {CARD_SUITS[m.group(1)]} playing card" if rank else None


def build_openclipart(out: Path, work: Path) -> None:
    need_module("resvg_py", "resvg-py")
    dictionary = load_words(work)
    deb = fetch_deb("openclipart-svg")
    extract_deb(deb, work / "svg")
    check_licence(work / "svg/usr/share/doc/openclipart-svg/copyright", "Public Domain")
    root = work / "svg/usr/share/openclipart/svg"
    if not root.is_dir():
        raise FetchError(f"{deb.name}: no usr/share/openclipart/svg inside")
    files = sorted(p for p in root.rglob("*.svg") if p.is_file() and not p.is_symlink())
    metas, seen_bytes = {}, set()
    for p in files:
        digest = hashlib.md5(p.read_bytes()).hexdigest()
        if digest in seen_bytes:
            continue
        seen_bytes.add(digest)
        metas[p] = svg_metadata(p)
    title_count = Counter(clean_text(m.get("title", "")).lower() for m in metas.values())

    drops: Counter = Counter()
    candidates = []
    for p, meta in metas.items():
        rel = p.relative_to(root)
        author = str(meta.get("author", ""))
        fname = name_from_file(p, author, dictionary)
        title = clean_text(str(meta.get("title", "")))
        bad_title = (not title or bool(GENERIC_TITLE.search(title))
                     or "hash(" in title.lower())
        shared_title = (title_count[title.lower()] >= 5
                        and not set(words_of(title)) & set(words_of(fname)))
        tags = clean_tags(meta.get("keywords", []), dictionary)
        name = card_name(rel)
        if name is None:
            if not bad_title and not shared_title and meaningful(title, dictionary):
                name = title  # the author's own title
            elif meaningful(fname, dictionary):
                name = fname  # the file name says more than a collection-wide title
            elif not bad_title and (meaningful(title, dictionary) or len(tags) >= 2):
                name = title  # e.g. "Katana" with keywords sword, samurai
        if not name:
            drops["no meaningful name"] += 1
            continue
        tags = [t for t in tags if t != name.lower()]
        desc = clean_text(str(meta.get("description", "")))
        if (len(desc) < 4 or "hash(" in desc.lower() or desc.lower() == name.lower()
                or GENERIC_TITLE.search(desc) or not meaningful(desc, dictionary)):
            desc = ""
        desc = desc[:300]
        candidates.append((p, rel, name, desc, tags))

    per_caption: Counter = Counter()
    rows, ids = [], set()
    for p, rel, name, desc, tags in candidates:
        key = (name.lower(), desc.lower())
        if per_caption[key] >= CAPTION_CAP:
            drops["caption repeated"] += 1
            continue
        rendered = render_svg(p, 224)
        if rendered is None:
            drops["nothing rendered"] += 1
            continue
        img = flatten(rendered, 224)
        if not visible(img):
            drops["blank image"] += 1
            continue
        item_id = rel.with_suffix("").as_posix().replace("/", ".")
        if item_id in ids:
            continue
        per_caption[key] += 1
        ids.add(item_id)
        image = f"images/{item_id}.png"
        save_png(img, out / image)
        rows.append({"id": item_id, "title": name, "description": desc,
                     "tags": ", ".join(tags), "category": rel.parent.as_posix(),
                     "image": image})
    write_catalog(out, rows)
    print(f"  openclipart: {len(files)} SVG files, {len(metas)} distinct; left out "
          f"{dict(drops)}", file=sys.stderr)
    readme(out, f"""
Open Clip Art Library 0.18, from Debian package {deb.name}: every picture dedicated
to the public domain (see the package's copyright file). SVGs rendered to fit 224 px
on white by scripts/fetch_bench_data.py; captions from each SVG's dc:title,
dc:description and dc:subject keywords and its file name.
""")


# --- main -------------------------------------------------------------------------------------

BUILDERS = {"tuxpaint": build_tuxpaint, "openmoji": build_openmoji, "gm": build_gm,
            "openclipart": build_openclipart}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="+", choices=[*DATASETS, "all"],
                    help="which dataset(s) to build, or all")
    ap.add_argument("--force", action="store_true",
                    help="rebuild even if the dataset's catalog already exists")
    args = ap.parse_args(argv)
    names = list(DATASETS) if "all" in args.datasets else list(dict.fromkeys(args.datasets))
    for name in names:
        build(name, BUILDERS[name], args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
