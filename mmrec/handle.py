"""The resident handle: an aligner or model directory opened once, answering many queries.

``mmrec.open(path)`` loads what queries need (ids, metadata, indexes, the query
encoders and heads) and keeps it, so a query costs its own encoding and a faiss
search, never a model load. :class:`AlignerHandle` searches, :class:`ModelHandle`
recommends; both answer ``ask(query)`` and batches (``search`` / ``recommend``),
describe items and name the media files their catalog holds.

Every entry point answers through a handle: ``mmrec.recommend(path, query)`` (and so
``mmrec recommend``) opens one for the call, ``mmrec serve`` keeps one per directory.
The query pieces (checks, decoding, explanations) live in ``mmrec.alignment.search``
and ``mmrec.recsys.recommend``; what stays resident lives here. Query encoders load on
first use (a CLI ``--item`` query needs none), or all at once with ``warm=True``.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mmrec.artifacts import CONFIG, Kind, kind_of, read_json
from mmrec.errors import ConfigError, UnknownIdError
from mmrec.query import Hit, Query, pop_title

if TYPE_CHECKING:
    import numpy as np

    from mmrec.enums import Target
    from mmrec.index import VectorIndex

MEDIA = ("image", "audio")


class Handle(Protocol):
    """What every resident handle answers, whatever directory it holds."""

    path: Path
    kind: Kind
    stamp: tuple[int, int]

    @property
    def name(self) -> str: ...

    def ask(self, query: Query) -> list[Hit]: ...

    def ids(self) -> list[str]: ...

    def has(self, item_id: str) -> bool: ...

    def item(self, item_id: str) -> dict[str, Any]: ...

    def media(self, item_id: str, modality: str) -> Path: ...

    def info(self) -> dict[str, Any]: ...


def open(path: str | Path, store: str | Path | None = None, warm: bool = False,
         device: str = "auto", key: str | Path | None = None) -> AlignerHandle | ModelHandle:
    """A resident handle on the aligner or model directory at ``path``.

    ``store``: where a model's store lives now, if it moved (only ``explain``'s split by
    modality reads it). ``warm``: load every query encoder now rather than on first use.
    ``device``: where an aligner's query encoders run (auto: cuda > mps > cpu); an
    unavailable one fails when the first encoder loads. ``key``: the key file of an
    anonymised model, with which ``Query.user`` ids are hashed (see mmrec.privacy).
    """
    path = Path(path)
    if kind_of(path) is Kind.ALIGNER:
        given = [name for name, v in (("--store", store), ("--key", key)) if v is not None]
        if given:
            raise ConfigError(f"{given[0]} applies to a model directory, not an aligner")
        return AlignerHandle(path, warm, device)
    return ModelHandle(path, store, key)


def stamp_of(path: Path) -> tuple[int, int]:
    """Identity of the directory's current publication: mmrec republishes a directory by
    renaming a new one into place, so its config file's inode and mtime change."""
    info = os.stat(path / CONFIG)
    return info.st_ino, info.st_mtime_ns


def check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"-k must be a whole number of at least 1, got {k!r}")


class _Items:
    """Ids, display metadata and the media files of one directory's items."""

    def __init__(self, ids: list[str], metadata: dict[str, dict[str, Any]],
                 store_manifest: dict[str, Any]) -> None:
        self.order = ids
        self.known = set(ids)
        self.metadata = metadata
        self.files, self.media_note = _media_files(store_manifest, self.known)

    def require(self, item_id: str) -> None:
        if item_id not in self.known:
            raise UnknownIdError(f"unknown item id {item_id!r}")

    def describe(self, item_id: str) -> dict[str, Any]:
        self.require(item_id)
        meta = dict(self.metadata.get(item_id, {}))
        title = pop_title(meta)
        out: dict[str, Any] = {"id": item_id, **({"title": title} if title else {})}
        out["metadata"] = meta
        out["media"] = sorted(self.files.get(item_id, {}))
        return out

    def media(self, item_id: str, modality: str) -> Path:
        self.require(item_id)
        if modality not in MEDIA:
            raise ConfigError(f"media must be one of {', '.join(MEDIA)}, got {modality!r}")
        file = self.files.get(item_id, {}).get(modality)
        if file is None:
            raise UnknownIdError(f"item {item_id!r} has no {modality} file")
        return file


def _media_files(manifest: dict[str, Any], known: set[str]) -> tuple[dict[str, dict[str, Path]], str]:
    """The image and audio files the encoded catalog names for ``known`` ids.

    The store keeps metadata without file paths, so they are read again from the catalog
    the store's manifest records, through the same reader ``encode`` used (paths resolved
    against the catalog file). Nothing else is ever served.
    """
    from mmrec.catalog import read_catalog
    from mmrec.errors import MMRecError

    source = manifest.get("catalog")
    if not source:
        return {}, "the store records no catalog"
    try:
        catalog = read_catalog(source, manifest.get("text_fields") or None)
    except MMRecError as exc:
        return {}, f"media unavailable: {exc}"
    files = {}
    for item in catalog.items:
        found = {m: getattr(item, m) for m in MEDIA if getattr(item, m) is not None}
        if item.id in known and found:
            files[item.id] = found
    return files, ""


