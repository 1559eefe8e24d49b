"""Reading and validating catalogs, and decoding their images and audio.

A catalog is JSONL or CSV, one item per row: ``id`` (required, unique), text fields,
``image`` and ``audio`` paths relative to the catalog file, anything else metadata.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.enums import Modality
from mmrec.errors import CatalogError, InputError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    import numpy as np
    from PIL.Image import Image

DEFAULT_TEXT_FIELDS = ("title", "name", "description", "caption", "text", "tags")
PATH_FIELDS = {Modality.IMAGE: "image", Modality.AUDIO: "audio"}
MAX_IMAGE_PIXELS = 40_000_000  # ~ 6300 x 6300; larger is treated as a decompression bomb


@dataclass
class Problem:
    """One bad input: reported by catalog row number and item id."""

    row: int
    id: str | None
    reason: str
    modality: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "id": self.id, "modality": self.modality, "reason": self.reason}

    def __str__(self) -> str:
        where = f"row {self.row}" + (f" (id {self.id})" if self.id else "")
        what = f"{self.modality}: " if self.modality else ""
        return f"{where}: {what}{self.reason}"


@dataclass
class Item:
    id: str
    row: int
    text: str | None = None
    image: Path | None = None
    audio: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def source(self, modality: Modality) -> str | Path | None:
        return getattr(self, modality.value)  # the fields are named after the modalities

    def content_hash(self, modality: Modality) -> str | None:
        """A hash of what the encoder sees, so unchanged content is never re-encoded."""
        src = self.source(modality)
        if src is None:
            return None
        digest = hashlib.sha256()
        if isinstance(src, Path):
            with open(src, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(src.encode("utf-8"))
        return digest.hexdigest()[:32]


@dataclass
class Catalog:
    path: Path
    items: list[Item]
    problems: list[Problem]
    text_fields: list[str]

    def modalities(self) -> list[Modality]:
        return [m for m in Modality if any(it.source(m) is not None for it in self.items)]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason})") from exc


Rows = list[tuple[int, dict[str, Any]]]


def _rows(path: Path) -> tuple[Rows, list[Problem]]:
    """(row number, record) pairs, and the rows that could not be parsed at all.

    Row numbers are the file's line numbers. A line that is not JSON, or a CSV record
    the csv module refuses, is one bad row like any other: reported, not fatal.
    """
    suffix = path.suffix.lower()
    text = _read_text(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _json_rows(text)
    if suffix in (".csv", ".tsv"):
        return _csv_rows(path, io.StringIO(text, newline=""), "\t" if suffix == ".tsv" else ",")
    raise CatalogError(f"{path}: unknown catalog format {suffix!r}; use .jsonl or .csv")


def _json_rows(text: str) -> tuple[Rows, list[Problem]]:
    rows, problems = [], []
    # split on newlines only: str.splitlines() also splits inside JSON strings
    # holding U+2028, form feeds and the like
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(lineno, None, f"invalid JSON ({exc.msg})"))
            continue
        if not isinstance(record, dict):
            problems.append(Problem(lineno, None, "expected a JSON object"))
            continue
        rows.append((lineno, record))
    return rows, problems


def _csv_rows(path: Path, stream: io.StringIO, delimiter: str,
              fieldnames: list[str] | None = None, lines_before: int = 0,
              **options: Any) -> tuple[Rows, list[Problem]]:
    """Rows numbered by the line they start on (quoted fields may span lines)."""
    reader = csv.DictReader(stream, fieldnames=fieldnames, delimiter=delimiter,
                            skipinitialspace=True, **options)
    try:
        header = reader.fieldnames
    except csv.Error as exc:  # no row can be read without the header
        raise CatalogError(f"{path}: unreadable header ({exc})") from exc
    if header:  # "id, title" is a header with spaces, not a column " title"
        reader.fieldnames = [name.strip() for name in header]
    rows, problems, start = [], [], reader.line_num + 1
    while True:
        try:
            rows.append((lines_before + start, dict(next(reader))))
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over csv's size limit
            problems.append(Problem(lines_before + start, None, f"unreadable CSV row ({exc})"))
        # the underlying reader's count: DictReader's is stale after an error
        start = reader.reader.line_num + 1
    return rows, problems


def _clean(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _text_of(record: dict[str, Any], fields: list[str]) -> str | None:
    """Joined text fields; '' when fields are present but empty, None when all absent."""
    values = [record.get(f) for f in fields]
    present = [v for v in values if v is not None]
    if not present:
        return None
    parts = [", ".join(map(str, v)) if isinstance(v, list) else str(v) for v in present]
    return ". ".join(p.strip() for p in parts if p.strip())


def read_catalog(path: str | Path, text_fields: list[str] | None = None) -> Catalog:
    """Read and validate ``path``; row-level problems are returned, not raised.

    Raises CatalogError for what no run can get past: a missing or unreadable file, an
    empty catalog, duplicate ids, or text fields that no row has.
    """
    path = Path(path)
    _check_is_file(path)
    rows, problems = _rows(path)
    if not rows and not problems:
        raise CatalogError(f"{path}: the catalog is empty")
    columns = {key for _, rec in rows for key in rec if key is not None}
    if text_fields:
        unknown = [f for f in text_fields if f not in columns]
        if unknown:
            raise CatalogError(
                f"{path}: unknown text field(s) {', '.join(unknown)}; "
                f"columns are: {', '.join(sorted(columns))}"
            )
        fields = list(text_fields)
    else:
        fields = [f for f in DEFAULT_TEXT_FIELDS if f in columns]
    items, seen = [], {}
    for row, record in rows:
        item = _item(path, row, {k: _clean(v) for k, v in record.items()}, fields, problems)
        if item is None:
            continue
        if item.id in seen:
            raise CatalogError(f"{path}: duplicate id {item.id!r} in rows {seen[item.id]} and {row}")
        seen[item.id] = row
        items.append(item)
    problems.sort(key=lambda p: p.row)
    if not items:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CatalogError(f"{path}: no usable item: {problems[0]}{more}")
    return Catalog(path, items, problems, fields)


CATALOG_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv")


def _check_is_file(path: Path) -> None:
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix.lower() in CATALOG_SUFFIXES)
        raise CatalogError(
            f"{path} is a directory; expected a catalog file (.jsonl, .csv or .tsv)",
            hint=f"catalog files in it: {', '.join(inside[:5])}" if inside else None,
        )
    if not path.is_file():
        raise CatalogError(f"catalog not found: {path}")


def _item(path: Path, row: int, record: dict[str, Any], fields: list[str],
          problems: list[Problem]) -> Item | None:
    if None in record:  # csv.DictReader's key for values beyond the header
        problems.append(Problem(row, _clean(record.get("id")) or None,
                                f"{len(record[None])} value(s) beyond the header's columns"))
        return None
    raw_id = record.get("id")
    if raw_id is None or str(raw_id) == "":
        problems.append(Problem(row, None, "missing id"))
        return None
    item = Item(id=str(raw_id), row=row)
    text = _text_of(record, fields)
    if text == "":
        problems.append(Problem(row, item.id, "empty text", Modality.TEXT.value))
    item.text = text or None
    for modality, key in PATH_FIELDS.items():
        value = record.get(key)
        if value in (None, ""):
            continue
        file = (path.parent / str(value)).resolve()
        if not file.is_file():
            problems.append(Problem(row, item.id, f"file not found: {value}", modality.value))
            continue
        setattr(item, key, file)
    if item.text is None and item.image is None and item.audio is None:
        if not any(p.row == row for p in problems):
            problems.append(Problem(row, item.id, "no text, image or audio"))
        return None
    item.metadata = {k: v for k, v in record.items()
                     if k not in ("id", "image", "audio") and v not in (None, "")}
    return item


def load_image(path: Path) -> Image:
    """Decode an image to RGB: EXIF orientation applied, transparency on white."""
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with PILImage.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise InputError(f"image too large ({img.width}x{img.height} pixels)")
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "P"):
                rgba = img.convert("RGBA")
                background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = PILImage.alpha_composite(background, rgba)
            return img.convert("RGB")
    except InputError:
        raise
    except UnidentifiedImageError as exc:
        raise InputError("not an image Pillow can read") from exc
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as exc:
        raise InputError(f"unreadable image ({str(exc).splitlines()[0] or type(exc).__name__})") from exc


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Decode audio to a mono float32 waveform at ``sample_rate``."""
    import numpy as np
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, TypeError, ValueError) as exc:  # LibsndfileError is a RuntimeError
        raise InputError(f"unreadable audio ({str(exc).splitlines()[0]})") from exc
    if data.shape[0] == 0:
        raise InputError("audio has no samples")
    mono = data.mean(axis=1)
    if not np.isfinite(mono).all():
        raise InputError("audio contains NaN or infinite samples")
    if sr != sample_rate:
        import torch
        import torchaudio.functional as AF

        mono = AF.resample(torch.from_numpy(mono), sr, sample_rate).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


