"""``mmrec encode``: embed every item of a catalog into a store, incrementally.

Per modality, an item is encoded only if its content hash is new: unchanged items are
reused from the store, items finished by a killed run from its journal. Work is done in
chunks, each appended to the journal atomically, so an interrupted run loses at most
the chunk in flight.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.catalog import Catalog, Item, Problem, load_audio, load_image, read_catalog
from mmrec.encoders.base import Encoder
from mmrec.enums import Engine, Modality, OnError
from mmrec.errors import ConfigError, InputError, StoreError
from mmrec.progress import NullProgress, Progress
from mmrec.ray_encode import RayRunner
from mmrec.store import Column, Journal, Store, is_reusable_dir, write_lock, write_store

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


class _Run:
    """State of one encode run over one store."""

    def __init__(self, catalog: Catalog, out: Path, on_error: OnError, batch_size: int | None,
                 chunk_size: int, progress: Progress) -> None:
        self.catalog, self.out, self.on_error = catalog, out, on_error
        self.batch_size, self.chunk_size, self.progress = batch_size, chunk_size, progress
        self.old = Store.open(out) if Store.exists(out) else None
        self.journal = Journal(out)
        self.problems: list[Problem] = list(catalog.problems)
        # per modality: id -> (unit vector, raw norm)
        self.vectors: dict[Modality, dict[str, tuple[np.ndarray, float]]] = {}
        self.hashes: dict[str, dict[str, str]] = {it.id: {} for it in catalog.items}
        self.failures: dict[str, dict[str, list[str]]] = {}
        self.old_failures = self.old.failures() if self.old else {}
        self.encoded: dict[str, int] = {}
        self.reused: dict[str, int] = {}

    def _old_vectors(self, modality: Modality, encoder: str,
                     dim: int) -> dict[str, tuple[str, np.ndarray, float]]:
        if self.old is None or modality not in self.old.modalities:
            return {}
        if self.old.encoder(modality) != encoder or self.old.dim(modality) != dim:
            raise StoreError(
                f"{self.out} holds {self.old.dim(modality)}-d {modality.value} vectors from "
                f"{self.old.encoder(modality)}, not {dim}-d ones from {encoder}",
                hint="write to a new --out directory, or delete the old store",
            )
        matrix, mask = self.old.matrix(modality, mmap=True)
        norms, hashes = self.old.norms(modality), self.old.hashes()
        return {item_id: (hashes[item_id][modality.value], matrix[i], float(norms[i]))
                for i, item_id in enumerate(self.old.ids)
                if mask[i] and modality.value in hashes.get(item_id, {})}

    def plan(self, modality: Modality, encoder_name: str, dim: int) -> list[tuple[Item, str]]:
        """Fill in reusable vectors; return the (item, hash) pairs still to encode."""
        known = self._old_vectors(modality, encoder_name, dim)
        known.update((k, v) for k, v in self.journal.load(modality.value, encoder_name).items()
                     if v[1].shape == (dim,))
        done, todo = self.vectors.setdefault(modality, {}), []
        for item in self.catalog.items:
            try:
                digest = item.content_hash(modality)
            except OSError as exc:  # vanished or unreadable since the catalog was read
                self.skip(item, modality, f"unreadable file ({exc.strerror or exc})", "")
                continue
            if digest is None:
                continue
            self.hashes[item.id][modality.value] = digest
            failed = self.old_failures.get(item.id, {}).get(modality.value)
            if item.id in known and known[item.id][0] == digest:
                done[item.id] = known[item.id][1:]
            elif failed and failed[0] == digest:  # same bad input as last time: report, not retry
                self.skip(item, modality, failed[1], digest)
            else:
                todo.append((item, digest))
        self.reused[modality.value] = len(done)
        return todo

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
        self.record(modality, encoder.name, encode_decoded(encoder, decoded, self.batch_size,
                                                           advance))

    def record(self, modality: Modality, encoder_name: str, done: EncodedChunk) -> None:
        """Report a chunk's bad rows, journal its vectors (however it was encoded)."""
        for item, digest, reason in done.bad:
            self.skip(item, modality, reason, digest)
        if not done.ready:
            return
        ids = [item.id for item, _ in done.ready]
        self.journal.append(modality.value, encoder_name, ids,
                            [digest for _, digest in done.ready], done.vectors, done.norms)
        self.vectors[modality].update(zip(ids, zip(done.vectors, done.norms, strict=True),
                                          strict=True))
        self.encoded[modality.value] += len(ids)

    def publish(self, encoders: dict[Modality, Encoder | str], dims: dict[Modality, int],
                info: dict[str, Any]) -> Store:
        import numpy as np

        ids = [it.id for it in self.catalog.items
               if any(it.id in self.vectors[m] for m in self.vectors)]
        columns = {}
        for modality, vectors in self.vectors.items():
            matrix = np.zeros((len(ids), dims[modality]), dtype=np.float32)
            mask = np.zeros(len(ids), dtype=bool)
            norms = np.zeros(len(ids), dtype=np.float32)
            for row, item_id in enumerate(ids):
                if item_id in vectors:
                    (matrix[row], norms[row]), mask[row] = vectors[item_id], True
            name = encoders[modality]
            columns[modality.value] = Column(getattr(name, "name", name), dims[modality], matrix,
                                             mask, norms)
        by_id = {it.id: it for it in self.catalog.items}
        items = [{"id": i, **by_id[i].metadata} for i in ids]
        hashes = {i: self.hashes[i] for i in ids}
        return write_store(self.out, ids, columns, hashes, items, info, self.failures)


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
    on_error, progress = OnError(on_error), progress or NullProgress()
    if text_fields is None and Store.exists(out):  # a re-run keeps the fields it was given
        text_fields = Store.open(out).manifest.get("text_fields") or None
    cat = read_catalog(catalog, text_fields)
    if on_error is OnError.FAIL and cat.problems:
        raise InputError(f"{cat.path}: {cat.problems[0]}"
                         + (f" (and {len(cat.problems) - 1} more)" if len(cat.problems) > 1 else ""),
                         hint="--on-error skip skips bad items")
    names = resolve_encoders(preset, encoders)
    wanted = _choose_modalities(cat, [as_modality(m) for m in modalities] if modalities else None,
                                names)
    if not wanted:
        raise ConfigError(f"{cat.path}: no item has a modality the preset can encode")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StoreError(f"--out {out} is a file, not a store directory")
    if not is_reusable_dir(out):
        raise StoreError(f"--out {out} is a non-empty directory that is not an mmrec store")
    if Engine(engine) is Engine.LOCAL and (workers is not None or ray_address):
        raise ConfigError("--workers and --ray-address need --engine ray")
    remote = RayRunner(workers, ray_address, device) if Engine(engine) is Engine.RAY else None
    with write_lock(out), contextlib.closing(remote or _NoRunner()):
        return _encode_into(cat, out, names, wanted, preset, batch_size, chunk_size, device,
                            on_error, progress, started, remote)


