"""``mmrec encode``: embed every item of a catalog into a store, incrementally.

Per modality, an item is encoded only if its content hash is new: unchanged items are
reused from the store, items finished by a killed run from its journal. Work is done in
chunks, each appended to the journal atomically, so an interrupted run loses at most
the chunk in flight.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.catalog import Catalog, Item, Problem, load_audio, load_image, read_catalog
from mmrec.encoders.base import Encoder
from mmrec.enums import Engine, Modality, OnError
from mmrec.errors import ConfigError, InputError, StoreError
from mmrec.progress import NullProgress, Progress
from mmrec.ray_encode import RayRunner
from mmrec.store import (
    JOURNAL,
    Column,
    Draft,
    Journal,
    Store,
    copy_rows,
    is_reusable_dir,
    items_digest,
    release,
    write_lock,
    write_store,
)

if TYPE_CHECKING:
    import numpy as np


@dataclass
class EncodeReport:
    store: str
    items: int
    vectors: dict[str, int]
    encoded: dict[str, int]
    reused: dict[str, int]
    removed: int
    skipped: list[Problem]
    seconds: float
    device: str | None  # None when nothing needed encoding: no device was used
    encoders: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.store, "items": self.items, "vectors": self.vectors,
            "encoded": self.encoded, "reused": self.reused, "removed": self.removed,
            "skipped": [p.as_dict() for p in self.skipped], "seconds": round(self.seconds, 3),
            "device": self.device, "encoders": self.encoders,
        }


def resolve_encoders(preset: str, overrides: dict[str, str] | None) -> dict[Modality, str]:
    from mmrec.resources import preset as load_preset

    names = {as_modality(m): n for m, n in load_preset(preset)["encoders"].items()}
    for modality, name in (overrides or {}).items():
        names[as_modality(modality)] = name
    return names


def as_modality(value: Modality | str) -> Modality:
    try:
        return Modality(value)
    except ValueError:
        raise ConfigError(f"unknown modality {str(value)!r}; choose from "
                          + ", ".join(m.value for m in Modality)) from None


def _choose_modalities(catalog: Catalog, requested: list[Modality] | None,
                       available: dict[Modality, str]) -> list[Modality]:
    present = catalog.modalities()
    if requested is None:
        return [m for m in present if m in available]
    for modality in requested:
        if modality not in available:
            raise ConfigError(f"no {modality.value} encoder in the preset; pass --{modality.value}-encoder")
        if modality not in present:
            raise ConfigError(f"{catalog.path}: no item has {modality.value}")
    return list(requested)


def _prepare(item: Item, modality: Modality, encoder: Encoder) -> Any:
    if modality is Modality.TEXT:
        return item.text
    if modality is Modality.IMAGE:
        return load_image(item.image)
    return load_audio(item.audio, encoder.sample_rate)


def _decode(chunk: list[tuple[Item, str]], modality: Modality,
            encoder: Encoder) -> list[tuple[Item, str, Any]]:
    """Each item's model input, or the InputError that says why it has none."""
    out = []
    for item, digest in chunk:
        try:
            out.append((item, digest, _prepare(item, modality, encoder)))
        except InputError as exc:
            out.append((item, digest, exc))
        except Exception as exc:  # a decoder's own failure on one file must not end the run
            first = str(exc).splitlines()[0] if str(exc) else ""
            out.append((item, digest, InputError(f"cannot decode ({type(exc).__name__}: {first})")))
    return out


@dataclass
class EncodedChunk:
    """One chunk's outcome: rows that failed (with why), and vectors for the others."""

    bad: list[tuple[Item, str, str]]  # (item, hash, reason)
    ready: list[tuple[Item, str]]  # rows of ``vectors``
    vectors: np.ndarray
    norms: np.ndarray