# --- interactions -------------------------------------------------------------------

# Column names tried, in order, when the caller names none. RecBole's atomic files
# (``user_id:token``) match after their ``:type`` suffix is dropped.
INTERACTION_FIELDS = {
    "user": ("user", "user_id", "userid", "userId", "uid"),
    "item": ("item", "item_id", "itemid", "itemId", "movieId", "iid", "id"),
    "rating": ("rating", "score", "value"),
    "timestamp": ("timestamp", "time", "ts", "date", "datetime"),
}


@dataclass
class Interactions:
    """Positive user-item interactions, one entry per kept row, in file order, as columns.

    Row ``k`` is user ``user_ids[user_codes[k]]`` on item ``item_ids[item_codes[k]]``:
    users are numbered by first appearance; items by their position in the reader's
    ``known_items`` when it had them (so the codes are store rows), else by first
    appearance. ``timestamps`` holds seconds since the epoch (NaN where the file has
    none); ``ratings`` NaN where absent; ``line_numbers`` each row's line in the file.
    Each (user, item) pair appears once: a repeat keeps its first (earliest) occurrence.
    """

    path: Path
    user_ids: list[str]
    user_codes: np.ndarray
    item_ids: list[str]
    item_codes: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    line_numbers: np.ndarray
    problems: list[Problem] = field(default_factory=list)
    unknown_items: int = 0  # rows skipped because their item is not in the store
    unknown_examples: list[str] = field(default_factory=list)
    below_min_rating: int = 0
    duplicates: int = 0

    def __len__(self) -> int:
        return len(self.user_codes)

    # One Python string per row: for small files and tests; large consumers use the codes.
    @cached_property
    def users(self) -> list[str]:
        return [self.user_ids[c] for c in self.user_codes.tolist()]

    @cached_property
    def items(self) -> list[str]:
        return [self.item_ids[c] for c in self.item_codes.tolist()]

    @property
    def rows(self) -> list[int]:
        return self.line_numbers.tolist()

    def item_rows(self, row_of: Callable[[str], int | None]) -> np.ndarray:
        """Each row's item mapped by ``row_of`` (-1 where None), one call per distinct item."""
        return _through(self.item_codes, self.item_ids, row_of)

    def user_rows(self, row_of: Callable[[str], int | None]) -> np.ndarray:
        """Each row's user mapped by ``row_of`` (-1 where None), one call per distinct user."""
        return _through(self.user_codes, self.user_ids, row_of)

    def distinct_items(self) -> list[str]:
        """The items the rows are on, by first appearance."""
        import numpy as np

        _, first = np.unique(self.item_codes, return_index=True)
        return [self.item_ids[c] for c in self.item_codes[np.sort(first)].tolist()]

    def summary(self) -> dict[str, Any]:
        import numpy as np

        return {"kept": len(self), "users": len(self.user_ids),
                "items": int(np.unique(self.item_codes).size),
                "unknown_items": self.unknown_items, "unknown_examples": self.unknown_examples,
                "below_min_rating": self.below_min_rating, "duplicates": self.duplicates,
                "problems": [p.as_dict() for p in self.problems]}


