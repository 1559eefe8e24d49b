"""The embedding store: per-modality unit-norm vectors, ids, masks and content hashes.

Layout of a store directory::

    manifest.json          format, versions, encoders per modality, item count, and
                           the name of the current data directory
    data-<gen>/ids.json    item ids, row order of every matrix
    data-<gen>/<m>.npy     (items, dim) float32, L2-normalised rows, zeros where absent
    data-<gen>/<m>.mask.npy  (items,) bool presence mask
    data-<gen>/<m>.norm.npy  (items,) float32 L2 norm of each raw vector before
                           normalising (a linear head on raw features needs it)
    data-<gen>/hashes.json {id: {modality: content hash}}
    data-<gen>/stats.json  {id: {modality: [path, size, mtime_ns]}} of media files, so a
                           re-run trusts an unchanged file's hash without reading it
    data-<gen>/failures.json {id: {modality: [hash, reason]}}: bad inputs, not retried
                           until their content changes
    data-<gen>/items.jsonl metadata per item (title, ...), shown by `recommend`
    .partial/              encoded chunks of an unfinished run (resume journal)

A new generation is written next to the old one and published by replacing
``manifest.json``; readers never see a half-written store. A re-run fills it from the
old one without passing through Python what did not change: runs of unchanged matrix
rows are copied file to file (:func:`copy_rows`, in the kernel where it can), and parts
equal to the old generation's are copied as they are (:func:`copy_file`).
"""
from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from mmrec.artifacts import MANIFEST, Artifact, Kind, read_part, staging
from mmrec.atomic import atomic_open, save_npy, save_npz, write_json
from mmrec.enums import Modality
from mmrec.errors import ArtifactError, StoreError
from mmrec.version import __version__

if TYPE_CHECKING:
    import numpy as np

FORMAT = "mmrec-store"
FORMAT_VERSION = 1
JOURNAL = ".partial"
LOCK = ".lock"


_ITEM_JSON = json.JSONEncoder(ensure_ascii=False, default=str)  # built once, not per line


def _item_line(record: dict[str, Any]) -> str:
    return _ITEM_JSON.encode(record) + "\n"


def write_items(path: Path, items: Iterable[dict[str, Any]]) -> str:
    """Item metadata, one JSON object (with its ``id``) a line; returns its
    :func:`items_digest`, taken on the way (one pass over the items, not two)."""
    digest = hashlib.sha256()
    with atomic_open(path, "w") as fh:
        for record in items:
            line = _item_line(record)
            digest.update(line.encode("utf-8"))
            fh.write(line)
    return digest.hexdigest()[:32]


def items_digest(items: Iterable[dict[str, Any]]) -> str:
    """A hash of what :func:`write_items` would write: a re-run compares it, not the file."""
    digest = hashlib.sha256()
    for record in items:
        digest.update(_item_line(record).encode("utf-8"))
    return digest.hexdigest()[:32]


def read_items(path: Path, error: type[ArtifactError] = StoreError) -> dict[str, dict[str, Any]]:
    """``{id: metadata}`` from a file written by :func:`write_items`."""
    def load(p: Path) -> dict[str, dict[str, Any]]:
        out = {}
        with open(p, encoding="utf-8") as fh:
            for line in fh:
                record = json.loads(line)
                out[record.pop("id")] = record
        return out

    return read_part(path, load, error)


def read_json(path: Path) -> Any:
    return read_part(path, lambda p: json.loads(p.read_text(encoding="utf-8")), StoreError)