def encode_decoded(encoder: Encoder, decoded: list[tuple[Item, str, Any]],
                   batch_size: int | None, advance: Any = None) -> EncodedChunk:
    """Encode a decoded chunk; undecodable inputs and non-finite vectors become bad rows.

    Needs only the loaded encoder, so a Ray worker runs it as is (mmrec.ray_encode)."""
    import numpy as np

    advance = advance or (lambda n=1, **_: None)
    bad = [(item, digest, str(value)) for item, digest, value in decoded
           if isinstance(value, InputError)]
    advance(len(bad))
    ready = [(item, digest) for item, digest, value in decoded if not isinstance(value, InputError)]
    inputs = [value for _, _, value in decoded if not isinstance(value, InputError)]
    if not ready:
        return EncodedChunk(bad, [], np.zeros((0, encoder.dim), np.float32), np.zeros(0, np.float32))
    vecs, norms = encoder.encode(inputs, batch_size, on_batch=advance, return_norms=True)
    finite = np.isfinite(vecs).all(axis=1)
    bad += [(item, digest, "encoder returned NaN or infinite values")
            for (item, digest), ok in zip(ready, finite, strict=True) if not ok]
    return EncodedChunk(bad, [pair for pair, ok in zip(ready, finite, strict=True) if ok],
                        vecs[finite], norms[finite])


@dataclass
class _Sources:
    """Where one modality's vectors come from in this run, by new row number."""

    store: list[tuple[int, int]] = field(default_factory=list)  # (new row, old store row)
    journal: list[tuple[int, np.ndarray, float]] = field(default_factory=list)
    todo: list[tuple[Item, str]] = field(default_factory=list)