def _through(codes: np.ndarray, vocabulary: list[str], row_of: Callable[[str], int | None]) -> np.ndarray:
    import numpy as np

    rows = [row_of(v) for v in vocabulary]
    table = np.array([-1 if r is None else r for r in rows], dtype=np.int64)
    return table[codes] if len(codes) else np.zeros(0, dtype=np.int64)


INTERACTION_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".inter")


def _interaction_rows(path: Path) -> tuple[Rows, list[Problem]]:
    if path.suffix.lower() not in INTERACTION_SUFFIXES:
        raise CatalogError(f"{path}: unknown interactions format {path.suffix!r}; "
                           "use .csv, .tsv, .jsonl or a RecBole .inter file")
    if path.suffix.lower() != ".inter":
        return _rows(path)
    stream = io.StringIO(_read_text(path), newline="")
    first = stream.readline().rstrip("\r\n")
    if not first:
        return [], []
    header = [name.split(":", 1)[0] for name in first.split("\t")]
    return _csv_rows(path, stream, "\t", header, lines_before=1, quoting=csv.QUOTE_NONE)


def _pick_column(path: Path, role: str, chosen: str | None, columns: set[str],
                 required: bool) -> str | None:
    if chosen is not None:
        if chosen not in columns:
            raise CatalogError(f"{path}: no {role} column {chosen!r}; columns are: "
                               f"{', '.join(sorted(columns))}")
        return chosen
    found = next((c for c in INTERACTION_FIELDS[role] if c in columns), None)
    if found is None and required:
        raise CatalogError(f"{path}: no {role} column (looked for "
                           f"{', '.join(INTERACTION_FIELDS[role])}); columns are: "
                           f"{', '.join(sorted(columns))}",
                           hint=f"name it with --{role}-field")
    return found