class Store:
    """A read-only view of one published store generation."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.data_dir = path / manifest["data"]
        self.ids: list[str] = read_json(self.data_dir / "ids.json")
        self._index: dict[str, int] | None = None  # built on the first row(): most users never ask

    @classmethod
    def open(cls, path: str | Path) -> Store:
        artifact = Artifact.open(path, Kind.STORE)
        return cls(artifact.path, artifact.config)

    @staticmethod
    def exists(path: str | Path) -> bool:
        return (Path(path) / MANIFEST).is_file()

    @property
    def modalities(self) -> list[Modality]:
        return [m for m in Modality if m.value in self.manifest["modalities"]]  # text, image, audio

    def encoder(self, modality: Modality | str) -> str:
        return self.manifest["modalities"][Modality(modality).value]["encoder"]

    def dim(self, modality: Modality | str) -> int:
        return int(self.manifest["modalities"][Modality(modality).value]["dim"])

    def encoders(self) -> dict[str, dict[str, Any]]:
        """``{modality: {encoder, dim}}``: what a model built on this store must match."""
        return {m: {"encoder": v["encoder"], "dim": v["dim"]}
                for m, v in self.manifest["modalities"].items()}

    def _check(self, modality: Modality | str) -> Modality:
        modality = Modality(modality)
        if modality.value not in self.manifest["modalities"]:
            have = ", ".join(self.manifest["modalities"]) or "none"
            raise StoreError(f"store {self.path} has no {modality.value} vectors (it has: {have})")
        return modality

    def matrix(self, modality: Modality | str, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The full ``(items, dim)`` matrix (zeros where absent) and its presence mask."""
        import numpy as np

        m = self._check(modality).value
        matrix = read_part(self.data_dir / f"{m}.npy",
                           lambda p: np.load(p, mmap_mode="r" if mmap else None), StoreError)
        mask = read_part(self.data_dir / f"{m}.mask.npy", np.load, StoreError)
        return matrix, mask

    def norms(self, modality: Modality | str) -> np.ndarray:
        """``(items,)`` L2 norms of the raw vectors: ``matrix * norms[:, None]`` is raw."""
        import numpy as np

        return read_part(self.data_dir / f"{self._check(modality).value}.norm.npy", np.load,
                         StoreError)

    def vectors(self, modality: Modality | str) -> tuple[list[str], np.ndarray]:
        """Ids and unit-norm float32 rows of the items that have ``modality``."""
        import numpy as np

        matrix, mask = self.matrix(modality)
        rows = np.flatnonzero(mask)
        return [self.ids[i] for i in rows], np.asarray(matrix[rows], dtype=np.float32)

    def hashes(self) -> dict[str, dict[str, str]]:
        return read_json(self.data_dir / "hashes.json")

    def stats(self) -> dict[str, dict[str, list[Any]]]:
        """``{id: {modality: [path, size, mtime_ns]}}`` of the media files hashed last time."""
        path = self.data_dir / "stats.json"
        return read_json(path) if path.exists() else {}

    def failures(self) -> dict[str, dict[str, list[str]]]:
        """``{id: {modality: [content hash, reason]}}`` of inputs that could not be encoded."""
        path = self.data_dir / "failures.json"
        return read_json(path) if path.exists() else {}

    def items(self) -> dict[str, dict[str, Any]]:
        """Metadata per item id (title and the catalog's other fields)."""
        return read_items(self.data_dir / "items.jsonl")

    def row(self, item_id: str) -> int:
        if self._index is None:
            self._index = {item_id: i for i, item_id in enumerate(self.ids)}
        try:
            return self._index[item_id]
        except KeyError:
            raise StoreError(f"unknown item id {item_id!r} in store {self.path}") from None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Column:
    """One modality's vectors for a new generation, rows aligned with the ids."""

    encoder: str
    dim: int
    matrix: np.ndarray | None  # None: already written into the Draft being published
    mask: np.ndarray
    norms: np.ndarray


def release(array: Any) -> None:
    """Write back a memory map's dirty pages and drop them from this process's memory.

    Pages of a file mapping count as resident until the kernel evicts them: without
    this, streaming 1.5 GB of vectors through a memmap would still show 1.5 GB of RSS.
    """
    import mmap

    handle = getattr(array, "_mmap", None)
    if handle is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    if array.flags.writeable:
        array.flush()
    handle.madvise(mmap.MADV_DONTNEED)


_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP,
                   errno.EBADF, errno.EPERM}
MIN_RUN = 8  # rows: shorter runs on average are gathered through memory maps instead


