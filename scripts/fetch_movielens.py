"""Fetch MovieLens-100k as RecBole ships it, and write an mmrec catalog beside it.

The RecBole wheel carries ``recbole/dataset_example/ml-100k/`` (atomic files:
100,000 ratings by 943 users on 1,682 movies, with titles, years and genres). It is
fetched with pip by package name, never from a URL::

    python scripts/fetch_movielens.py [--dest bench/data/movielens]

Writes into DEST:

- ``catalog.jsonl``: one movie per line, ``id`` (RecBole's item_id), ``title``,
  ``year`` and ``genres`` (a list); the item text is "title. year. genre, genre".
- ``ml-100k.inter``: RecBole's interactions file, copied as is
  (``user_id:token item_id:token rating:float timestamp:float``).

A second run reuses the downloaded wheel and the extracted files.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / "bench" / "data" / "movielens"
WHEEL_PIN = "recbole==1.2.1"
PREFIX = "recbole/dataset_example/ml-100k/"
EXPECTED = {"interactions": 100_000, "users": 943, "items": 1_682}


def wheel(cache: Path) -> Path:
    """The RecBole wheel in ``cache``, downloaded with ``pip download`` if absent."""
    found = sorted(cache.glob("recbole-1.2.1-*.whl"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                    WHEEL_PIN, "-d", str(cache)], check=True)
    found = sorted(cache.glob("recbole-1.2.1-*.whl"))
    if not found:
        raise SystemExit(f"pip download {WHEEL_PIN} left no wheel in {cache}")
    return found[0]


def extract(whl: Path, dest: Path) -> dict[str, Path]:
    out = {}
    with zipfile.ZipFile(whl) as zf:
        for name in ("ml-100k.inter", "ml-100k.item"):
            target = dest / name
            if not target.is_file():
                target.write_bytes(zf.read(PREFIX + name))
            out[name] = target
    return out


def catalog_rows(item_file: Path) -> list[dict]:
    """Movies from RecBole's ``.item`` file (tab-separated, typed header)."""
    lines = item_file.read_text(encoding="utf-8").splitlines()
    header = [h.split(":", 1)[0] for h in lines[0].split("\t")]
    rows = []
    for line in lines[1:]:
        record = dict(zip(header, line.split("\t"), strict=False))
        row = {"id": record["item_id"], "title": record.get("movie_title", "").strip()}
        if record.get("release_year", "").strip():
            row["year"] = record["release_year"].strip()
        genres = record.get("class", "").split()
        if genres:
            row["genres"] = genres
        rows.append(row)
    return rows


def check(inter: Path, rows: list[dict]) -> dict[str, int]:
    lines = inter.read_text(encoding="utf-8").splitlines()[1:]
    users = {line.split("\t", 1)[0] for line in lines}
    counts = {"interactions": len(lines), "users": len(users), "items": len(rows)}
    if counts != EXPECTED:
        raise SystemExit(f"unexpected MovieLens-100k counts {counts}, wanted {EXPECTED}")
    return counts


def fetch(dest: Path = DEFAULT_DEST) -> dict[str, Path]:
    """Make sure DEST holds ``catalog.jsonl`` and ``ml-100k.inter``; return their paths."""
    dest.mkdir(parents=True, exist_ok=True)
    files = extract(wheel(dest / "wheel"), dest)
    rows = catalog_rows(files["ml-100k.item"])
    check(files["ml-100k.inter"], rows)
    catalog = dest / "catalog.jsonl"
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if not catalog.is_file() or catalog.read_text(encoding="utf-8") != text:
        catalog.write_text(text, encoding="utf-8")
    return {"catalog": catalog, "interactions": files["ml-100k.inter"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    args = parser.parse_args()
    paths = fetch(args.dest)
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
