"""Reading and validating catalogs, and decoding their images and audio.

A catalog is JSONL or CSV, one item per row: ``id`` (required, unique), text fields,
``image`` and ``audio`` paths relative to the catalog file, anything else metadata.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.encoders.base import Modality
from mmrec.errors import CatalogError, InputError

if TYPE_CHECKING:
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
        return {Modality.TEXT: self.text, Modality.IMAGE: self.image,
                Modality.AUDIO: self.audio}[modality]

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


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(row number, record) pairs; row numbers are the file's line numbers."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CatalogError(f"{path}: row {lineno}: invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise CatalogError(f"{path}: row {lineno}: expected a JSON object")
            rows.append((lineno, record))
        return rows
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        # Row 1 is the header, so data rows start at line 2.
        return [(i, dict(r)) for i, r in enumerate(reader, start=2)]
    raise CatalogError(f"{path}: unknown catalog format {suffix!r}; use .jsonl or .csv")


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
    if not path.is_file():
        raise CatalogError(f"catalog not found: {path}")
    rows = _rows(path)
    if not rows:
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
    items, problems, seen = [], [], {}
    for row, record in rows:
        item = _item(path, row, {k: _clean(v) for k, v in record.items()}, fields, problems)
        if item is None:
            continue
        if item.id in seen:
            raise CatalogError(f"{path}: duplicate id {item.id!r} in rows {seen[item.id]} and {row}")
        seen[item.id] = row
        items.append(item)
    return Catalog(path, items, problems, fields)


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