def _copy_ranges(src: BinaryIO, dst: BinaryIO, ranges: Iterable[tuple[int, int, int]]) -> None:
    """Copy ``(source offset, target offset, bytes)`` ranges between two open files.

    In the kernel where it can (``os.copy_file_range``: the bytes never pass through
    this process, nor count in its memory; file systems with shared extents reflink
    them); by reads and writes where it cannot (other systems, file systems that
    refuse it).
    """
    kernel = getattr(os, "copy_file_range", None)
    for src_at, dst_at, count in ranges:
        while count > 0:
            done = -1
            if kernel is not None:
                try:
                    done = kernel(src.fileno(), dst.fileno(), count, src_at, dst_at)
                except OSError as exc:
                    if exc.errno not in _NO_KERNEL_COPY:
                        raise
                    kernel = None
            if done < 0:
                src.seek(src_at)
                data = src.read(min(count, 1 << 24))
                dst.seek(dst_at)
                dst.write(data)
                done = len(data)
            if done == 0:
                raise StoreError(f"{src.name} is shorter than its header says: the store is "
                                 "damaged", hint="delete the store and encode again")
            src_at, dst_at, count = src_at + done, dst_at + done, count - done


def copy_file(source: Path, target: Path) -> None:
    """An unchanged part of the old generation, copied (atomically) into the new one."""
    with open(source, "rb", buffering=0) as src, atomic_open(target, "wb") as dst:
        _copy_ranges(src, dst, [(0, 0, os.fstat(src.fileno()).st_size)])


def copy_rows(source: Path, target: Path, rows: np.ndarray, from_rows: np.ndarray,
              chunk: int = 1 << 16) -> None:
    """Copy rows ``from_rows`` of the ``.npy`` matrix ``source`` into rows ``rows`` of the
    ``.npy`` matrix ``target`` (same dtype and width, already at its full size), on disk.

    A re-run's unchanged items mostly keep their order, so their rows come in long runs:
    each run is one in-kernel copy, and a million rows cost no per-row work in Python
    nor their pages in this process's memory. Scattered rows (a reordered catalog) are
    gathered through memory maps, a chunk at a time.
    """
    import numpy as np

    if len(rows) == 0:
        return
    order = np.argsort(rows, kind="stable")
    rows, from_rows = np.asarray(rows)[order], np.asarray(from_rows)[order]
    old, new = np.load(source, mmap_mode="r"), np.load(target, mmap_mode="r+")
    if old.dtype != new.dtype or old.shape[1:] != new.shape[1:]:
        raise StoreError(f"cannot copy rows of {source} ({old.dtype}, {old.shape}) into "
                         f"{target} ({new.dtype}, {new.shape})")
    breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(from_rows) != 1)) + 1
    starts = np.concatenate(([0], breaks))
    if len(starts) * MIN_RUN > len(rows) or not (old.flags.c_contiguous and new.flags.c_contiguous):
        for at in range(0, len(rows), chunk):
            new[rows[at:at + chunk]] = old[from_rows[at:at + chunk]]
            release(new)
            release(old)
        return
    width = old.dtype.itemsize * int(np.prod(old.shape[1:], dtype=np.int64))
    lengths = np.diff(np.concatenate((starts, [len(rows)])))
    ranges = zip((old.offset + from_rows[starts] * width).tolist(),
                 (new.offset + rows[starts] * width).tolist(), (lengths * width).tolist(),
                 strict=True)
    del old, new  # the copy goes file to file: no mapping needed
    with open(source, "rb", buffering=0) as src, open(target, "r+b", buffering=0) as dst:
        _copy_ranges(src, dst, ranges)
        os.fsync(dst.fileno())  # durable before the manifest names this generation


def _generation_name() -> str:
    return f"data-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}"


