"""faiss indexes over unit-norm vectors: inner product = cosine.

Every type is built with ``faiss.index_factory``. ``auto`` (see :func:`choose_index`)
keeps exact search (``flat``) while it is cheap, an approximate graph or inverted file
above that, and compressed codes (``sq8``, ``ivfpq``) when the full float32 vectors
would not fit the memory budget (``MMREC_INDEX_MEMORY``, default 2G).

After building, the search-time parameter (``nprobe`` or ``efSearch``) is raised until
recall@10 against exact search, on a seeded sample of the index's own vectors as
queries, reaches :data:`RECALL_TARGET`; the parameter and the measured recall are
saved with the index. An index is saved as ``NAME.faiss`` (faiss's own format, read
memory-mapped) plus ``NAME.ids.json`` (the item id of every row, the type, the
factory string, the search parameters and the measured recall).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.artifacts import read_json, read_part
from mmrec.atomic import atomic_open, write_json
from mmrec.enums import IndexType
from mmrec.errors import ConfigError, IndexFileError

if TYPE_CHECKING:
    import numpy as np

EXACT_LIMIT = 50_000  # below this many vectors a flat index is exact and fast enough
MIN_APPROX = 64  # fewer vectors than this: inverted files are built flat (exact and as fast)
MEMORY_ENV = "MMREC_INDEX_MEMORY"
DEFAULT_MEMORY = 2 * 1024**3  # bytes the index's vectors may take before auto compresses them
HNSW_M = 32  # graph links per vector: 2 * M int32 per vector at the base level
RECALL_TARGET = 0.97  # on own-vector queries; held-out queries come out a little lower
RECALL_QUERIES = 200
RECALL_K = 10  # neighbours besides the query vector itself
TRAIN_PER_LIST = 64  # k-means points per inverted list (faiss warns below 39)
INDEX_HELP = ("faiss index: auto (flat below 50k items, ivf above, sq8/ivfpq past "
              "$MMREC_INDEX_MEMORY, default 2G), flat, hnsw, ivf, ivfpq, sq8.")


def memory_budget(value: str | int | None = None) -> int:
    """Bytes from ``value`` or ``$MMREC_INDEX_MEMORY`` (``2G``, ``512M``, ``1000000``)."""
    raw = str(value if value is not None else os.environ.get(MEMORY_ENV, DEFAULT_MEMORY)).strip()
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}.get(raw[-1:].upper(), 1)
    number = raw[:-1] if scale > 1 else raw
    try:
        budget = int(float(number) * scale)
    except ValueError:
        budget = 0
    if budget <= 0:
        raise ConfigError(f"{MEMORY_ENV} must be a positive size such as 2G or 512M, got {raw!r}")
    return budget


def parse_index(value: object) -> IndexType:
    """``--index`` checked early: an unknown type, or (for auto) a bad memory budget, is a
    one-line ConfigError before any training starts, not after."""
    try:
        kind = IndexType(value)
    except ValueError:
        valid = ", ".join(k.value for k in IndexType)
        raise ConfigError(f"--index must be one of {valid}, got {value!r}") from None
    if kind is IndexType.AUTO:
        memory_budget()
    return kind


def choose_index(n: int, dim: int, budget: int) -> IndexType:
    """The ``auto`` type for ``n`` vectors of ``dim`` floats under ``budget`` bytes.

    Exact below EXACT_LIMIT. Above it IVF: on 100k clustered 384-d vectors it reached
    recall@10 0.999 at 41x flat's queries/s, HNSW 0.88 at 17x and needs a graph on top
    of the vectors (bench/index.py). When the float vectors would not fit ``budget``:
    8-bit codes (4x smaller), or PQ codes (16x smaller) when even those would not.
    """
    if n < EXACT_LIMIT:
        return IndexType.FLAT
    if n * dim * 4 <= budget:
        return IndexType.IVF
    if n * dim <= budget:
        return IndexType.SQ8
    return IndexType.IVFPQ


def _nlist(n: int) -> int:
    # 2 sqrt(n) lists keeps k-means affordable on two cores at 1M (faiss suggests 4-16x);
    # at least 39 training points per list
    return max(1, min(n // 39, int(2 * math.sqrt(n))))


def _pq_m(dim: int) -> int:
    """Sub-quantisers: the largest divisor of ``dim`` at most dim/4 (4 dims per byte)."""
    return next(m for m in range(max(1, dim // 4), 0, -1) if dim % m == 0)


def factory_string(kind: IndexType, n: int, dim: int) -> str:
    """The ``faiss.index_factory`` description of ``kind`` for ``n`` vectors."""
    nlist = _nlist(n)
    if kind is IndexType.FLAT:
        return "Flat"
    if kind is IndexType.HNSW:
        return f"HNSW{HNSW_M},Flat"
    if kind is IndexType.IVF:
        return f"IVF{nlist},Flat"
    if kind is IndexType.SQ8:
        return f"IVF{nlist},SQ8"
    bits = max(1, min(8, int(math.log2(max(2, min(n, TRAIN_PER_LIST * nlist) // 39)))))
    return f"IVF{nlist},PQ{_pq_m(dim)}x{bits}"


def resolve_kind(kind: IndexType | str, n: int, dim: int, budget: int | None = None) -> IndexType:
    """The type actually built: ``auto`` resolved; flat for k-means over a handful of vectors."""
    kind = IndexType(kind)
    if kind is IndexType.AUTO:
        kind = choose_index(n, dim, memory_budget(budget))
    trained = kind in (IndexType.IVF, IndexType.IVFPQ, IndexType.SQ8)
    return IndexType.FLAT if trained and n < MIN_APPROX else kind


def _build_faiss(kind: IndexType, vectors: np.ndarray, seed: int) -> tuple[Any, str]:
    import faiss
    import numpy as np

    n, dim = vectors.shape
    description = factory_string(kind, n, dim)
    index = faiss.index_factory(dim, description, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed, ivf.cp.niter = seed, 10  # 10 k-means rounds: near-converged, 2.5x cheaper
        if kind is IndexType.IVFPQ:  # polysemous codes only serve Hamming filtering: skip
            faiss.downcast_index(ivf).do_polysemous_training = False
        size = min(n, TRAIN_PER_LIST * ivf.nlist)
        rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
        index.train(np.ascontiguousarray(vectors[rows]))
    index.add(vectors)
    return index, description


def _ladder(kind: IndexType, index: Any) -> tuple[str | None, list[int]]:
    """The search-time parameter of ``kind`` and the values tried, cheapest first."""
    import faiss

    if kind is IndexType.HNSW:
        return "efSearch", [16, 32, 64, 128, 256, 512, 1024]
    if kind is IndexType.FLAT:
        return None, []
    nlist = faiss.extract_index_ivf(index).nlist
    return "nprobe", sorted({min(nlist, 2**p) for p in range(0, 12)})


def _set_params(index: Any, params: dict[str, int]) -> None:
    import faiss

    for name, value in params.items():
        faiss.ParameterSpace().set_index_parameter(index, name, value)


def _tune(kind: IndexType, index: Any, vectors: np.ndarray, seed: int,
          probes: np.ndarray | None = None) -> tuple[dict[str, int], float]:
    """The cheapest search parameter that reaches RECALL_TARGET, and its recall@10.

    ``probes``: the query form of each row (default the rows themselves).
    Stops early when a step gains nearly nothing (PQ codes plateau below the target).
    """
    import numpy as np

    name, values = _ladder(kind, index)
    rng = np.random.default_rng(seed + 1)
    rows = np.sort(rng.choice(len(vectors), min(len(vectors), RECALL_QUERIES), replace=False))
    probes = vectors if probes is None else probes
    queries = np.ascontiguousarray(probes[rows])
    truth = _exact(vectors, queries, rows)
    if name is None:
        return {}, recall_at(index, queries, rows, truth)
    params, recall = {}, -1.0
    for value in values:
        _set_params(index, {name: value})
        before, params, recall = recall, {name: value}, recall_at(index, queries, rows, truth)
        if recall >= RECALL_TARGET or (value >= 16 and recall - before < 0.002):
            break
    return params, recall


def _exact(vectors: np.ndarray, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    import faiss

    k = min(RECALL_K + 1, len(vectors))
    _, found = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    return _without_self(found, rows, k - 1)


def _without_self(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Each row's neighbours other than the query vector itself, the first ``k``.

    Finding a query's own vector is easy for every index type; leaving it out makes
    own-vector queries about as hard as unseen ones (bench/index.py).
    """
    import numpy as np

    keep = found != rows[:, None]
    return np.stack([f[m][:k] if m.sum() >= k else f[:k] for f, m in zip(found, keep, strict=True)])


