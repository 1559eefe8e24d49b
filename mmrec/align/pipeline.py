"""``mmrec align``: fit projection heads on a store and write an aligner directory.

One run: read the store, split its items (by item, seeded), start the heads from the
shipped defaults (or ``--init``, or scratch), train with early stopping, choose the
image bridge's weight on the validation split, project every item, fuse, index, and
publish the directory atomically. ``steps=0`` trains nothing: it applies the initial
heads and the bridge as they are (zero-shot).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.align.config import DEFAULT_SHARED_DIM, AlignConfig, Pivot
from mmrec.errors import ConfigError
from mmrec.progress import NullProgress, Progress

if TYPE_CHECKING:
    import numpy as np

    from mmrec.align.bridge import ImageNetBridge
    from mmrec.align.fusion import Projector
    from mmrec.align.init import InitSource
    from mmrec.align.train import FitResult
    from mmrec.store import Store

BRIDGE_GRID = tuple(i / 10 for i in range(11))


@dataclass
class AlignReport:
    aligner: str
    store: str
    items: int
    modalities: list[str]
    pivot: str
    dim: int
    head: str
    init: str  # "shipped", "scratch" or the --init directory
    train_items: int
    val_items: int
    steps: int  # optimizer steps run
    best_step: int  # the step whose weights were kept
    stopped_early: bool
    val_r10: float  # mean cross-modal validation R@10 of the heads alone (stopping criterion)
    temperature: float
    bridge_weight: float | None  # None: no bridge (other encoders, or --no-bridge)
    bridge_weight_from: str | None  # "validation", "given", the init source, or "bridge only"
    retrieval: dict[str, dict[str, float]]  # validation split, final vectors
    seconds: float
    device: str
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["val_r10"] = None if math.isnan(self.val_r10) else round(self.val_r10, 6)
        return out


@dataclass
class StoreArrays:
    """The store's vectors for the aligned modalities, rows in store order."""

    ids: list[str]
    matrices: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    norms: dict[str, np.ndarray]

    @classmethod
    def read(cls, store: Store, modalities: list[str]) -> StoreArrays:
        import numpy as np

        matrices, masks, norms = {}, {}, {}
        for m in modalities:
            matrix, mask = store.matrix(m, mmap=False)
            matrices[m], masks[m] = np.asarray(matrix, dtype=np.float32), mask.astype(bool)
            norms[m] = store.norms(m)
        return cls(list(store.ids), matrices, masks, norms)