class Draft:
    """A generation being written: its matrices are memory-mapped ``.npy`` files filled
    chunk by chunk, so an encode run never holds every vector in memory.

    It lives in a hidden ``.data-*.tmp`` directory, published by :func:`write_store`
    with one rename; a killed run's draft is removed by the next publish.
    """

    def __init__(self, path: Path, rows: int) -> None:
        self.generation = _generation_name()
        self._stack = contextlib.ExitStack()  # the one artifact layer's staging, held open
        self.dir = self._stack.enter_context(staging(path / self.generation))
        self.rows = rows

    def matrix(self, modality: str, dim: int) -> np.ndarray:
        """A zero-filled, writable ``(rows, dim)`` float32 memmap for ``modality``."""
        from numpy.lib.format import open_memmap

        return open_memmap(self.dir / f"{modality}.npy", mode="w+", dtype="float32",
                           shape=(self.rows, dim))

    def keep(self, modality: str, rows: np.ndarray, chunk: int = 1 << 16) -> None:
        """Keep only ``rows`` of ``modality``'s matrix (items left with no vector at all)."""
        import numpy as np
        from numpy.lib.format import open_memmap

        if len(rows) == self.rows:
            return
        path, tmp = self.dir / f"{modality}.npy", self.dir / f".{modality}.compact.npy"
        source = np.load(path, mmap_mode="r")
        dtype, width = source.dtype, source.shape[1]
        del source
        open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(rows), width))  # header and size
        copy_rows(path, tmp, np.arange(len(rows)), rows, chunk)
        os.replace(tmp, path)

    def publish(self) -> None:
        self._stack.close()  # staging renames the complete directory into place

    def discard(self) -> None:
        error = StoreError("draft discarded")
        self._stack.__exit__(type(error), error, None)  # staging removes the directory


def _write_generation(staging: Path, ids: list[str], columns: dict[str, Column],
                      hashes: dict[str, dict[str, str]], items: Iterable[dict[str, Any]],
                      failures: dict[str, dict[str, list[str]]] | None,
                      stats: dict[str, dict[str, list[Any]]] | None,
                      carry: dict[str, Path]) -> str:
    """Write every part but the draft's matrices; returns the items' digest.

    A part named in ``carry`` is the same as that file of the old generation: it is
    copied, not serialised again (a re-run with few changes rewrites only what changed).
    """
    parts = {"ids.json": ids, "hashes.json": hashes, "failures.json": failures or {},
             "stats.json": stats or {}}
    for name, data in parts.items():
        if name in carry:
            copy_file(carry[name], staging / name)
        else:
            write_json(staging / name, data, indent=None)  # one entry per item: C-encoder speed
    digest = write_items(staging / "items.jsonl", items)
    for modality, column in columns.items():
        if column.matrix is not None:
            save_npy(staging / f"{modality}.npy", column.matrix)
        save_npy(staging / f"{modality}.mask.npy", column.mask)
        save_npy(staging / f"{modality}.norm.npy", column.norms)
    return digest


def write_store(path: Path, ids: list[str], columns: dict[str, Column],
                hashes: dict[str, dict[str, str]], items: Iterable[dict[str, Any]],
                info: dict[str, Any], failures: dict[str, dict[str, list[str]]] | None = None,
                stats: dict[str, dict[str, list[Any]]] | None = None,
                draft: Draft | None = None, carry: dict[str, Path] | None = None) -> Store:
    """Publish a new generation atomically, then remove older generations and the journal.

    With ``draft``, the matrices are already in its directory (columns' ``matrix`` None).
    ``items`` may be a generator: it is written in one pass. ``carry``: parts (file
    names) equal to the old generation's, as ``{name: old file}``, copied as they are.
    """
    write = functools.partial(_write_generation, ids=ids, columns=columns, hashes=hashes,
                              items=items, failures=failures, stats=stats, carry=carry or {})
    if draft is None:
        generation = _generation_name()
        with staging(path / generation) as tmp:
            digest = write(tmp)
    else:
        generation = draft.generation
        try:
            digest = write(draft.dir)
            draft.publish()
        except BaseException:
            draft.discard()
            raise
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mmrec_version": __version__,
        "data": generation,
        "items": len(ids),
        "modalities": {m: {"encoder": c.encoder, "dim": c.dim, "normalized": True,
                           "count": int(c.mask.sum())} for m, c in columns.items()},
        "items_digest": digest,
        **info,
    }
    write_json(path / MANIFEST, manifest)
    for old in path.glob("data-*"):
        if old.name != generation:
            shutil.rmtree(old, ignore_errors=True)
    for stale in path.glob(".data-*.tmp"):  # staging left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(path / JOURNAL, ignore_errors=True)
    return Store(path, manifest)