def recall_at(index: Any, queries: np.ndarray, rows: np.ndarray, truth: np.ndarray) -> float:
    """Share of each query's exact neighbours (``truth``) that ``index`` finds among as many."""
    _, found = index.search(queries, truth.shape[1] + 1)
    found = _without_self(found, rows, truth.shape[1])
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / max(1, truth.size)


def _load_flag(kind: IndexType) -> int:
    """Memory-map what faiss can: inverted lists (IVF types) or the flat codes (the others)."""
    import faiss

    return faiss.IO_FLAG_MMAP if kind in (IndexType.IVF, IndexType.IVFPQ, IndexType.SQ8) \
        else faiss.IO_FLAG_MMAP_IFC


class VectorIndex:
    """Item ids plus a faiss index over their vectors."""

    def __init__(self, ids: Sequence[str], index: object, kind: IndexType,
                 info: dict[str, Any] | None = None) -> None:
        self.ids = list(ids)
        self.index = index
        self.kind = kind
        self.info: dict[str, Any] = info or {}  # factory, params, recall@10, requested
        self._row = {item_id: i for i, item_id in enumerate(self.ids)}

    @classmethod
    def build(cls, ids: Sequence[str], vectors: np.ndarray, kind: IndexType | str = IndexType.AUTO,
              seed: int = 0, budget: int | None = None, bias: np.ndarray | None = None) -> VectorIndex:
        """An index of ``kind`` over unit ``vectors``, tuned to RECALL_TARGET (see module doc).

        ``bias``: score terms per item, ``(items,)`` or ``(items, j)`` (an aligner's hubness
        corrections, one per query modality), held as extra columns; :meth:`search` takes
        each query's weights on them (``columns``), so a score is ``q . v + columns . bias``.
        """
        import numpy as np

        from mmrec.vectors import with_bias

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(ids) != vectors.shape[0]:
            raise ConfigError(f"index needs one vector per id: {len(ids)} ids, shape {vectors.shape}")
        if not len(ids):
            raise ConfigError("cannot build an index over zero items")
        probes, extra = vectors, 0
        if bias is not None:  # the tuning queries: own vectors, weighing every column
            extra = np.asarray(bias).reshape(len(vectors), -1).shape[1]
            vectors = np.ascontiguousarray(with_bias(vectors, bias))
            probes = with_bias(probes, np.ones((len(probes), extra)))
        built = resolve_kind(kind, *vectors.shape, budget)
        index, description = _build_faiss(built, vectors, seed)
        params, recall = _tune(built, index, vectors, seed, probes)
        info = {"factory": description, "params": params, f"recall@{RECALL_K}": round(recall, 4),
                "recall_queries": min(len(ids), RECALL_QUERIES), "requested": IndexType(kind).value}
        if bias is not None:
            info["bias_columns"] = extra
        return cls(ids, index, built, info)

    @property
    def dim(self) -> int:
        """The query size: the index's, less its bias columns."""
        return int(self.index.d) - self.bias_columns

    @property
    def bias_columns(self) -> int:
        return int(self.info.get("bias_columns", 0))

    @property
    def recall(self) -> float | None:
        """recall@10 against exact search measured at build time (None for old indexes)."""
        return self.info.get(f"recall@{RECALL_K}")

    def row(self, item_id: str) -> int | None:
        return self._row.get(item_id)

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[Iterable[str]] | None = None,
               columns: np.ndarray | None = None) -> list[list[tuple[str, float]]]:
        """Top ``k`` (id, score) per query row, skipping each row's ``exclude`` ids.

        ``columns``: each query's weights on the bias columns (default 0: no term)."""
        import numpy as np

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ConfigError(f"query has {queries.shape[1]} dimensions, the index {self.dim}")
        if self.bias_columns:
            from mmrec.vectors import with_bias

            weights = np.zeros((len(queries), self.bias_columns)) if columns is None else columns
            queries = np.ascontiguousarray(with_bias(queries, weights))
        skips = [set(e) for e in exclude] if exclude is not None else [set()] * len(queries)
        depth = min(len(self.ids), k + max((len(s) for s in skips), default=0))
        scores, rows = self.index.search(queries, depth)
        results = []
        for q in range(len(queries)):
            hits = [(self.ids[r], float(s)) for r, s in zip(rows[q], scores[q], strict=True)
                    if r >= 0 and self.ids[r] not in skips[q]]
            results.append(hits[:k])
        return results

    def save(self, directory: Path, name: str = "index") -> None:
        import faiss

        # streamed through a callback: no second in-memory copy of a large index
        with atomic_open(directory / f"{name}.faiss", "wb") as fh:
            faiss.write_index(self.index, faiss.PyCallbackIOWriter(fh.write))
        write_json(directory / f"{name}.ids.json", {"kind": self.kind.value, "ids": self.ids, **self.info})

    @classmethod
    def load(cls, directory: Path, name: str = "index") -> VectorIndex:
        """Open a saved index, memory-mapped; old files (kind and ids only) load too."""
        import faiss

        blob, meta = directory / f"{name}.faiss", directory / f"{name}.ids.json"
        if not blob.is_file() or not meta.is_file():
            raise IndexFileError(f"{directory}: no index named {name!r}")
        info = read_json(meta, IndexFileError)
        ids = info.pop("ids")
        try:
            kind = IndexType(info.pop("kind"))
        except ValueError:
            raise IndexFileError(f"{meta}: unknown index type; this mmrec reads "
                             f"{', '.join(k.value for k in IndexType if k is not IndexType.AUTO)}",
                             hint="upgrade mmrec, or rebuild the directory") from None
        index = read_part(blob, lambda p: faiss.read_index(str(p), _load_flag(kind)), IndexFileError)
        if index.ntotal != len(ids):
            raise IndexFileError(f"{blob}: index holds {index.ntotal} vectors for {len(ids)} ids")
        _set_params(index, info.get("params", {}))
        return cls(ids, index, kind, info)