def split_items(ids: list[str], val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of the train and validation items: a seeded shuffle, split by item."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = int(round(val_split * len(ids)))
    if val_split > 0 and len(ids) >= 4:
        n_val = max(n_val, 2)  # a one-item split ranks nothing
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _modalities(store: Store, config: AlignConfig) -> list[str]:
    have = [m.value for m in store.modalities]
    wanted = config.modalities or have
    missing = [m for m in wanted if m not in have]
    if missing:
        raise ConfigError(f"store {store.path} has no {missing[0]} vectors (it has: {', '.join(have)})")
    if config.pivot is Pivot.TEXT and "text" not in wanted:
        raise ConfigError("--pivot text needs the store's text vectors",
                          hint="use --pivot shared to align other modalities without text")
    return [m for m in have if m in wanted]


def _dim(store: Store, config: AlignConfig) -> int:
    if config.pivot is Pivot.TEXT:
        text_dim = store.dim("text")
        if config.dim is not None and config.dim != text_dim:
            raise ConfigError(f"--dim {config.dim}: with --pivot text the space is the text "
                              f"encoder's ({text_dim}-d)", hint="use --pivot shared for another size")
        return text_dim
    return config.dim or DEFAULT_SHARED_DIM


def _bridge(store: Store, config: AlignConfig, modalities: list[str],
            notes: list[str]) -> ImageNetBridge | None:
    from mmrec.align import bridge

    if not config.bridge or "image" not in modalities:
        return None
    if not bridge.supports(store.encoders()):
        notes.append(f"no image bridge: it needs {bridge.IMAGE_ENCODER} images and "
                     f"{bridge.TEXT_ENCODER} text")
        return None
    return bridge.ImageNetBridge.load()


def _head_modalities(modalities: list[str], config: AlignConfig, source: InitSource | None,
                     has_bridge: bool, steps: int, notes: list[str]) -> list[str]:
    """Modalities that get a head; with no training, only those a head exists for."""
    if steps > 0:
        return list(modalities)
    trained = set(source.heads_for()) if source else set()
    keep = []
    for m in modalities:
        if (m == "text" and config.pivot is Pivot.TEXT) or m in trained:
            keep.append(m)
        elif m == "image" and has_bridge:
            notes.append("image: no initial head, the bridge alone")
        else:
            notes.append(f"{m}: left out (no initial head and no training; use --steps > 0)")
    return keep


def align(store: str | Path, out: str | Path, config: AlignConfig | None = None,
          progress: Progress | None = None, **overrides: Any) -> AlignReport:
    """Fit projection heads on ``store`` and write the aligner directory ``out``.

    ``overrides`` are :class:`AlignConfig` fields (``steps=0`` for zero-shot, ``pivot``,
    ``head``, ``init``, ...). Returns an :class:`AlignReport`.
    """
    from mmrec import distributed as dist
    from mmrec.artifacts import Kind, check_out
    from mmrec.runtime import seed_everything
    from mmrec.store import Store

    started = time.perf_counter()
    config = _configure(config, overrides)
    out, progress = Path(out), progress or NullProgress()
    if not dist.world().main:  # one set of bars and notes, rank 0's
        progress = NullProgress()
    check_out(out, Kind.ALIGNER)
    store = Store.open(store)
    device = dist.setup(config.device)  # under torchrun: joins the ranks, DDP in fit()
    seed_everything(config.seed)
    run = _Run(store, config, progress)
    fit = run.train(device)
    # rank 0 writes the aligner; the others wait for it and return its report
    report = dist.from_main(lambda: run.write(out, run.projector(fit), fit))
    report.seconds, report.device = time.perf_counter() - started, str(device)
    return report


def _configure(config: AlignConfig | None, overrides: dict[str, Any]) -> AlignConfig:
    fields = {f.name for f in dataclasses.fields(AlignConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"unknown align option(s): {', '.join(unknown)}")
    config = dataclasses.replace(config or AlignConfig(), **overrides)
    if config.init is not None:
        config.init = str(config.init)
    return config.validate()


class _Run:
    """The state of one align run, step by step."""

    def __init__(self, store: Store, config: AlignConfig, progress: Progress) -> None:
        from mmrec.align import init
        from mmrec.align.train import resolve_steps

        self.store, self.config, self.progress, self.notes = store, config, progress, []
        self.weight_scores: dict[float, float] = {}
        modalities = _modalities(store, config)
        self.dim = _dim(store, config)
        self.arrays = StoreArrays.read(store, modalities)
        self.train_rows, self.val_rows = split_items(self.arrays.ids, config.val_split, config.seed)
        self.source = init.resolve(config, store, self.dim, log=self._note)
        self.bridge = _bridge(store, config, modalities, self.notes)
        paired = sum(self.arrays.masks[m][self.train_rows].astype(int) for m in modalities) >= 2
        self.steps = resolve_steps(config, int(paired.sum()))  # what fit() will resolve too
        self.head_modalities = _head_modalities(modalities, config, self.source,
                                                self.bridge is not None, self.steps, self.notes)
        self.modalities = [m for m in modalities
                           if m in self.head_modalities or (m == "image" and self.bridge)]
        if not self.modalities:
            raise ConfigError("nothing to align: no modality has a head or a bridge")

    def _note(self, message: str) -> None:
        self.notes.append(message)
        self.progress.log(message)

    def heads(self) -> Any:
        from mmrec.align.heads import HeadSet

        dims = {m: self.store.dim(m) for m in self.head_modalities}
        heads = HeadSet(dims, self.dim, self.config.head, self.config.hidden, self.config.pivot)
        if self.source is not None:
            copied = self.source.apply(heads)
            fresh = [m for m in dims if m not in copied and not heads.is_identity(m)]
            if fresh:
                self._note(f"{', '.join(fresh)}: head from scratch (not in {self.source.label})")
        return heads

    def train(self, device: Any) -> FitResult:
        from mmrec.align.train import TrainData, fit

        self.head_set = self.heads().to(device)
        data = TrainData({m: self.arrays.matrices[m] for m in self.head_modalities},
                         {m: self.arrays.masks[m] for m in self.head_modalities},
                         self.train_rows, self.val_rows)
        if self.steps > 0 and len(data.paired(self.train_rows)) < 2:
            raise ConfigError("nothing to train on: fewer than two training items have "
                              "two modalities", hint="use --steps 0 to apply the initial heads")
        return fit(self.head_set, data, self.config, device, self.progress)

    def projector(self, fit: FitResult) -> Projector:
        from mmrec.align.fusion import Projector

        projector = Projector(self.head_set, self.bridge, 0.0)
        if self.bridge is not None:
            projector.bridge_weight, self.weight_from = self._bridge_weight(projector, fit)
        else:
            self.weight_from = None
        return projector

    def _bridge_weight(self, projector: Projector, fit: FitResult) -> tuple[float, str]:
        if not self.head_set.has("image"):
            return 1.0, "bridge only"
        if self.config.bridge_weight is not None:
            return self.config.bridge_weight, "given"
        inherited = self.source.bridge_weight if self.source else None
        if fit.steps == 0 and inherited is not None:
            return inherited, self.source.label  # zero-shot: no peeking at the pairs
        scores = bridge_weight_scores(projector, self.arrays, self.val_rows)
        if scores:
            self.weight_scores = scores
            return max(scores, key=lambda w: (scores[w], -w)), "validation"
        return (inherited if inherited is not None else 0.5), "default (no validation pairs)"

    def project(self, projector: Projector) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        import numpy as np

        out = {}
        for m in self.modalities:
            matrix, mask = self.arrays.matrices[m], self.arrays.masks[m]
            projected = projector.project(m, matrix, self.arrays.norms[m])
            out[m] = (np.where(mask[:, None], projected, 0.0).astype(np.float32), mask)
        return out

    def write(self, out: Path, projector: Projector, fit: FitResult) -> AlignReport:
        from mmrec.align.aligner import write_aligner
        from mmrec.align.fusion import fuse
        from mmrec.align.retrieval import retrieval_metrics

        projected = self.project(projector)
        fused, have = fuse(projected, self.config.fusion)
        keep = have.nonzero()[0]
        ids = [self.arrays.ids[i] for i in keep]
        projected = {m: (matrix[keep], mask[keep]) for m, (matrix, mask) in projected.items()}
        val = set(self.arrays.ids[i] for i in self.val_rows)
        val_rows = _rows_of(ids, val)
        metrics = retrieval_metrics(projected, val_rows)
        info = self._info(projector, fit, metrics)
        contents = _contents(self.store, ids, projected, fused[keep], val, self.config, info)
        write_aligner(out, self.config, self.store, self.head_set.to("cpu"), contents)
        return self._report(out, ids, val_rows, projector, fit, metrics)

    def _info(self, projector: Projector, fit: FitResult, metrics: dict[str, Any]) -> dict[str, Any]:
        bridge = {"enabled": projector.bridge is not None}
        if projector.bridge is not None:
            bridge.update(weight=projector.bridge_weight, chosen_by=self.weight_from,
                          temperature=projector.bridge.temperature,
                          val_r10_by_weight={str(w): r for w, r in self.weight_scores.items()})
        return {
            "modalities": self.modalities, "dim": self.dim, "bridge": bridge,
            "architecture": self.head_set.architecture(),
            "init": self.source.label if self.source else "scratch",
            "temperature": self.head_set.temperature(),
            "training": {"steps": fit.steps, "best_step": fit.best_step,
                         "stopped_early": fit.stopped_early,
                         "val_r10": None if math.isnan(fit.best_r10) else fit.best_r10,
                         "history": fit.history},
            "validation": metrics,
        }

    def _report(self, out: Path, ids: list[str], val_rows: np.ndarray, projector: Projector,
                fit: FitResult, metrics: dict[str, Any]) -> AlignReport:
        return AlignReport(
            aligner=str(out), store=str(self.store.path), items=len(ids),
            modalities=self.modalities, pivot=self.config.pivot.value, dim=self.dim,
            head=self.config.head.value, init=self.source.label if self.source else "scratch",
            train_items=len(ids) - len(val_rows), val_items=len(val_rows), steps=fit.steps,
            best_step=fit.best_step, stopped_early=fit.stopped_early, val_r10=fit.best_r10,
            temperature=self.head_set.temperature(),
            bridge_weight=projector.bridge_weight if projector.bridge is not None else None,
            bridge_weight_from=self.weight_from, retrieval=metrics, seconds=0.0, device="",
            notes=self.notes,
        )


def _rows_of(ids: list[str], wanted: set[str]) -> np.ndarray:
    import numpy as np

    return np.array([i for i, item_id in enumerate(ids) if item_id in wanted], dtype=np.int64)


def _contents(store: Store, ids: list[str], projected: dict[str, Any], fused: np.ndarray,
              val: set[str], config: AlignConfig, info: dict[str, Any]) -> Any:
    from mmrec.align.aligner import AlignerContents

    meta = store.items()
    split = {"seed": config.seed, "val_split": config.val_split,
             "train": [i for i in ids if i not in val], "val": [i for i in ids if i in val]}
    items = [{"id": i, **meta.get(i, {})} for i in ids]
    return AlignerContents(ids, projected, fused, split, items, info)


def bridge_weight_scores(projector: Projector, arrays: StoreArrays,
                         val_rows: np.ndarray) -> dict[float, float]:
    """Mean R@10 of the image pairs on validation rows for each bridge weight of the grid
    (empty when no validation item has an image and another modality)."""
    import numpy as np

    from mmrec.align.fusion import mix
    from mmrec.align.retrieval import mean_recall

    image_mask = arrays.masks["image"][val_rows]
    others = [m for m in arrays.matrices if m != "image" and projector.heads.has(m)]
    if not len(val_rows) or not image_mask.any() or not others:
        return {}
    unit, norms = arrays.matrices["image"][val_rows], arrays.norms["image"][val_rows]
    head, bridged = projector.heads.project("image", unit), projector.bridge_part(unit, norms)
    projected = {m: (projector.heads.project(m, arrays.matrices[m][val_rows]),
                     arrays.masks[m][val_rows]) for m in others}
    pairs = [p for m in others for p in (("image", m), (m, "image"))]
    scores = {}
    for weight in BRIDGE_GRID:
        projected["image"] = (mix(head, bridged, weight), image_mask)
        score = mean_recall(projected, np.arange(len(val_rows)), k=10, pairs=pairs)
        if not math.isnan(score):
            scores[weight] = round(score, 6)
    return scores
