"""The artifact layer: every directory mmrec writes is created and opened here.

A directory's kind (store, aligner, model, heads) is named by its descriptor file,
``manifest.json`` for a store and ``config.json`` for the others::

    {"format": "mmrec-<kind>", "format_version": 1, "mmrec_version": ...,
     "config": {...resolved options...},
     "store": {"path": ..., "encoders": {modality: {"encoder": ..., "dim": ...}}}}

- :meth:`Artifact.open` is the one descriptor reader: it checks the format, the kind
  and the version, and raises the error of the kind asked for (``StoreError``,
  ``AlignerError``, ``ModelError``, ``HeadsError``, all ``ArtifactError``).
- :func:`staging` is the one way to write a directory: files go into a hidden sibling,
  which is published with :func:`mmrec.atomic.publish_dir` or removed on failure, so a
  reader sees the old directory or the complete new one. Directories follow the umask.
- :meth:`Artifact.create` is ``check_out`` + ``staging``.

A bottom module: it imports only errors, enums, version and atomic.
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mmrec.atomic import publish_dir, write_json
from mmrec.errors import (
    AlignerError,
    ArtifactError,
    HeadsError,
    ModelError,
    StoreError,
)
from mmrec.version import __version__

CONFIG = "config.json"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
T = TypeVar("T")
_REBUILD = "rebuild it with the command that made it"


class Kind(str, enum.Enum):
    STORE = "store"
    ALIGNER = "aligner"
    MODEL = "model"
    HEADS = "heads"

    def __str__(self) -> str:
        return self.value

    @property
    def error(self) -> type[ArtifactError]:
        return _ERRORS[self]

    @property
    def descriptor(self) -> str:
        return MANIFEST if self is Kind.STORE else CONFIG

    @property
    def article(self) -> str:
        return {"aligner": "an aligner", "heads": "a heads directory"}.get(self.value,
                                                                          f"a {self.value}")


_ERRORS: dict[Kind, type[ArtifactError]] = {
    Kind.STORE: StoreError, Kind.ALIGNER: AlignerError, Kind.MODEL: ModelError,
    Kind.HEADS: HeadsError,
}


def read_part(path: Path, load: Callable[[Path], T],
              error: type[ArtifactError] = ArtifactError) -> T:
    """``load(path)`` for one file of an mmrec directory.

    A missing or damaged file is a one-line ``error`` naming it, not a traceback.
    """
    import zipfile

    try:
        return load(path)
    except ArtifactError:
        raise
    except FileNotFoundError:
        raise error(f"{path.parent}: {path.name} is missing: an incomplete mmrec directory",
                    hint=_REBUILD) from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"{path}: damaged file ({first})", hint=_REBUILD) from None


def read_json(path: Path, error: type[ArtifactError] = ArtifactError) -> Any:
    return read_part(path, lambda p: json.loads(p.read_text(encoding="utf-8")), error)


@dataclass(frozen=True)
class Artifact:
    """An opened mmrec directory: its path, its kind and its descriptor."""

    path: Path
    kind: Kind
    config: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path, *kinds: Kind) -> Artifact:
        """Read the descriptor of ``path``; refuse a kind other than ``kinds`` (default: any)."""
        path, kinds = Path(path), tuple(Kind(k) for k in kinds)
        error = kinds[0].error if len(kinds) == 1 else ArtifactError
        if not path.is_dir():
            raise error(f"{_what(kinds)} not found: {path}", hint=_not_found_hint(kinds))
        data = _descriptor(path, kinds, error)
        found = _kind(data)
        if found is None or (kinds and found not in kinds):
            raise error(_wrong_kind(path, found, kinds))
        if data.get("format_version", 0) > FORMAT_VERSION:
            raise error(f"{path} was written by a newer mmrec ({data.get('mmrec_version')}); "
                        "upgrade mmrec")
        return cls(path, found, data)

    @staticmethod
    @contextlib.contextmanager
    def create(out: str | Path, kind: Kind) -> Iterator[Path]:
        """Stage a new ``kind`` directory for ``out``; published when the block ends."""
        out = Path(out)
        check_out(out, kind)
        with staging(out) as tmp:
            yield tmp
            check_out(out, kind)  # again: --out may have changed while the work ran


def _what(kinds: tuple[Kind, ...]) -> str:
    return kinds[0].value if len(kinds) == 1 else " or ".join(k.value for k in kinds) + " directory"


def _not_found_hint(kinds: tuple[Kind, ...]) -> str | None:
    return "create one with `mmrec encode`" if kinds == (Kind.STORE,) else None


def _descriptor(path: Path, kinds: tuple[Kind, ...], error: type[ArtifactError]) -> dict[str, Any]:
    # config.json first: an aligner also holds its store's manifest.json
    file = next((path / n for n in (CONFIG, MANIFEST) if (path / n).is_file()), None)
    if file is None and Kind.STORE not in kinds:
        raise error(f"{path} is not {_articles(kinds)} (no {CONFIG})")
    data = read_json(file or path / MANIFEST, error)
    if not isinstance(data, dict):
        raise error(f"{file}: damaged file (not a JSON object)", hint=_REBUILD)
    return data


def _kind(data: dict[str, Any]) -> Kind | None:
    found = str(data.get("format", "")).removeprefix("mmrec-")
    return Kind(found) if found in {k.value for k in Kind} else None


def _articles(kinds: tuple[Kind, ...]) -> str:
    return "an mmrec " + " or ".join(k.value for k in kinds or (Kind.ALIGNER, Kind.MODEL))


def _wrong_kind(path: Path, found: Kind | None, kinds: tuple[Kind, ...]) -> str:
    if found is None:
        return f"{path} is not {_articles(kinds)}"
    return f"{path} is {found.article}, not {' or '.join(k.article for k in kinds)}"


@contextlib.contextmanager
def staging(final: Path) -> Iterator[Path]:
    """A hidden sibling of ``final`` to write into, published as ``final`` at the end.

    On any failure the staging directory is removed and ``final`` is left as it was.
    The directory is made with ``mkdir`` so it follows the umask (``mkdtemp`` would
    make it 0700).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{time.time_ns() % 10**9:09d}.tmp")
    tmp.mkdir()
    try:
        yield tmp
        publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
    kinds = (Kind(kind),) if kind is not None else (Kind.ALIGNER, Kind.MODEL)
    return Artifact.open(directory, *kinds).config


def check_out(out: Path, kind: Kind) -> None:
    """Refuse an ``--out`` that is a file, or a non-empty directory other than a ``kind``.

    Called before any work, so a wrong --out fails at once, and a store, an aligner or
    a model is never replaced by an artifact of another kind.
    """
    kind = Kind(kind)
    what = f"an mmrec {kind.value}"
    if out.exists() and not out.is_dir():
        raise kind.error(f"--out {out} is a file, not {what} directory")
    if out.is_dir() and any(out.iterdir()):
        try:
            Artifact.open(out, kind)
        except ArtifactError:
            raise kind.error(f"--out {out} is a non-empty directory that is not {what}",
                             hint="choose a new --out directory") from None


def kind_of(directory: str | Path) -> Kind:
    """The kind of an aligner or model directory (what ``recommend``/``evaluate`` read)."""
    return Artifact.open(directory, Kind.ALIGNER, Kind.MODEL).kind