def _parse_time(value: Any) -> float:
    """Seconds since the epoch from a number or an ISO 8601 date/time."""
    import math
    from datetime import datetime, timezone

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return float(value)
    text = str(value).strip()
    try:
        return _parse_time(float(text))
    except ValueError:
        pass
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def _parse_rating(value: Any) -> float:
    import math

    rating = float(value)
    if not math.isfinite(rating):
        raise ValueError("not a finite number")
    return rating


def read_interactions(
    path: str | Path,
    known_items: Collection[str] | None = None,
    min_rating: float | None = None,
    user_field: str | None = None,
    item_field: str | None = None,
    rating_field: str | None = None,
    timestamp_field: str | None = None,
) -> Interactions:
    """Read ``user,item[,rating][,timestamp]`` rows from CSV, TSV, JSONL or a RecBole ``.inter``.

    Every row is a positive unless ``min_rating`` drops it. Rows whose item is not in
    ``known_items`` are counted and skipped; rows with a missing id or an unreadable
    rating/timestamp are returned as problems. Raises CatalogError for a missing,
    empty or unusable file, or when no row is left.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"interactions file not found: {path}")
    fields = {"user": user_field, "item": item_field, "rating": rating_field,
              "timestamp": timestamp_field}
    batches = _arrow_table(path)
    if batches is not None:
        from mmrec.arrow_csv import NeedsRowReader

        try:
            return _table_interactions(path, batches, known_items, min_rating, fields)
        except NeedsRowReader:
            pass
    return _row_interactions(path, known_items, min_rating, fields)


def _columns(path: Path, columns: set[str], fields: dict[str, str | None],
             min_rating: float | None) -> dict[str, str | None]:
    return {
        "user": _pick_column(path, "user", fields["user"], columns, True),
        "item": _pick_column(path, "item", fields["item"], columns, True),
        "rating": _pick_column(path, "rating", fields["rating"], columns, min_rating is not None),
        "timestamp": _pick_column(path, "timestamp", fields["timestamp"], columns, False),
    }


def _arrow_table(path: Path) -> Any:
    """The file's blocks as pyarrow batches of text columns, or None for the row-by-row reader."""
    from mmrec.arrow_csv import read_batches

    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return read_batches(path, "\t" if suffix == ".tsv" else ",")
    if suffix != ".inter":
        return None
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        first = fh.readline().rstrip("\r\n")
    header = [name.split(":", 1)[0] for name in first.split("\t")]
    return read_batches(path, "\t", header, quoting=False) if first else None


