"""Anonymised models: user ids kept only as keyed hashes (HMAC-SHA256).

``train --anonymize --key KEYFILE`` maps every user id through
``HMAC-SHA256(key, id)`` (hex) before anything is written, so the model directory
(users.json, interactions.npz, config.json and its report) never holds a raw id.
The key is 32 random bytes in KEYFILE, created (mode 0600) if absent, and must live
outside the model directory: with the key beside the hashes, anyone could test a
guessed id. ``recommend --user RAW --key KEYFILE`` hashes the same way. The model's
config records a fingerprint of the key (an HMAC of a fixed label, not the key), so
a wrong key is refused with a clear line instead of an "unknown user".
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from mmrec.errors import ConfigError, ModelError

KEY_BYTES = 32
FINGERPRINT_LABEL = b"mmrec key fingerprint"


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def load_key(path: str | Path, model_dir: str | Path | None = None, create: bool = False) -> bytes:
    """The secret key in ``path``; with ``create``, written there first if absent.

    Refused when ``path`` lies inside ``model_dir`` (the key would travel with the hashes).
    """
    path = Path(path).expanduser().resolve()
    if model_dir is not None and _inside(path, Path(model_dir).expanduser().resolve()):
        raise ConfigError(f"--key {path} is inside the model directory {model_dir}",
                          hint="keep the key outside the model: whoever holds both can test guessed ids")
    if not path.exists():
        if not create:
            raise ConfigError(f"key file not found: {path}",
                              hint="pass the --key file the model was trained with")
        _write_key(path)
    if not path.is_file():
        raise ConfigError(f"--key {path} is not a file")
    key = path.read_bytes()
    if len(key) < 16:
        raise ConfigError(f"key file {path} holds {len(key)} bytes; a key needs at least 16")
    return key


def _write_key(path: Path) -> None:
    """32 random bytes, readable by the owner only, created exclusively (never overwritten)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(KEY_BYTES))


def hash_id(key: bytes, raw: str) -> str:
    """The keyed hash that stands for ``raw`` in an anonymised model."""
    return hmac.new(key, str(raw).encode("utf-8"), hashlib.sha256).hexdigest()


def fingerprint(key: bytes) -> str:
    """Names the key in a model's config without revealing it."""
    return hmac.new(key, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]


def anonymize(found: Any, key: bytes) -> Any:
    """``found`` (mmrec.catalog.Interactions) with every user id replaced by its hash."""
    # one HMAC per distinct user, not per row: the rows keep their codes
    return dataclasses.replace(found, user_ids=[hash_id(key, u) for u in found.user_ids])


def privacy_record(key: bytes) -> dict[str, Any]:
    """What a model's config says about its ids: hashed, and with which key."""
    return {"anonymized": True, "hash": "hmac-sha256", "key_fingerprint": fingerprint(key)}


def user_key(config: dict[str, Any], key_path: str | Path | None, model_dir: Path) -> bytes | None:
    """The key to hash user ids for a model with ``config``; None for a model of raw ids.

    Raises ConfigError for an anonymised model without ``key_path`` or with another key.
    """
    record = config.get("privacy") or {}
    if not record.get("anonymized"):
        if key_path is not None:
            raise ConfigError(f"model {model_dir} keeps raw user ids: --key does not apply")
        return None
    if key_path is None:
        raise ConfigError(f"model {model_dir} is anonymised: its users are keyed hashes",
                          hint="pass --key KEYFILE, the key it was trained with")
    key = load_key(key_path, model_dir)
    if fingerprint(key) != record.get("key_fingerprint"):
        raise ModelError(f"--key {key_path} is not the key model {model_dir} was trained with")
    return key


def map_user(config: dict[str, Any], key_path: str | Path | None, model_dir: Path,
             raw: str) -> str:
    """The id ``raw`` goes by in the model: itself, or its keyed hash (see :func:`user_key`)."""
    key = user_key(config, key_path, model_dir)
    return raw if key is None else hash_id(key, raw)