class Journal:
    """Chunks encoded by an unfinished run, so a killed run resumes where it stopped."""

    def __init__(self, store_path: Path) -> None:
        self.dir = store_path / JOURNAL
        self._next: dict[str, int] = {}  # per modality; the directory is listed once, not per chunk

    def load(self, modality: str, encoder: str) -> dict[str, tuple[str, np.ndarray, float]]:
        """``{id: (hash, unit vector, raw norm)}`` of every finished chunk made by ``encoder``."""
        import numpy as np

        done: dict[str, tuple[str, np.ndarray, float]] = {}
        for chunk in sorted(self.dir.glob(f"{modality}-*.npz")):
            try:
                with np.load(chunk, allow_pickle=False) as data:
                    if str(data["encoder"]) != encoder:
                        continue
                    for row in zip(data["ids"], data["hashes"], data["vectors"], data["norms"],
                                   strict=True):
                        done[str(row[0])] = (str(row[1]), row[2], float(row[3]))
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                chunk.unlink(missing_ok=True)  # a damaged chunk: its items are encoded again
                continue
        return done

    def append(self, modality: str, encoder: str, ids: list[str], hashes: list[str],
               vectors: np.ndarray, norms: np.ndarray) -> None:
        import numpy as np

        self.dir.mkdir(parents=True, exist_ok=True)
        if modality not in self._next:
            names = [p.stem for p in self.dir.glob(f"{modality}-*.npz")]
            self._next[modality] = 1 + max((int(n.rsplit("-", 1)[1]) for n in names
                                            if n.rsplit("-", 1)[1].isdigit()), default=-1)
        seq = self._next[modality]
        self._next[modality] += 1
        save_npz(self.dir / f"{modality}-{seq:06d}.npz", encoder=np.array(encoder),
                 ids=np.array(ids), hashes=np.array(hashes), vectors=vectors, norms=norms)


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold the store's write lock: a second writer fails at once instead of interleaving.

    A run that fails before it wrote anything (no device, no model) takes back what it
    made: the lock file, and the directory if it created it. Anything else, such as the
    journal of chunks already encoded, stays so the next run resumes from it.
    """
    created, had_lock = not path.exists(), (path / LOCK).exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        with _flock(path):
            yield
    except BaseException:
        if not had_lock:
            _take_back(path, created)
        raise


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one writer at a time is on the user
        yield
        return
    with open(path / LOCK, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"{path} is being written by another mmrec process",
                             hint="wait for it to finish, or write to another --out") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _take_back(path: Path, created: bool) -> None:
    if {p.name for p in path.iterdir()} - {LOCK}:
        return  # a journal or a published store: a later run resumes from it
    (path / LOCK).unlink(missing_ok=True)
    if created:
        with contextlib.suppress(OSError):
            path.rmdir()


def is_reusable_dir(path: Path) -> bool:
    """An --out that is absent, empty, a store, or a store's unfinished first run."""
    if not path.exists():
        return True
    def own(p: Path) -> bool:  # what an interrupted first run of ours can leave behind
        return p.name in (LOCK, JOURNAL) or p.name.startswith(("data-", ".data-"))

    return path.is_dir() and (Store.exists(path) or all(own(p) for p in path.iterdir()))


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


def open_store(config: dict[str, Any], store_path: str | Path | None = None,
               what: str = "this directory"):
    """The store ``config`` was built from (or ``store_path``), checked for compatibility.

    A recorded store that is gone is named as ``what``'s reference (the directory may
    have been moved without it), with ``--store`` as the way out.
    """
    path = Path(store_path or config["store"]["path"])
    if store_path is None and not path.is_dir():
        raise StoreError(f"{what} refers to the store {path}, which is not there "
                         "(moved or deleted?)", hint="give the store with --store")
    store = Store.open(path)
    check_store(config, store, what)
    return store