class _Run:
    """State of one encode run over one store.

    Vectors never gather in memory: reused ones are copied from the old generation's
    memory map and new ones written, chunk by chunk, into the new generation's (a
    :class:`Draft` with one row per catalog item, compacted on publish).
    """

    def __init__(self, catalog: Catalog, out: Path, on_error: OnError, batch_size: int | None,
                 chunk_size: int, progress: Progress) -> None:
        self.catalog, self.out, self.on_error = catalog, out, on_error
        self.batch_size, self.chunk_size, self.progress = batch_size, chunk_size, progress
        self.old = Store.open(out) if Store.exists(out) else None
        self.journal = Journal(out)
        self.problems: list[Problem] = list(catalog.problems)
        self.row = {it.id: n for n, it in enumerate(catalog.items)}
        self.sources: dict[Modality, _Sources] = {}
        self.hashes: dict[str, dict[str, str]] = {it.id: {} for it in catalog.items}
        self.stats: dict[str, dict[str, list[Any]]] = {}
        self.failures: dict[str, dict[str, list[str]]] = {}
        self.old_hashes = self.old.hashes() if self.old else {}
        self.old_stats = self.old.stats() if self.old else {}
        self.old_failures = self.old.failures() if self.old else {}
        self.encoded: dict[str, int] = {}
        self.reused: dict[str, int] = {}
        self.draft: Draft | None = None
        self.columns: dict[Modality, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _old_rows(self, modality: Modality, encoder: str, dim: int) -> dict[str, tuple[str, int]]:
        """``{id: (hash, row)}`` of the old store's vectors of ``modality``."""
        if self.old is None or modality not in self.old.modalities:
            return {}
        if self.old.encoder(modality) != encoder or self.old.dim(modality) != dim:
            raise StoreError(
                f"{self.out} holds {self.old.dim(modality)}-d {modality.value} vectors from "
                f"{self.old.encoder(modality)}, not {dim}-d ones from {encoder}",
                hint="write to a new --out directory, or delete the old store",
            )
        _, mask = self.old.matrix(modality, mmap=True)
        m, hashes = modality.value, self.old_hashes
        return {item_id: (hashes[item_id][m], i)
                for i, (item_id, present) in enumerate(zip(self.old.ids, mask.tolist(), strict=True))
                if present and m in hashes.get(item_id, {})}

    def _digest(self, item: Item, modality: Modality, m: str) -> str | None:
        """The content hash; a media file whose path, size and mtime are as last time is
        not read again (the make/rsync rule), so a no-op re-run costs a stat per file.
        ``m`` is ``modality.value``, looked up once per run, not once per item."""
        src = getattr(item, m)  # Item's fields are named after the modalities
        if not isinstance(src, Path):
            return item.content_hash(modality)
        info = src.stat()
        stamp = [str(src), info.st_size, info.st_mtime_ns]
        self.stats.setdefault(item.id, {})[m] = stamp
        if self.old_stats.get(item.id, {}).get(m) == stamp:
            known = self.old_hashes.get(item.id, {}).get(m)
            failed = self.old_failures.get(item.id, {}).get(m)
            if known or failed:
                return known or failed[0]
        return item.content_hash(modality)

    def plan(self, modality: Modality, encoder_name: str, dim: int) -> list[tuple[Item, str]]:
        """Find each item's reusable vector; return the (item, hash) pairs still to encode.

        One pass over the catalog with a few dict look-ups per item: at a million items,
        every extra attribute or call in this loop costs a visible share of a re-run."""
        m = modality.value
        known = self._old_rows(modality, encoder_name, dim)
        journal = {k: v for k, v in self.journal.load(m, encoder_name).items()
                   if v[1].shape == (dim,)}
        src = self.sources[modality] = _Sources()
        old_failures, hashes, reuse = self.old_failures, self.hashes, src.store.append
        for row, item in enumerate(self.catalog.items):  # row: self.row[item.id]
            try:
                digest = self._digest(item, modality, m)
            except OSError as exc:  # vanished or unreadable since the catalog was read
                self.skip(item, modality, f"unreadable file ({exc.strerror or exc})", "")
                continue
            if digest is None:
                continue
            item_id = item.id
            hashes[item_id][m] = digest
            done, old = journal.get(item_id), known.get(item_id)
            if done is not None and done[0] == digest:  # a killed run's work
                src.journal.append((row, *done[1:]))
            elif old is not None and old[0] == digest:
                reuse((row, old[1]))
            elif (failed := old_failures.get(item_id, {}).get(m)) and failed[0] == digest:
                self.skip(item, modality, failed[1], digest)  # same bad input: report, not retry
            else:
                src.todo.append((item, digest))
        self.reused[m] = len(src.store) + len(src.journal)
        return src.todo

    def drop_stale(self, modality: Modality, stale: list[tuple[Item, str]]) -> None:
        """Items whose content changed in a modality this run was not asked to encode."""
        for item, _ in stale:
            self.hashes[item.id].pop(modality.value, None)
            self.problems.append(Problem(item.row, item.id, "changed since it was encoded; "
                                         f"not re-encoded without --modalities {modality.value}",
                                         modality.value))

    def skip(self, item: Item, modality: Modality, reason: str, digest: str) -> None:
        problem = Problem(item.row, item.id, reason, modality.value)
        if self.on_error is OnError.FAIL:
            raise InputError(f"{self.catalog.path}: {problem}", hint="--on-error skip skips bad items")
        self.problems.append(problem)
        self.hashes[item.id].pop(modality.value, None)
        self.failures.setdefault(item.id, {})[modality.value] = [digest, reason]
        self.progress.log(f"skipped {problem}")

    def unchanged(self, encoders: dict[Modality, str], dims: dict[Modality, int],
                  info: dict[str, Any]) -> bool:
        """True when the new generation would equal the published one: nothing to write."""
        old = self.old
        if old is None or any(s.todo or s.journal for s in self.sources.values()):
            return False
        if old.encoders() != {m.value: {"encoder": e, "dim": dims[m]} for m, e in encoders.items()}:
            return False
        if any(old.manifest.get(k) != v for k, v in info.items()):
            return False
        ids = [i for i in self.catalog.items if self.hashes[i.id]]
        return ([i.id for i in ids] == old.ids and self.failures == self.old_failures
                and all(self.hashes[i.id] == self.old_hashes.get(i.id) for i in ids)
                and self.stats == self.old_stats
                and old.manifest.get("items_digest") == self.items_digest())  # the dearest, last

    def start(self, dims: dict[Modality, int]) -> None:
        """Open the new generation and copy every reused vector into it."""
        import numpy as np

        rows = len(self.catalog.items)
        self.draft = Draft(self.out, rows)
        for modality, src in self.sources.items():
            matrix = self.draft.matrix(modality.value, dims[modality])
            mask, norms = np.zeros(rows, dtype=bool), np.zeros(rows, dtype=np.float32)
            self.columns[modality] = (matrix, mask, norms)
            if src.store:
                self._copy_old(modality, np.array(src.store, dtype=np.int64))
            for row, vector, norm in src.journal:
                matrix[row], norms[row], mask[row] = vector, norm, True
            src.journal.clear()

    def _copy_old(self, modality: Modality, pairs: np.ndarray) -> None:
        """Reused vectors, file to file: unchanged rows in runs, by the kernel (store.copy_rows)."""
        _, mask, norms = self.columns[modality]
        new, old = pairs[:, 0], pairs[:, 1]
        self.old.matrix(modality)  # a damaged old matrix fails here, by name, as before
        copy_rows(self.old.data_dir / f"{modality.value}.npy",
                  self.draft.dir / f"{modality.value}.npy", new, old)
        norms[new], mask[new] = self.old.norms(modality)[old], True

    def encode(self, modality: Modality, encoder: Encoder, todo: list[tuple[Item, str]]) -> None:
        """Encode ``todo`` chunk by chunk; the next chunk decodes while this one encodes."""
        from concurrent.futures import ThreadPoolExecutor

        advance = self.progress.task(f"{modality.value:5} {encoder.name}", len(todo))
        chunks = [todo[i : i + self.chunk_size] for i in range(0, len(todo), self.chunk_size)]
        self.encoded[modality.value] = 0
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmrec-decode")
        try:
            pending = pool.submit(_decode, chunks[0], modality, encoder) if chunks else None
            for n in range(len(chunks)):
                decoded = pending.result()
                if n + 1 < len(chunks):
                    pending = pool.submit(_decode, chunks[n + 1], modality, encoder)
                self._encode_chunk(modality, encoder, decoded, advance)
        except BaseException:  # Ctrl-C: do not wait for the next chunk's decoding
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def _encode_chunk(self, modality: Modality, encoder: Encoder,
                      decoded: list[tuple[Item, str, Any]], advance: Any) -> None:
        self.record(modality, encoder.name,
                    encode_decoded(encoder, decoded, self.batch_size, advance))

    def record(self, modality: Modality, encoder_name: str, done: EncodedChunk) -> None:
        """Report a chunk's bad rows, journal its vectors and write them into the draft,
        however it was encoded (here, or by a Ray actor: mmrec.ray_encode)."""
        import numpy as np

        for item, digest, reason in done.bad:
            self.skip(item, modality, reason, digest)
        if not done.ready:
            return
        ids = [item.id for item, _ in done.ready]
        self.journal.append(modality.value, encoder_name, ids,
                            [digest for _, digest in done.ready], done.vectors, done.norms)
        rows = np.array([self.row[i] for i in ids], dtype=np.int64)
        matrix, mask, column_norms = self.columns[modality]
        matrix[rows], column_norms[rows], mask[rows] = done.vectors, done.norms, True
        release(matrix)  # on disk now: the pages need not stay in memory
        self.encoded[modality.value] += len(ids)

    def publish(self, encoders: dict[Modality, str], dims: dict[Modality, int],
                info: dict[str, Any]) -> Store:
        import numpy as np

        keep = np.zeros(len(self.catalog.items), dtype=bool)
        for _, mask, _ in self.columns.values():
            keep |= mask
        rows = np.flatnonzero(keep)  # items with a vector in some modality, catalog order
        columns = {}
        for modality, (matrix, mask, norms) in self.columns.items():
            matrix.flush()
            self.draft.keep(modality.value, rows)
            columns[modality.value] = Column(encoders[modality], dims[modality], None,
                                             mask[rows], norms[rows])
        self.columns.clear()
        kept = [self.catalog.items[i] for i in rows.tolist()]
        ids = [it.id for it in kept]
        items = ({"id": it.id, **it.metadata} for it in kept)  # written in one pass, never listed
        stats = {i: self.stats[i] for i in ids if i in self.stats}
        hashes = {i: self.hashes[i] for i in ids}
        return write_store(self.out, ids, columns, hashes, items, info, self.failures, stats,
                           self.draft, carry=self._unchanged_parts(ids, hashes, stats))

    def _unchanged_parts(self, ids: list[str], hashes: dict[str, dict[str, str]],
                         stats: dict[str, dict[str, list[Any]]]) -> dict[str, Path]:
        """The old generation's files holding what this one would write: copied, not rewritten."""
        if self.old is None:
            return {}
        same = {"ids.json": ids == self.old.ids, "hashes.json": hashes == self.old_hashes,
                "failures.json": self.failures == self.old_failures,
                "stats.json": stats == self.old_stats}
        old = self.old.data_dir
        return {name: old / name for name, equal in same.items() if equal and (old / name).is_file()}

    def items_digest(self) -> str:
        ids = [it for it in self.catalog.items if self.hashes[it.id]]
        return items_digest([{"id": it.id, **it.metadata} for it in ids])


def encode(
    catalog: str | Path,
    out: str | Path,
    preset: str = "default",
    encoders: dict[str, str] | None = None,
    modalities: list[Modality | str] | None = None,
    text_fields: list[str] | None = None,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    device: str = "auto",
    on_error: OnError | str = OnError.SKIP,
    progress: Progress | None = None,
    engine: Engine | str = Engine.LOCAL,
    workers: int | None = None,
    ray_address: str | None = None,
) -> EncodeReport:
    """Embed every item of ``catalog`` into the store at ``out``.

    Re-running on the same catalog encodes nothing; changed items are re-encoded,
    removed items leave the store, and a killed run resumes from its journal.
    ``batch_size=None`` lets each encoder choose the fastest for the device.
    ``engine="ray"`` encodes on a pool of ``workers`` Ray actors (mmrec.ray_encode),
    on the cluster at ``ray_address`` (or ``RAY_ADDRESS``) or a local one.
    """
    started = time.perf_counter()
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if Engine(engine) is Engine.LOCAL and (workers is not None or ray_address):
        raise ConfigError("--workers and --ray-address need --engine ray")
    on_error, progress = OnError(on_error), progress or NullProgress()
    if text_fields is None and Store.exists(out):  # a re-run keeps the fields it was given
        text_fields = Store.open(out).manifest.get("text_fields") or None
    names = resolve_encoders(preset, encoders)
    request = functools.partial(_request, _file_digest(Path(catalog)), Path(catalog), names,
                                modalities, preset=preset)
    unchanged = _unchanged_store(Path(out), request(text_fields), started)
    if unchanged is not None:
        return unchanged
    cat = read_catalog(catalog, text_fields)
    if on_error is OnError.FAIL and cat.problems:
        raise InputError(f"{cat.path}: {cat.problems[0]}"
                         + (f" (and {len(cat.problems) - 1} more)" if len(cat.problems) > 1 else ""),
                         hint="--on-error skip skips bad items")
    wanted = _choose_modalities(cat, [as_modality(m) for m in modalities] if modalities else None,
                                names)
    if not wanted:
        raise ConfigError(f"{cat.path}: no item has a modality the preset can encode")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StoreError(f"--out {out} is a file, not a store directory")
    if not is_reusable_dir(out):
        raise StoreError(f"--out {out} is a non-empty directory that is not an mmrec store")
    remote = RayRunner(workers, ray_address, device) if Engine(engine) is Engine.RAY else None
    with write_lock(out), contextlib.closing(remote or _NoRunner()):
        return _encode_into(cat, out, names, wanted, preset, batch_size, chunk_size, device,
                            on_error, progress, started, request, remote)


class _NoRunner:
    def close(self) -> None:
        pass


def _file_digest(path: Path) -> str | None:
    if not path.is_file():
        return None  # read_catalog says why
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _request(catalog_digest: str | None, catalog: Path, names: dict[Modality, str],
             modalities: list[Modality | str] | None, text_fields: list[str] | None,
             preset: str) -> str | None:
    """A digest of all a run reads but media files: the catalog's bytes and the options."""
    if catalog_digest is None:
        return None
    digest = hashlib.sha256(catalog_digest.encode("ascii"))
    options = {"catalog": str(catalog.resolve()), "cwd": os.getcwd(),  # local: paths may be relative
               "encoders": {m.value: n for m, n in names.items()}, "preset": preset,
               "modalities": sorted(str(m) for m in modalities) if modalities else None,
               "text_fields": text_fields}
    digest.update(json.dumps(options, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()[:32]


def _unchanged_store(out: Path, request: str | None, started: float) -> EncodeReport | None:
    """The report of a run with nothing to do, without reading the catalog's items: the
    catalog and options are those of the store's last clean run (no bad inputs) and no
    media file's size or mtime moved. None: do the full run."""
    if request is None or not Store.exists(out) or (out / JOURNAL).exists():
        return None
    store = Store.open(out)
    if store.manifest.get("request") != request:
        return None
    for entry in store.stats().values():
        for path, size, mtime in entry.values():
            try:
                info = os.stat(path)
            except OSError:
                return None
            if (info.st_size, info.st_mtime_ns) != (size, mtime):
                return None
    for modality in store.modalities:  # headers only: a damaged file still fails loudly
        matrix, mask = store.matrix(modality)
        if matrix.shape != (len(store), store.dim(modality)) or store.norms(modality).shape != mask.shape:
            return None
    counts = {m.value: store.manifest["modalities"][m.value]["count"] for m in store.modalities}
    return EncodeReport(store=str(out), items=len(store), vectors=counts,
                        encoded=dict.fromkeys(counts, 0), reused=dict(counts), removed=0,
                        skipped=[], seconds=time.perf_counter() - started, device=None,
                        encoders={m: store.encoder(m) for m in counts})


def _encode_into(cat: Catalog, out: Path, names: dict[Modality, str], wanted: list[Modality],
                 preset: str, batch_size: int | None, chunk_size: int | None, device: str,
                 on_error: OnError, progress: Progress, started: float,
                 request: Callable[[list[str] | None], str | None] | None = None,
                 remote: RayRunner | None = None) -> EncodeReport:

    run = _Run(cat, out, on_error, batch_size, chunk_size or max(256, 8 * (batch_size or 32)),
               progress)
    try:
        return _run(run, cat, names, wanted, preset, device, started, request, remote)
    except BaseException:
        if run.draft is not None:  # the journal keeps what was encoded; the draft is waste
            run.draft.discard()
        raise


def _plan(run: _Run, cat: Catalog, names: dict[Modality, str],
          wanted: list[Modality]) -> tuple[dict[Modality, Encoder | str], dict[Modality, int]]:
    """Every modality's encoder (or, for one kept as is, its name) and dimension."""
    from mmrec.encoders.registry import create

    built: dict[Modality, Encoder | str] = {}
    dims: dict[Modality, int] = {}
    for modality in wanted:
        encoder = create(names[modality], modality)
        run.plan(modality, encoder.name, encoder.dim)
        built[modality], dims[modality] = encoder, encoder.dim
    if run.old is not None:  # modalities not asked for this time keep their unchanged vectors
        for modality in run.old.modalities:
            if modality not in built and modality in cat.modalities():
                stale = run.plan(modality, run.old.encoder(modality), run.old.dim(modality))
                run.drop_stale(modality, stale)
                run.sources[modality].todo = []
                built[modality], dims[modality] = run.old.encoder(modality), run.old.dim(modality)
    return built, dims


def _run(run: _Run, cat: Catalog, names: dict[Modality, str], wanted: list[Modality],
         preset: str, device: str, started: float,
         request: Callable[[list[str] | None], str | None] | None,
         remote: RayRunner | None = None) -> EncodeReport:
    from mmrec.runtime import resolve_device

    built, dims = _plan(run, cat, names, wanted)
    encoder_names = {m: getattr(e, "name", e) for m, e in built.items()}
    info = {"catalog": str(cat.path), "text_fields": cat.text_fields, "preset": preset}
    # a clean run's request lets the next identical one skip reading the catalog
    clean = request is not None and not run.problems and not run.failures
    info["request"] = request(cat.text_fields) if clean else None  # what a re-run will ask
    run.encoded = {m.value: 0 for m in built}
    dev = None  # resolved only when something needs encoding: a no-op re-run stays cheap
    if run.unchanged(encoder_names, dims, info):
        store = run.old  # nothing to write: the published generation is already this run's
        shutil.rmtree(run.out / JOURNAL, ignore_errors=True)
    else:
        run.start(dims)
        for modality, encoder in built.items():
            todo = run.sources[modality].todo
            if todo and remote is not None:  # the pool's actors load the encoder, not this process
                dev = remote.encode(run, modality, names[modality], todo)
            elif todo and isinstance(encoder, Encoder):
                dev = dev or resolve_device(device)
                encoder.load(dev)
                run.encode(modality, encoder, todo)
        store = run.publish(encoder_names, dims, info)
    before = set(run.old.ids) if run.old else set()
    return EncodeReport(
        store=str(run.out), items=len(store),
        vectors={m.value: store.manifest["modalities"][m.value]["count"] for m in store.modalities},
        encoded=run.encoded, reused=run.reused, removed=len(before - set(store.ids)),
        skipped=sorted(run.problems, key=lambda p: p.row),  # stable: modality order kept
        seconds=time.perf_counter() - started, device=str(dev) if dev else None,
        encoders={m.value: n for m, n in encoder_names.items()},
    )