class _Resident:
    """What both handles answer from their directory's items (``self._items``)."""

    path: Path
    _items: _Items

    @property
    def name(self) -> str:
        return self.path.name

    def ids(self) -> list[str]:
        return self._items.order

    def has(self, item_id: str) -> bool:
        return item_id in self._items.known

    def item(self, item_id: str) -> dict[str, Any]:
        return self._items.describe(item_id)

    def media(self, item_id: str, modality: str) -> Path:
        return self._items.media(item_id, modality)


class AlignerHandle(_Resident):
    """An aligner directory, resident: searches by text, image, audio or item ids."""

    kind = Kind.ALIGNER

    def __init__(self, path: Path, warm: bool = False, device: str = "auto") -> None:
        from mmrec.alignment.aligner import Aligner
        from mmrec.enums import Target

        self.path = Path(path)
        self.stamp = stamp_of(self.path)
        self.device_choice = device
        self.aligner = Aligner.open(self.path)
        a = self.aligner
        # everything a query touches is loaded now: a republished directory deletes the
        # old files, and an in-flight query on this handle must still find its data
        a.all_projected()
        self._fused = a.fused()
        targets = [Target.FUSED, *(Target(m) for m in a.modalities)]
        self._indexes: dict[Target, VectorIndex] = {t: a.index(t) for t in targets}
        self._items = _Items(a.ids, a.items, read_json(self.path / "manifest.json"))
        self._encoders: dict[str, Any] = {}
        self._loading = threading.Lock()  # serve's worker threads may ask at once
        self._projector = a.projector(with_bridge="image" in a.modalities)
        if warm:
            for modality in a.modalities:
                self._encoder(modality, loaded=True)

    @cached_property
    def _device(self) -> Any:
        from mmrec.runtime import resolve_device

        return resolve_device(self.device_choice)

    def _encoder(self, modality: str, loaded: bool) -> Any:
        """The query encoder of ``modality``, created once; its weights load once, when
        ``loaded`` is asked (decoding an input needs only the created encoder)."""
        from mmrec.alignment.tune import load_query_encoder
        from mmrec.encoders.registry import create

        with self._loading:
            if modality not in self._encoders:
                self._encoders[modality] = [
                    create(self.aligner.encoders[modality]["encoder"], modality), False]
            entry = self._encoders[modality]
            if loaded and not entry[1]:
                # as every query path loads it: tuned layers applied where there are any
                load_query_encoder(self.path, entry[0], modality, self._device)
                entry[1] = True
            return entry[0]

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind.value, "items": len(self.ids()),
                "modalities": self.aligner.modalities, "media": not self._items.media_note}

    def ask(self, query: Query) -> list[Hit]:
        return self.search([query])[0]

    def search(self, queries: Sequence[Query]) -> list[list[Hit]]:
        """Top ``k`` items per query, as ``mmrec.recommend(aligner, query)`` answers it."""
        import numpy as np

        targets = [self._check(q) for q in queries]
        vectors = [self._vector(q) for q in queries]
        out: list[list[Hit]] = [[] for _ in queries]
        for target in dict.fromkeys(targets):  # one faiss call per target
            group = [n for n, t in enumerate(targets) if t is target]
            found = self._indexes[target].search(
                np.stack([vectors[n] for n in group]), max(queries[n].k for n in group),
                exclude=[set(queries[n].items) for n in group],
                columns=self._hub_columns(target, [queries[n] for n in group]))
            for n, hits in zip(group, found, strict=True):
                out[n] = [self._hit(target, vectors[n], i, s, queries[n].explain)
                          for i, s in hits[: queries[n].k]]
        return out

    def _hub_columns(self, target: Target, queries: Sequence[Query]) -> np.ndarray | None:
        """Each query's weights on the hubness columns of ``target``'s index: the share of
        its parts of each query modality (items' vectors get none), as evaluation ranks."""
        import numpy as np

        found = [self.aligner.hub_columns(target, _parts(q)) for q in queries]
        if all(f is None for f in found):
            return None
        width = len(next(f for f in found if f is not None))
        return np.stack([np.zeros(width, np.float32) if f is None else f for f in found])

    def _check(self, query: Query) -> Target:
        from mmrec.enums import Target, parse_enum

        target = parse_enum(Target, query.modality, "--modality")
        if target is not Target.FUSED:
            self.aligner.require(target.value)
        if query.user is not None or query.history:
            raise ConfigError("an aligner searches by content or item; --user and --history "
                              "need a trained model", hint="train one with `mmrec train`")
        if query.explore is not None:
            raise ConfigError("--explore applies to a model directory, not an aligner")
        check_k(query.k)
        for item_id in query.items:
            self._items.require(item_id)
        return target

    def _vector(self, query: Query) -> np.ndarray:
        """``mmrec.alignment.search.query_vector`` with resident encoders and fused rows."""
        import numpy as np

        from mmrec.vectors import unit_rows

        parts = self._content_parts(query)
        parts += [np.asarray(self._fused[self.aligner.row(i)], dtype=np.float32)
                  for i in query.items]
        if not parts:
            raise ConfigError("nothing to search for: give --text, --image, --audio or --item")
        return unit_rows(np.mean(parts, axis=0))

    def _content_parts(self, query: Query) -> list[np.ndarray]:
        from mmrec.alignment.search import decode_query, query_sources

        sources = query_sources(self.aligner, query)
        # every input is decoded before any model loads: a bad file fails in a moment
        inputs = {m: decode_query(m, v, self._encoder(m, loaded=False)) for m, v in sources.items()}
        parts = []
        for modality, value in inputs.items():
            encoder = self._encoder(modality, loaded=True)
            unit, norms = encoder.encode([value], batch_size=1, return_norms=True)
            parts.append(self._projector.project(modality, unit, norms)[0])
        return parts

    def _hit(self, target: Target, vector: np.ndarray, item_id: str, score: float,
             explain: bool) -> Hit:
        from mmrec.alignment.search import describe_hit

        return describe_hit(self.aligner, target, vector, item_id, score, explain)