@dataclass
class _Columns:
    """What the blocks of a file leave once their text is coded: one entry per line."""

    users: list[np.ndarray] = field(default_factory=list)
    items: list[np.ndarray] = field(default_factory=list)
    ratings: list[np.ndarray] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)
    ok: list[np.ndarray] = field(default_factory=list)
    lines: int = 0
    blank: int = 0

    def joined(self) -> tuple[np.ndarray, ...]:
        """Each column in one array; the blocks' arrays are let go one column at a time."""
        import numpy as np

        out = []
        for name in ("users", "items", "ratings", "times", "ok"):
            out.append(np.concatenate(getattr(self, name)))
            setattr(self, name, [])
        return tuple(out)


def _table_interactions(path: Path, batches: Any, known_items: Collection[str] | None,
                        min_rating: float | None, fields: dict[str, str | None]) -> Interactions:
    """:func:`read_interactions` column-wise, a block at a time: the same checks, counts
    and messages, in the same order (problems, then --min-rating, then unknown items,
    then repeats). Raises NeedsRowReader for a file the row reader must read."""
    import numpy as np

    from mmrec import arrow_csv
    from mmrec.arrow_csv import NeedsRowReader

    users, items, cols = arrow_csv.Vocabulary(), arrow_csv.Vocabulary(), _Columns()
    names, unusable, problems = None, None, []
    for batch in batches:
        if names is None and unusable is None:
            try:
                names = _columns(path, set(batch.schema.names), fields, min_rating)
            except CatalogError as exc:  # raised below unless the row reader gets the file
                unusable = exc
        blank = arrow_csv.blank_lines(batch)
        if names is not None:
            _code_block(batch, blank, names, users, items, cols, problems)
        cols.lines, cols.blank = cols.lines + batch.num_rows, cols.blank + int(blank.sum())
    if cols.lines == cols.blank:  # empty, or blank lines only: the row reader's words
        raise NeedsRowReader
    if unusable is not None:
        raise unusable
    user, item, ratings, times, ok = cols.joined()
    out = Interactions(path, [], np.zeros(0, np.int64), [], np.zeros(0, np.int64), np.zeros(0),
                       np.zeros(0), np.zeros(0, np.int64), problems)
    if min_rating is not None:
        below = ok & ~(ratings >= min_rating)
        out.below_min_rating, ok = int(below.sum()), ok & ~below
    if known_items is not None:
        out.item_ids = list(known_items)
        seen, item = item, items.positions_in(out.item_ids)[item]  # one lookup: codes become rows
        unknown = ok & (item < 0)
        out.unknown_items, ok = int(unknown.sum()), ok & ~unknown
        out.unknown_examples = items.names(seen[np.flatnonzero(unknown)[:5]])
    candidates = np.flatnonzero(ok)
    kept = candidates[arrow_csv.first_of_pairs(user[candidates], item[candidates])]
    out.duplicates = len(candidates) - len(kept)
    out.user_codes, first = arrow_csv.first_appearance(user[kept])
    out.user_ids = users.names(first)
    if known_items is None:
        out.item_codes, first = arrow_csv.first_appearance(item[kept])
        out.item_ids = items.names(first)
    else:
        out.item_codes = item[kept].astype(np.int64)
    out.ratings, out.timestamps, out.line_numbers = ratings[kept], times[kept], kept + 2
    _check_left(out)
    return out


def _code_block(batch: Any, blank: np.ndarray, names: dict[str, str | None],
                users: Any, items: Any, cols: _Columns, problems: list[Problem]) -> None:
    """One block's checks (its problems recorded with their line numbers) and its codes."""
    import numpy as np
    import pyarrow.compute as pc

    from mmrec import arrow_csv

    n = batch.num_rows
    user, item = arrow_csv.text(batch, names["user"]), arrow_csv.text(batch, names["item"])
    missing = ~blank & pc.or_(pc.equal(user, ""), pc.equal(item, "")).to_numpy(zero_copy_only=False)
    ratings, bad_rating = arrow_csv.numbers(arrow_csv.text(batch, names["rating"]), _parse_rating, n)
    times, bad_time = arrow_csv.numbers(arrow_csv.text(batch, names["timestamp"]), _parse_time, n)
    for r in np.flatnonzero(missing | (~blank & (bad_rating | bad_time))):  # the exact messages
        record = {c: batch.column(c)[int(r)].as_py() for c in batch.schema.names}
        _interaction(cols.lines + int(r) + 2, record, names, problems)
    cols.users.append(users.encode(user))
    cols.items.append(items.encode(item))
    cols.ratings.append(ratings)
    cols.times.append(times)
    cols.ok.append(~blank & ~missing & ~bad_rating & ~bad_time)


