"""faiss indexes over unit-norm vectors: inner product = cosine.

The index type is chosen by size: exact search (``flat``) while it is cheap, an
inverted file (``ivf``) for large collections. An index is saved as ``NAME.faiss``
plus ``NAME.ids.json`` (the item id of every row).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mmrec.artifacts import read_json, read_part
from mmrec.atomic import atomic_open, write_json
from mmrec.enums import IndexType
from mmrec.errors import ConfigError, IndexFileError

if TYPE_CHECKING:
    import numpy as np

EXACT_LIMIT = 50_000  # below this many vectors a flat index is exact and fast enough


class VectorIndex:
    """Item ids plus a faiss index over their vectors."""

    def __init__(self, ids: Sequence[str], index: object, kind: IndexType) -> None:
        self.ids = list(ids)
        self.index = index
        self.kind = kind
        self._row = {item_id: i for i, item_id in enumerate(self.ids)}

    @classmethod
    def build(cls, ids: Sequence[str], vectors: np.ndarray,
              kind: IndexType | str = IndexType.AUTO, seed: int = 0) -> VectorIndex:
        import faiss
        import numpy as np

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(ids) != vectors.shape[0]:
            raise ConfigError(f"index needs one vector per id: {len(ids)} ids, shape {vectors.shape}")
        if not len(ids):
            raise ConfigError("cannot build an index over zero items")
        kind = IndexType(kind)
        if kind is IndexType.AUTO:
            kind = IndexType.FLAT if len(ids) < EXACT_LIMIT else IndexType.IVF
        dim = vectors.shape[1]
        if kind is IndexType.FLAT:
            index = faiss.IndexFlatIP(dim)
        else:
            nlist = max(1, min(len(ids) // 39, int(4 * math.sqrt(len(ids)))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            sample = vectors[rng.choice(len(ids), size=min(len(ids), 256 * nlist), replace=False)]
            index.train(sample)
            index.nprobe = min(nlist, 32)
        index.add(vectors)
        return cls(ids, index, kind)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def row(self, item_id: str) -> int | None:
        return self._row.get(item_id)

    def search(self, queries: np.ndarray, k: int,
               exclude: Sequence[Iterable[str]] | None = None) -> list[list[tuple[str, float]]]:
        """Top ``k`` (id, score) per query row, skipping each row's ``exclude`` ids."""
        import numpy as np

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ConfigError(f"query has {queries.shape[1]} dimensions, the index {self.dim}")
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

        with atomic_open(directory / f"{name}.faiss", "wb") as fh:
            fh.write(faiss.serialize_index(self.index).tobytes())
        write_json(directory / f"{name}.ids.json", {"kind": self.kind.value, "ids": self.ids})

    @classmethod
    def load(cls, directory: Path, name: str = "index") -> VectorIndex:
        import faiss
        import numpy as np

        blob, meta = directory / f"{name}.faiss", directory / f"{name}.ids.json"
        if not blob.is_file() or not meta.is_file():
            raise IndexFileError(f"{directory}: no index named {name!r}")
        info = read_json(meta, IndexFileError)
        index = read_part(blob, lambda p: faiss.deserialize_index(
            np.frombuffer(p.read_bytes(), dtype=np.uint8)), IndexFileError)
        if index.ntotal != len(info["ids"]):
            raise IndexFileError(f"{blob}: index holds {index.ntotal} vectors for {len(info['ids'])} ids")
        return cls(info["ids"], index, IndexType(info["kind"]))