def _parts(query: Query) -> list[str]:
    """The modality of each part a query vector averages (``item`` for each item)."""
    given = [("text", query.text), ("image", query.image), ("audio", query.audio)]
    return [m for m, value in given if value is not None] + ["item"] * len(query.items)


class ModelHandle(_Resident):
    """A trained model directory, resident: recommends for users, histories or items."""

    kind = Kind.MODEL

    def __init__(self, path: Path, store: str | Path | None = None,
                 key: str | Path | None = None) -> None:
        from mmrec.index import VectorIndex
        from mmrec.recsys.model import STORE_MANIFEST, load_model

        self.path = Path(path)
        self.stamp = stamp_of(self.path)
        self.model = load_model(self.path)
        self.key = key
        self.store = self.model.store(store)  # None when it moved: only explain needs it
        self._index = VectorIndex.load(self.path)
        manifest = (self.store.manifest if self.store is not None
                    else _optional_json(self.path / STORE_MANIFEST))
        self._items = _Items(self.model.data.item_ids, self.model.metadata(), manifest)

    def users(self) -> list[str]:
        return self.model.data.user_ids

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind.value, "items": len(self.ids()),
                "users": len(self.users()), "model": self.model.kind,
                "media": not self._items.media_note}

    def ask(self, query: Query) -> list[Hit]:
        return self.recommend([query])[0]

    def recommend(self, queries: Sequence[Query]) -> list[list[Hit]]:
        """Top ``k`` items per query, as ``mmrec.recommend(model, query)`` answers it."""
        import numpy as np

        anchors = [self._anchor(q) for q in queries]
        vectors = [self._vector(q, *a) for q, a in zip(queries, anchors, strict=True)]
        seen = [self._seen(q, a[1]) for q, a in zip(queries, anchors, strict=True)]
        found = self._index.search(np.concatenate(vectors), max(q.k for q in queries),
                                   exclude=seen)
        for n, query in enumerate(queries):  # a bandit re-ranks the model's candidates
            if query.explore is not None:
                found[n] = self._explore(query, vectors[n][0], seen[n])
        return [self._hits(q, v[0], a, f[: q.k])
                for q, v, a, f in zip(queries, vectors, anchors, found, strict=True)]

    def _anchor(self, query: Query) -> tuple[int, np.ndarray]:
        from mmrec.recsys.recommend import anchor, check_query

        check_query(query)
        check_k(query.k)
        return anchor(self.model, query, self.key)

    def _vector(self, query: Query, user: int, history: np.ndarray) -> np.ndarray:
        from mmrec.recsys.recommend import query_vector

        return query_vector(self.model, query, user, history)

    def _explore(self, query: Query, vector: np.ndarray, seen: list[str]) -> list[tuple[str, float]]:
        from mmrec.recsys.recommend import explore_candidates

        return explore_candidates(self.model, self._index, query, vector, seen)

    def _seen(self, query: Query, history: np.ndarray) -> list[str]:
        if query.exclude_seen or query.items:
            return [self.model.data.item_ids[h] for h in history]
        return []

    def _hits(self, query: Query, vector: np.ndarray, anchor: tuple[int, np.ndarray],
              found: list[tuple[str, float]]) -> list[Hit]:
        import numpy as np

        from mmrec.recsys.recommend import explanations

        rows = np.array([self.model.item_row(i) for i, _ in found], dtype=np.int64)
        why = (explanations(self.model, self.store, vector, *anchor, rows, self._items.metadata)
               if query.explain else {})
        hits = []
        for (item_id, score), row in zip(found, rows, strict=True):
            meta = dict(self._items.metadata.get(item_id, {}))
            hits.append(Hit(id=item_id, score=score, title=pop_title(meta), metadata=meta,
                            explanation=why.get(int(row))))
        return hits


def _optional_json(path: Path) -> dict[str, Any]:
    """A model's copy of its store's manifest; models from before it was kept have none."""
    return read_json(path) if path.is_file() else {}