def _row_interactions(path: Path, known_items: Collection[str] | None, min_rating: float | None,
                      fields: dict[str, str | None]) -> Interactions:
    import numpy as np

    rows, problems = _interaction_rows(path)
    if not rows:
        first = f" (first problem: {problems[0]})" if problems else ""
        raise CatalogError(f"{path}: no interactions{first}")
    columns = {key for _, rec in rows for key in rec if key is not None}
    names = _columns(path, columns, fields, min_rating)
    vocabulary = list(known_items) if known_items is not None else None
    row_of: dict[str, int] = {}
    for r, item_id in enumerate(vocabulary or []):
        row_of.setdefault(item_id, r)  # the first, as the column-wise reader's lookup
    out = Interactions(path, [], np.zeros(0, np.int64), [], np.zeros(0, np.int64), np.zeros(0),
                       np.zeros(0), np.zeros(0, np.int64), problems)
    user_code: dict[str, int] = {}
    users, items, lines, ratings, times, seen = [], [], [], [], [], set()
    for row, record in rows:
        parsed = _interaction(row, record, names, out.problems)
        if parsed is None:
            continue
        user, item, rating, stamp = parsed
        if min_rating is not None and not rating >= min_rating:
            out.below_min_rating += 1
            continue
        if vocabulary is not None and item not in row_of:
            out.unknown_items += 1
            if len(out.unknown_examples) < 5:
                out.unknown_examples.append(item)
            continue
        if (user, item) in seen:
            out.duplicates += 1
            continue
        seen.add((user, item))
        if vocabulary is None:
            row_of.setdefault(item, len(row_of))  # by first appearance
        users.append(user_code.setdefault(user, len(user_code)))
        items.append(row_of[item])
        lines.append(row)
        ratings.append(rating)
        times.append(stamp)
    out.user_ids, out.user_codes = list(user_code), np.asarray(users, dtype=np.int64)
    out.item_ids = vocabulary if vocabulary is not None else list(row_of)
    out.item_codes, out.line_numbers = np.asarray(items, dtype=np.int64), np.asarray(lines, dtype=np.int64)
    out.ratings = np.asarray(ratings, dtype=np.float64)
    out.timestamps = np.asarray(times, dtype=np.float64)
    out.problems.sort(key=lambda p: p.row)
    _check_left(out)
    return out


def _interaction(row: int, record: dict[str, Any], names: dict[str, str | None],
                 problems: list[Problem]) -> tuple[str, str, float, float] | None:
    """(user, item, rating, timestamp) of one row, or None with a Problem recorded."""
    if None in record:
        problems.append(Problem(row, None, f"{len(record[None])} value(s) beyond the header's columns"))
        return None
    user, item = (_clean(record.get(names[r])) for r in ("user", "item"))
    if user in (None, "") or item in (None, ""):
        problems.append(Problem(row, None if item in (None, "") else str(item),
                                f"missing {'user' if user in (None, '') else 'item'} id"))
        return None
    values = []
    for role, parse in (("rating", _parse_rating), ("timestamp", _parse_time)):
        raw = _clean(record.get(names[role])) if names[role] else None
        if raw in (None, ""):
            values.append(float("nan"))
            continue
        try:
            values.append(parse(raw))
        except (TypeError, ValueError, OverflowError):
            problems.append(Problem(row, str(item), f"unreadable {role} {raw!r}"))
            return None
    return str(user), str(item), values[0], values[1]


def _check_left(out: Interactions) -> None:
    if len(out):
        return
    if out.unknown_items:
        raise CatalogError(
            f"{out.path}: none of the {out.unknown_items} interactions is on an item of the "
            f"store (e.g. {', '.join(map(repr, out.unknown_examples))})",
            hint="the interactions' item ids must be the catalog's ids",
        )
    if out.below_min_rating:
        raise CatalogError(f"{out.path}: no interaction has a rating at or above --min-rating")
    first = f" (first problem: {out.problems[0]})" if out.problems else ""
    raise CatalogError(f"{out.path}: no usable interaction{first}")