class _NoRunner:
    def close(self) -> None:
        pass


def _encode_into(cat: Catalog, out: Path, names: dict[Modality, str], wanted: list[Modality],
                 preset: str, batch_size: int | None, chunk_size: int | None, device: str,
                 on_error: OnError, progress: Progress, started: float,
                 remote: RayRunner | None = None) -> EncodeReport:
    from mmrec.encoders.registry import create
    from mmrec.runtime import resolve_device

    run = _Run(cat, out, on_error, batch_size, chunk_size or max(256, 8 * (batch_size or 32)),
               progress)
    dev = None  # resolved only when something needs encoding: a no-op re-run stays cheap
    built: dict[Modality, Encoder | str] = {}
    dims: dict[Modality, int] = {}
    for modality in wanted:
        encoder = create(names[modality], modality)
        todo = run.plan(modality, encoder.name, encoder.dim)
        if todo and remote is not None:  # the pool's actors load the encoder, not this process
            dev = remote.encode(run, modality, names[modality], todo)
        elif todo:
            dev = dev or resolve_device(device)
            encoder.load(dev)
            run.encode(modality, encoder, todo)
        else:
            run.encoded[modality.value] = 0
        built[modality], dims[modality] = encoder, encoder.dim
    if run.old is not None:  # modalities not asked for this time keep their unchanged vectors
        for modality in run.old.modalities:
            if modality not in built and modality in cat.modalities():
                stale = run.plan(modality, run.old.encoder(modality), run.old.dim(modality))
                run.drop_stale(modality, stale)
                built[modality], dims[modality] = run.old.encoder(modality), run.old.dim(modality)
                run.encoded[modality.value] = 0
    before = set(run.old.ids) if run.old else set()
    store = run.publish(built, dims, {"catalog": str(cat.path), "text_fields": cat.text_fields,
                                      "preset": preset})
    return EncodeReport(
        store=str(out), items=len(store), vectors={m.value: store.manifest["modalities"][m.value]["count"]
                                                 for m in store.modalities},
        encoded=run.encoded, reused=run.reused, removed=len(before - set(store.ids)),
        skipped=sorted(run.problems, key=lambda p: p.row),  # stable: modality order kept
        seconds=time.perf_counter() - started, device=str(dev) if dev else None,
        encoders={m.value: getattr(e, "name", e) for m, e in built.items()},
    )
