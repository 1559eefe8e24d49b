"""Aligner directories: what ``mmrec align`` writes and ``recommend``/``evaluate`` read.

Layout::

    config.json          format mmrec-aligner: resolved AlignConfig, the store's encoders,
                         and "aligner": modalities, dim, bridge weight, temperature, ...
    manifest.json        the manifest of the store it was built from
    heads.safetensors    the projection heads and the learned logit scale
    split.json           the seed and the train / validation item ids
    ids.json             item ids: the row order of every matrix below
    items.jsonl          item metadata (title, ...), so search needs no store
    vectors/<m>.npy      per modality: (items, dim) projected unit rows, zeros where absent
    vectors/<m>.mask.npy its presence mask
    vectors/<m>.hub.npy  (where chosen) each item's hubness correction, one column per
                         query modality (``hub_sources`` in config.json), also the last
                         columns of index-<m>.faiss (:mod:`mmrec.alignment.hubness`)
    vectors/fused.npy    fused item vectors (normalised weighted mean of the modalities)
    index.faiss          faiss index over the fused vectors (+ index.ids.json)
    index-<m>.faiss      faiss index over one modality's projected vectors
    tuned-<m>.safetensors  (``--tune``) the tuned layers of modality m's encoder, applied
                         to it for queries (:func:`mmrec.alignment.tune.load_query_encoder`)
    memory-<m>.safetensors (where chosen) modality m's pair memory, applied to items and
                         queries alike (:mod:`mmrec.alignment.memory`)

Written through :meth:`mmrec.artifacts.Artifact.create`: staged in a hidden sibling and
published in one step. The directory needs nothing else: it can be moved, and its
store deleted, and still be searched and evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.artifacts import Artifact, Kind, read_json, read_part, write_config
from mmrec.atomic import save_npy, save_safetensors, write_json
from mmrec.enums import Target
from mmrec.errors import AlignerError, ConfigError
from mmrec.store import read_items, write_items

if TYPE_CHECKING:
    import numpy as np

    from mmrec.alignment.fusion import Projector
    from mmrec.alignment.heads import HeadSet
    from mmrec.index import VectorIndex
    from mmrec.store import Store


def index_name(target: Target | str) -> str:
    target = Target(target)
    return "index" if target is Target.FUSED else f"index-{target.value}"


@dataclass
class AlignerContents:
    """Everything one aligner directory holds, ready to be written."""

    ids: list[str]
    projected: dict[str, tuple[np.ndarray, np.ndarray]]
    fused: np.ndarray
    split: dict[str, Any]
    items: list[dict[str, Any]]
    info: dict[str, Any]
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)  # modality -> tensors
    hubs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # target -> source -> term
    memories: list[Any] = field(default_factory=list)  # PairMemory of each modality that has one


def write_aligner(out: Path, config: Any, store: Store, heads: HeadSet,
                  contents: AlignerContents) -> None:
    """Write ``contents`` (arrays in memory or anywhere) as the aligner ``out``, atomically."""
    with Artifact.create(out, Kind.ALIGNER) as staging:
        write_parts(staging, config, store, heads, contents)


def write_parts(staging: Path, config: Any, store: Store, heads: HeadSet,
                contents: AlignerContents) -> None:
    """Every file of an aligner into ``staging``. A matrix that is already a memory map
    of its file there (``mmrec align`` projects into them) is kept, not copied; each
    index is built from its matrix in turn, whose pages are then dropped, so at most one
    index and one matrix are resident at a time."""
    import numpy as np

    from mmrec.alignment.heads import save_heads
    from mmrec.index import VectorIndex
    from mmrec.store import release

    (staging / "vectors").mkdir(exist_ok=True)
    write_config(staging, Kind.ALIGNER, config, store, extra={"aligner": contents.info})
    write_json(staging / "manifest.json", store.manifest)
    write_json(staging / "split.json", contents.split)
    write_json(staging / "ids.json", contents.ids)
    write_items(staging / "items.jsonl", contents.items)
    save_heads(heads, staging)
    for modality, tensors in contents.tuned.items():
        from mmrec.alignment.tune import weights_file

        save_safetensors(staging / weights_file(modality), tensors)
    for memory in contents.memories:
        memory.save(staging)
    for modality, (matrix, mask) in contents.projected.items():
        _save_matrix(staging / "vectors" / f"{modality}.npy", matrix)
        save_npy(staging / "vectors" / f"{modality}.mask.npy", mask)
        rows = np.flatnonzero(mask)
        present = matrix if len(rows) == len(mask) else matrix[rows]  # no copy when all are
        hub = contents.hubs.get(modality)
        if hub:  # one column per query modality, in hub_sources' order
            hub = np.stack(list(hub.values()), axis=1)
            save_npy(staging / "vectors" / f"{modality}.hub.npy", hub)
        VectorIndex.build([contents.ids[i] for i in rows], present, config.index,
                          bias=hub[rows] if hub is not None else None,
                          ).save(staging, index_name(modality))
        release(matrix)
    _save_matrix(staging / "vectors" / "fused.npy", contents.fused)
    VectorIndex.build(contents.ids, contents.fused, config.index).save(staging, index_name(Target.FUSED))
    release(contents.fused)


def _save_matrix(path: Path, matrix: np.ndarray) -> None:
    """``path`` as ``save_npy`` writes it; a memory map of ``path`` is only made durable."""
    import os

    if getattr(matrix, "filename", None) is not None and Path(matrix.filename).resolve() == path.resolve():
        matrix.flush()
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    else:
        save_npy(path, matrix)


class Aligner:
    """A read-only view of an aligner directory; parts load on first use."""

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        self.path, self.config = path, config
        self.info: dict[str, Any] = config.get("aligner", {})
        self.modalities: list[str] = list(self.info.get("modalities", []))
        self._projected: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def open(cls, path: str | Path) -> Aligner:
        artifact = Artifact.open(path, Kind.ALIGNER)
        return cls(artifact.path, artifact.config)

    @property
    def encoders(self) -> dict[str, dict[str, Any]]:
        return self.config["store"]["encoders"]

    @cached_property
    def ids(self) -> list[str]:
        return read_json(self.path / "ids.json", AlignerError)

    @cached_property
    def rows(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.ids)}

    def row(self, item_id: str) -> int:
        if item_id not in self.rows:
            raise ConfigError(f"unknown item id {item_id!r}: not in aligner {self.path}")
        return self.rows[item_id]

    def require(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ConfigError(f"aligner {self.path} has no {modality} vectors "
                              f"(it has: {', '.join(self.modalities) or 'none'})")

    def projected(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """``(items, dim)`` projected unit rows (memory-mapped) and the presence mask."""
        import numpy as np

        self.require(modality)
        if modality not in self._projected:
            base = self.path / "vectors" / modality
            self._projected[modality] = (
                read_part(Path(f"{base}.npy"), lambda p: np.load(p, mmap_mode="r"), AlignerError),
                read_part(Path(f"{base}.mask.npy"), np.load, AlignerError))
        return self._projected[modality]

    def all_projected(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {m: self.projected(m) for m in self.modalities}

    @cached_property
    def hubs(self) -> dict[str, dict[str, np.ndarray]]:
        """``{target: {query modality: hubness correction per item}}`` where it has any."""
        import numpy as np

        found = {}
        for m, sources in self.info.get("hub_sources", {}).items():
            matrix = read_part(self.path / "vectors" / f"{m}.hub.npy", np.load, AlignerError)
            found[m] = {x: matrix[:, j] for j, x in enumerate(sources)}
        return found

    def hub_columns(self, target: Target | str, parts: list[str]) -> np.ndarray | None:
        """A query's weights on the hub columns of ``target``'s index: each column's share
        of the query's content parts (a text query: 1 on the text column), None if none."""
        import numpy as np

        sources = self.info.get("hub_sources", {}).get(Target(target).value)
        if not sources or not parts:
            return None
        return np.array([parts.count(x) / len(parts) for x in sources], dtype=np.float32)

    def fused(self) -> np.ndarray:
        import numpy as np

        return read_part(self.path / "vectors" / "fused.npy", lambda p: np.load(p, mmap_mode="r"),
                         AlignerError)

    def index(self, target: Target) -> VectorIndex:
        from mmrec.index import VectorIndex

        if Target(target) is not Target.FUSED:
            self.require(Target(target).value)
        return VectorIndex.load(self.path, index_name(target))

    def split(self) -> dict[str, Any]:
        return read_json(self.path / "split.json", AlignerError)

    @cached_property
    def items(self) -> dict[str, dict[str, Any]]:
        return read_items(self.path / "items.jsonl", AlignerError)

    def projector(self, with_bridge: bool = True, device: Any = None) -> Projector:
        """Heads (and the bridge, unless not needed) to project new queries like the items."""
        from mmrec.alignment.bridge import ImageNetBridge
        from mmrec.alignment.fusion import Projector
        from mmrec.alignment.heads import load_heads
        from mmrec.alignment.memory import PairMemory

        bridge = self.info.get("bridge") or {}
        use = with_bridge and bool(bridge.get("enabled"))
        memories = {m: memory for m in self.modalities
                    if (memory := PairMemory.load(self.path, m)) is not None}
        return Projector(load_heads(self.path, device),
                         ImageNetBridge.load(bridge.get("temperature")) if use else None,
                         float(bridge.get("weight", 0.0)), memories)
