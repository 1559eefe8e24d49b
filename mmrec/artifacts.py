"""Aligner and model directories: a typed config that travels with its outputs.

Every directory mmrec writes after the store carries ``config.json``::

    {"format": "mmrec-aligner" | "mmrec-model", "format_version": 1,
     "mmrec_version": ..., "config": {...resolved options...},
     "store": {"path": ..., "encoders": {modality: {"encoder": ..., "dim": ...}}}}

so loading it next to a store made by other encoders is refused with a clear message.
"""
from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mmrec import __version__
from mmrec.atomic import write_json
from mmrec.errors import StoreError

CONFIG = "config.json"
FORMAT_VERSION = 1
T = TypeVar("T")
_REBUILD = "rebuild it with the command that made it"


def read_part(path: Path, load: Callable[[Path], T]) -> T:
    """``load(path)`` for one file of a store, aligner or model directory.

    A missing or damaged file is a one-line StoreError naming it, not a traceback.
    """
    import zipfile

    try:
        return load(path)
    except StoreError:
        raise
    except FileNotFoundError:
        raise StoreError(f"{path.parent}: {path.name} is missing: an incomplete mmrec directory",
                         hint=_REBUILD) from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(f"{path}: damaged file ({first})", hint=_REBUILD) from None


def read_json(path: Path) -> Any:
    return read_part(path, lambda p: json.loads(p.read_text(encoding="utf-8")))


class Kind(str, enum.Enum):
    ALIGNER = "aligner"
    MODEL = "model"


def write_config(directory: Path, kind: Kind, config: Any, store: Any,
                 extra: dict[str, Any] | None = None) -> None:
    """Write ``config.json``; ``config`` is a dataclass or dict, ``store`` a Store or None."""
    resolved = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    write_json(directory / CONFIG, {
        "format": f"mmrec-{Kind(kind).value}",
        "format_version": FORMAT_VERSION,
        "mmrec_version": __version__,
        "config": resolved,
        # None: a model trained on interactions alone (popularity) has no store
        "store": None if store is None else {"path": str(Path(store.path).resolve()),
                                             "encoders": store.encoders()},
        **(extra or {}),
    })


def read_config(directory: str | Path, kind: Kind | None = None) -> dict[str, Any]:
    """``config.json`` of an aligner or model directory, checked to be of ``kind``."""
    directory = Path(directory)
    path = directory / CONFIG
    if not directory.is_dir():
        raise StoreError(f"not found: {directory}")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"{directory} is not an mmrec aligner or model (no {CONFIG})") from None
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: corrupt JSON ({exc.msg})") from exc
    found = str(data.get("format", "")).removeprefix("mmrec-")
    if found not in {k.value for k in Kind}:
        raise StoreError(f"{directory} is not an mmrec aligner or model")
    if kind is not None and found != Kind(kind).value:
        article = {"aligner": "an aligner", "model": "a model"}
        raise StoreError(f"{directory} is {article[found]}, not {article[Kind(kind).value]}")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise StoreError(f"{directory} was written by a newer mmrec ({data.get('mmrec_version')})")
    return data


def check_out(out: Path, kind: Kind) -> None:
    """Refuse an ``--out`` that is a file, or a non-empty directory other than a ``kind``.

    Called before any work, so a wrong --out fails at once, and a store, an aligner or
    a model is never replaced by an artifact of another kind.
    """
    what = f"an mmrec {Kind(kind).value}"
    if out.exists() and not out.is_dir():
        raise StoreError(f"--out {out} is a file, not {what} directory")
    if out.is_dir() and any(out.iterdir()):
        try:
            read_config(out, kind)
        except StoreError:
            raise StoreError(f"--out {out} is a non-empty directory that is not {what}",
                             hint="choose a new --out directory") from None


def kind_of(directory: str | Path) -> Kind:
    return Kind(read_config(directory)["format"].removeprefix("mmrec-"))


def check_store(config: dict[str, Any], store: Any, what: str = "this directory") -> None:
    """Refuse a store whose encoders or dimensions differ from the ones ``config`` was built on."""
    want = config["store"]["encoders"]
    have = store.encoders()
    for modality, spec in want.items():
        got = have.get(modality)
        if got is None:
            raise StoreError(f"store {store.path} has no {modality} vectors, which {what} was built on")
        if got["encoder"] != spec["encoder"] or int(got["dim"]) != int(spec["dim"]):
            raise StoreError(
                f"store {store.path} was encoded with {got['encoder']} ({got['dim']}-d) for "
                f"{modality}, but {what} was built on {spec['encoder']} ({spec['dim']}-d)",
                hint="use the store it was built from, or rebuild it on this store",
            )


def open_store(config: dict[str, Any], store_path: str | Path | None = None, what: str = "this directory"):
    """The store ``config`` was built from (or ``store_path``), checked for compatibility."""
    from mmrec.store import Store

    store = Store.open(store_path or config["store"]["path"])
    check_store(config, store, what)
    return store
