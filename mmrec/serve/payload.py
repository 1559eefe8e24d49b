"""Request bodies -> :class:`mmrec.query.Query`, every bad field a one-line error.

Uploaded image and audio bytes are written to files in a per-request directory, so the
handle reads them exactly as ``mmrec recommend --image FILE`` does.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
from pathlib import Path
from typing import Any

from mmrec.errors import ConfigError, InputError
from mmrec.query import Query
from mmrec.serve.config import ServeConfig

SEARCH = {"text", "item", "items", "image", "audio", "modality", "k", "explain", "name"}
RECOMMEND = {"user", "history", "item", "items", "k", "explain", "include_seen", "name"}


class TooLargeError(InputError):
    """A body or an upload over the server's limits (HTTP 413)."""


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the body is not valid JSON ({getattr(exc, 'msg', exc)})") from None
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    return body


def search_query(body: dict[str, Any], uploads: Path, config: ServeConfig) -> tuple[str | None, Query]:
    _fields(body, SEARCH)
    query = Query(text=_text(body), items=_ids(body, "item", "items"), k=_k(body, config),
                  modality=_str(body, "modality") or "fused", explain=_bool(body, "explain"))
    query.image = _upload(body, "image", uploads, config)
    query.audio = _upload(body, "audio", uploads, config)
    if query.text is None and query.image is None and query.audio is None and not query.items:
        raise InputError('nothing to search for: give "text", "item", "image" or "audio"')
    return _str(body, "name"), query


def recommend_query(body: dict[str, Any], config: ServeConfig) -> tuple[str | None, Query]:
    _fields(body, RECOMMEND)
    query = Query(user=_str(body, "user"), history=_ids(body, "history"),
                  items=_ids(body, "item", "items"), k=_k(body, config),
                  explain=_bool(body, "explain"), exclude_seen=not _bool(body, "include_seen"))
    if query.user is None and not query.history and not query.items:
        raise InputError('nothing to recommend for: give "user", "history" or "item"')
    return _str(body, "name"), query


def _fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(sorted(allowed))}")


def _str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f'"{key}" must be a string')
    return value


def _text(body: dict[str, Any]) -> str | None:
    text = _str(body, "text")
    if text is not None and not text.strip():
        raise InputError('"text" is empty')
    return text


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f'"{key}" must be true or false')
    return value


def _k(body: dict[str, Any], config: ServeConfig) -> int:
    k = body.get("k", 10)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= config.max_k:
        raise ConfigError(f'"k" must be a whole number from 1 to {config.max_k}, got {k!r}')
    return k


def _ids(body: dict[str, Any], *keys: str) -> list[str]:
    """Item ids under any of ``keys``: one string or a list of strings."""
    out: list[str] = []
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise ConfigError(f'"{key}" must be an item id or a list of item ids')
        out += values
    return out


def _upload(body: dict[str, Any], key: str, uploads: Path, config: ServeConfig) -> Path | None:
    """The base64 bytes of ``body[key]`` as a file named ``key`` in ``uploads``."""
    value = _str(body, key)
    if value is None:
        return None
    if "," in value[:100] and value.startswith("data:"):  # a data: URL from a browser
        value = value.split(",", 1)[1]
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f'"{key}" is not base64') from None
    if not data:
        raise InputError(f'"{key}" is empty')
    if key == "image":
        _check_pixels(data, config.max_pixels)
    path = uploads / key
    path.write_bytes(data)
    return path


def _check_pixels(data: bytes, limit: int) -> None:
    """Refuse a huge image from its header, before anything decodes its pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Image.DecompressionBombError:
        raise TooLargeError(f'"image" is over the limit of {limit:,} pixels') from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InputError('"image": not an image Pillow can read') from None
    if width * height > limit:
        raise TooLargeError(f'"image" has {width}x{height} pixels, over the limit of {limit:,}')
