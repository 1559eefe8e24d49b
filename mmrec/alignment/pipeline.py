"""``mmrec align``: fit projection heads on a store and write an aligner directory.

One run: read the store, split its items (by item, seeded), start the heads from the
shipped defaults (or ``--init``, or scratch), train with early stopping, choose the
image bridge's weight on the validation split, then the pair memory's weight and the
hubness correction's (both 0 where validation says so), project every item, fuse,
index, and publish the directory atomically. ``steps=0`` trains nothing: it applies
the initial heads and the bridge as they are (zero-shot: no memory, no correction).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.alignment.config import DEFAULT_SHARED_DIM, AlignConfig
from mmrec.enums import Pivot
from mmrec.errors import ConfigError
from mmrec.progress import NullProgress, Progress

if TYPE_CHECKING:
    import numpy as np

    from mmrec.alignment.bridge import ImageNetBridge
    from mmrec.alignment.fusion import Projector
    from mmrec.alignment.heads import HeadSet
    from mmrec.alignment.init import InitSource
    from mmrec.alignment.train import FitResult
    from mmrec.alignment.tune import TunedEncoder
    from mmrec.store import Store

BRIDGE_GRID = tuple(i / 10 for i in range(11))
REPORT_GALLERY = 20_000  # validation items the final retrieval metrics rank (seeded sample beyond)
PROJECT_CHUNK = 65_536  # item rows projected at a time


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
    memory_weights: dict[str, float]  # pair memory per modality (absent: none)
    hub_weights: dict[str, float]  # hubness correction per pair "source->target" (absent: none)
    retrieval: dict[str, dict[str, float]]  # validation split, final vectors
    seconds: float
    device: str
    notes: list[str] = field(default_factory=list)
    tuning: dict[str, Any] | None = None  # --tune: the encoder, layers, lr and steps

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
    def read(cls, store: Store, modalities: list[str], writable: tuple[str, ...] = ()) -> StoreArrays:
        """Matrices memory-mapped (training reads batches of rows, projection chunks),
        except ``writable`` ones: an in-memory copy (``--tune`` rewrites the tuned modality's rows)."""
        import numpy as np

        matrices, masks, norms = {}, {}, {}
        for m in modalities:
            matrix, mask = store.matrix(m, mmap=m not in writable)
            # astype only if needed: np.asarray would turn a memmap into a plain view
            matrices[m] = matrix if matrix.dtype == np.float32 else matrix.astype(np.float32)
            masks[m] = mask.astype(bool)
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
    from mmrec.alignment import bridge

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
    decided = plan(store, config, progress)
    trained = train(decided, device, progress)
    # rank 0 writes the aligner; the others wait for it and return its report
    report = dist.from_main(lambda: write(decided, out, trained, projection(decided, trained)))
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


@dataclass(frozen=True)
class Plan:
    """What one align run will do, decided before any training: the store's arrays,
    the split, the initial heads, the bridge and the modalities."""

    store: Store
    config: AlignConfig
    arrays: StoreArrays
    dim: int
    train_rows: np.ndarray
    val_rows: np.ndarray
    gallery: np.ndarray  # the validation rows each check ranks: a bounded, seeded sample
    source: InitSource | None
    bridge: ImageNetBridge | None
    steps: int
    head_modalities: list[str]
    modalities: list[str]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Trained:
    """``train``'s result: the fitted heads (on the training device) and the fit."""

    heads: HeadSet
    fit: FitResult
    notes: tuple[str, ...]
    tuned: TunedEncoder | None = None  # --tune: the encoder whose top layers trained
    # --tune: the untuned reference, each pair's floor, and the tuned run's checks
    tune_check: dict[str, Any] | None = None


@dataclass(frozen=True)
class HubChoice:
    """``_hubs``' result: the stored terms, every pair's weight, the scores of each weight."""

    terms: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # target -> source -> term
    weights: dict[str, float] = field(default_factory=dict)  # "source->target" -> weight
    scores: dict[str, dict[float, float]] = field(default_factory=dict)  # validation R@10 per weight


@dataclass(frozen=True)
class Projection:
    """Heads plus bridge that make the item vectors, and how the bridge weight was chosen."""

    projector: Projector
    weight_from: str | None
    weight_scores: dict[float, float]
    memory_scores: dict[str, dict[float, float]] = field(default_factory=dict)


def plan(store: Store, config: AlignConfig, progress: Progress) -> Plan:
    """Read the store and decide everything that does not need training."""
    from mmrec.alignment import init
    from mmrec.alignment.train import VAL_GALLERY, gallery_sample, resolve_steps
    from mmrec.enums import TuneTarget

    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        progress.log(message)

    modalities = _modalities(store, config)
    dim = _dim(store, config)
    tuned = (config.tune.value,) if config.tune is not TuneTarget.NONE else ()  # rewritten rows
    arrays = StoreArrays.read(store, modalities, writable=tuned)
    train_rows, val_rows = split_items(arrays.ids, config.val_split, config.seed)
    source = init.resolve(config, store, dim, log=note)
    if source is not None and source.config.get("aligner", {}).get("tuning"):
        note(f"the heads in {source.label} were fitted to a tuned encoder; its tuned "
             "layers are not carried over: every modality starts from the store's encoder")
    bridge = _bridge(store, config, modalities, notes)
    paired = sum(arrays.masks[m][train_rows].astype(int) for m in modalities) >= 2
    steps = resolve_steps(config, int(paired.sum()))  # what fit() will resolve too
    heads = _head_modalities(modalities, config, source, bridge is not None, steps, notes)
    kept = [m for m in modalities if m in heads or (m == "image" and bridge)]
    if not kept:
        raise ConfigError("nothing to align: no modality has a head or a bridge")
    gallery = gallery_sample(val_rows, VAL_GALLERY, config.seed)
    return Plan(store, config, arrays, dim, train_rows, val_rows, gallery, source, bridge, steps,
                heads, kept, tuple(notes))


def initial_heads(plan: Plan, log: Any) -> HeadSet:
    """The heads training starts from: copied from the init source where it has them."""
    from mmrec.alignment.heads import HeadSet

    config = plan.config
    dims = {m: plan.store.dim(m) for m in plan.head_modalities}
    heads = HeadSet(dims, plan.dim, config.head, config.hidden, config.pivot)
    if plan.source is not None:
        copied = plan.source.apply(heads)
        fresh = [m for m in dims if m not in copied and not heads.is_identity(m)]
        if fresh:
            log(f"{', '.join(fresh)}: head from scratch (not in {plan.source.label})")
    return heads


def train(plan: Plan, device: Any, progress: Progress) -> Trained:
    from mmrec.alignment import tune
    from mmrec.alignment.train import TrainData, fit, pair_floor, validation_pairs

    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        progress.log(message)

    heads = initial_heads(plan, note).to(device)
    data = TrainData({m: plan.arrays.matrices[m] for m in plan.head_modalities},
                     {m: plan.arrays.masks[m] for m in plan.head_modalities},
                     plan.train_rows, plan.gallery)
    if plan.steps > 0 and len(data.paired(plan.train_rows)) < 2:
        raise ConfigError("nothing to train on: fewer than two training items have "
                          "two modalities", hint="use --steps 0 to apply the initial heads")
    start = copy.deepcopy(heads)  # the untuned reference starts from the same weights
    tuned = tune.prepare(plan.store, plan.config, plan.arrays, plan.head_modalities,
                         plan.steps, device)
    if tuned is None:
        return Trained(heads, fit(heads, data, plan.config, device, progress), tuple(notes))
    m = tuned.modality
    if not validation_pairs(heads, data):  # nothing held out to compare with: the last weights
        result = fit(heads, data, plan.config, device, progress, tuned)
        tuned.refresh(plan.arrays.matrices[m], plan.arrays.norms[m], plan.arrays.masks[m].nonzero()[0])
        return Trained(heads, result, tuple(notes), tuned)
    untuned = _untuned_reference(plan, data, start, device, progress)
    held = plan.arrays.matrices[m][data.val].copy()  # validation checks overwrite these rows
    floor = pair_floor(untuned.fit.best_pairs, plan.config.tune_tolerance)
    result = fit(heads, data, plan.config, device, progress, tuned, floor)
    kept = result.within_floor and (result.best_r10, result.best_mrr) > (untuned.fit.best_r10,
                                                                        untuned.fit.best_mrr)
    check = {"kept_tuned": kept, "tolerance": plan.config.tune_tolerance,
             "untuned": {"best_step": untuned.fit.best_step, "val_r10": untuned.fit.best_r10,
                         "val_pairs": {p: r for p, (r, _, _) in untuned.fit.best_pairs.items()}},
             "floor": floor, "tuned_best_step": result.best_step, "tuned_history": result.history}
    if not kept:
        plan.arrays.matrices[m][data.val] = held
        note(f"--tune {m}: no tuned step beat the untuned fitted heads (validation R@10 "
             f"{untuned.fit.best_r10:.3f}) with every pair within {plan.config.tune_tolerance:g} "
             f"standard errors of theirs: kept the untuned heads and the {m} encoder as it was")
        return Trained(untuned.heads, untuned.fit, tuple(notes), tune_check=check)
    # every item's vector as the kept (best) encoder makes it
    tuned.refresh(plan.arrays.matrices[m], plan.arrays.norms[m], plan.arrays.masks[m].nonzero()[0])
    return Trained(heads, result, tuple(notes), tuned, check)


def _untuned_reference(plan: Plan, data: Any, heads: HeadSet, device: Any,
                       progress: Progress) -> Trained:
    """The heads fitted without tuning, as the same align run without ``--tune`` fits
    them: a tuned step is kept only if it beats them without losing any pair's
    validation R@10 beyond its noise (Tux Paint's 19 sounds were traded for its
    text<->image pairs by the mean criterion alone), and they are kept otherwise."""
    from mmrec.alignment.train import fit

    return Trained(heads, fit(heads, data, plan.config, device, progress), ())


def projection(plan: Plan, trained: Trained) -> Projection:
    """The projector of the item vectors, with the bridge weight chosen (if there is a bridge)."""
    from mmrec.alignment.fusion import Projector

    projector = Projector(trained.heads, plan.bridge, 0.0)
    chosen_by, scores = None, {}
    if plan.bridge is not None:
        weight, chosen_by, scores = _bridge_weight(plan, trained, projector)
        projector.bridge_weight = weight
    memory_scores = _memories(plan, trained, projector)
    return Projection(projector, chosen_by, scores, memory_scores)


def _memories(plan: Plan, trained: Trained, projector: Projector) -> dict[str, dict[float, float]]:
    """Give ``projector`` the pair memory of each non-text modality whose weight, chosen
    on the validation rows (or given), is above 0; the validation R@10 of each weight.

    A weight is judged as it will be used: each of its pairs with the hubness correction
    :func:`_hubs` would then choose for it (the two interact: the memory pulls an image
    toward its look-alikes' texts, crowding the text gallery's hubs, which the correction
    lowers). Judged without it, OpenMoji's memory was 0.25; with it, 0.5, and text->image
    R@10 0.671 -> 0.684 (bench/README)."""
    import numpy as np

    from mmrec.alignment.memory import MEMORY_GRID, MEMORY_LIMIT, PairMemory
    from mmrec.alignment.train import gallery_sample

    config, arrays = plan.config, plan.arrays
    if config.memory_weight == 0 or trained.fit.steps == 0 or not trained.heads.has("text"):
        return {}  # zero-shot uses no pair of the target; a memory needs texts
    val = plan.gallery
    base = {m: (projector.project(m, arrays.matrices[m][val], arrays.norms[m][val]),
                arrays.masks[m][val]) for m in plan.modalities}
    banks = _hub_banks(plan, projector)  # as base: before any memory is chosen
    found = {}
    for m in plan.modalities:
        both = plan.train_rows[arrays.masks[m][plan.train_rows] & arrays.masks["text"][plan.train_rows]]
        if m == "text" or len(both) < 2:
            continue
        rows = gallery_sample(both, MEMORY_LIMIT, config.seed)
        # float16 on disk: the fit uses the rounded pairs, so queries score exactly as items
        keys = np.asarray(arrays.matrices[m][rows], np.float16).astype(np.float32)
        values = projector.project("text", arrays.matrices["text"][rows]).astype(np.float16)
        memory = PairMemory(m, keys, values.astype(np.float32), rows=rows)
        scores, by_pair = {}, {}
        pairs = [p for x in base if x != m for p in ((m, x), (x, m))]
        own = memory.own_keys(len(arrays.ids))
        for weight in (MEMORY_GRID if config.memory_weight is None else (config.memory_weight,)):
            trial, trial_banks = dict(base), dict(banks)
            trial[m] = (memory.apply(base[m][0], arrays.matrices[m][val], weight), base[m][1])
            if m in banks:  # the training images' (sounds') memory, their own pair left out
                bank_rows, plain = banks[m]
                trial_banks[m] = (bank_rows, memory.apply(plain, arrays.matrices[m][bank_rows],
                                                          weight, exclude=own[bank_rows]))
            found_pairs = _corrected_recall(trial, trial_banks, pairs, config.hub_weight)
            if found_pairs:
                scores[weight] = round(float(np.mean(list(found_pairs.values()))), 6)
                by_pair[weight] = found_pairs
        if config.memory_weight is not None:
            memory.weight = config.memory_weight
        elif scores:
            memory.weight = best_memory_weight(scores, by_pair)
        if memory.weight > 0:
            projector.memories[m] = memory
        found[m] = scores
    return found


def best_memory_weight(scores: dict[float, float], by_pair: dict[float, dict[str, float]]) -> float:
    """The weight of the best mean score among those that keep every pair at or above
    its score without memory (weight 0, always a candidate); ties to the smaller. As
    --tune's stop: on Tux Paint, text<->image gains would otherwise buy audio<->image
    losses."""
    off = by_pair.get(0.0, {})
    keep = [w for w in scores if all(r >= off.get(p, -1.0) - 1e-9 for p, r in by_pair[w].items())]
    return max(keep or [0.0], key=lambda w: (scores.get(w, -1.0), -w))


def _hub_banks(plan: Plan, projector: Projector) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per modality, the training rows a hubness term is measured against (as
    :func:`query_bank` samples them) and their projection, without any memory yet."""
    from mmrec.alignment.hubness import BANK_LIMIT
    from mmrec.alignment.train import gallery_sample

    arrays, train = plan.arrays, plan.train_rows
    banks = {}
    for x in plan.modalities:
        rows = gallery_sample(train[arrays.masks[x][train]], BANK_LIMIT, plan.config.seed)
        if len(rows):
            banks[x] = (rows, projector.project(x, arrays.matrices[x][rows], arrays.norms[x][rows]))
    return banks


def _corrected_recall(projected: dict[str, tuple[np.ndarray, np.ndarray]],
                      banks: dict[str, tuple[np.ndarray, np.ndarray]],
                      pairs: list[tuple[str, str]], hub_weight: float | None) -> dict[str, float]:
    """Validation R@10 of each of ``pairs`` (``"a->b"``), with the hubness correction
    weight that is best for it (of the grid, or ``hub_weight`` given), as :func:`_hubs`
    chooses them; pairs without a query left out."""
    import numpy as np

    from mmrec.alignment.hubness import HUB_GRID, HUB_K, hub_scores
    from mmrec.alignment.retrieval import mean_recall

    rows = np.arange(len(next(iter(projected.values()))[1]))
    grid = HUB_GRID if hub_weight is None else (hub_weight,)
    found = {}
    for x, m in pairs:
        bank = banks[x][1] if x in banks else np.zeros((0, projected[m][0].shape[1]), np.float32)
        r = hub_scores(projected[m][0], bank, HUB_K)  # validation items are in no bank
        scores = [mean_recall(projected, rows, k=10, pairs=[(x, m)], hubs={m: {x: -w * r}})
                  for w in (grid if len(bank) else (0.0,))]
        scores = [v for v in scores if not math.isnan(v)]
        if scores:
            found[f"{x}->{m}"] = max(scores)
    return found


def _bridge_weight(plan: Plan, trained: Trained,
                   projector: Projector) -> tuple[float, str, dict[float, float]]:
    if not trained.heads.has("image"):
        return 1.0, "bridge only", {}
    if plan.config.bridge_weight is not None:
        return plan.config.bridge_weight, "given", {}
    inherited = plan.source.bridge_weight if plan.source else None
    if trained.fit.steps == 0 and inherited is not None:
        return inherited, plan.source.label, {}  # zero-shot: no peeking at the pairs
    scores = bridge_weight_scores(projector, plan.arrays, plan.gallery)
    if scores:
        return max(scores, key=lambda w: (scores[w], -w)), "validation", scores
    return (inherited if inherited is not None else 0.5), "default (no validation pairs)", {}


def project(plan: Plan, projector: Projector, keep: np.ndarray | None = None,
            into: Path | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The pivot-space rows (zeros where absent) and masks of the items ``keep`` (sorted
    rows; default all) per modality, projected ``PROJECT_CHUNK`` rows at a time.

    ``into``: a directory to write each modality's rows to as ``<m>.npy`` (a memory map
    whose pages are dropped after each chunk: the aligner's write holds no full-size
    copy); without it, one in-memory array per modality.
    """
    import numpy as np
    from numpy.lib.format import open_memmap

    from mmrec.store import release

    keep = np.arange(len(plan.arrays.ids)) if keep is None else keep
    out = {}
    for m in plan.modalities:
        matrix, mask, norms = plan.arrays.matrices[m], plan.arrays.masks[m], plan.arrays.norms[m]
        memory = projector.memories.get(m)  # a training item leaves its own pair out
        own = memory.own_keys(len(matrix)) if memory is not None else None
        shape = (len(keep), plan.dim)
        projected = np.empty(shape, dtype=np.float32) if into is None else \
            open_memmap(into / f"{m}.npy", mode="w+", dtype=np.float32, shape=shape)
        # every row projected in the same chunks whatever is kept: the same floats
        for lo in range(0, len(matrix), PROJECT_CHUNK):
            part = projector.project(m, matrix[lo:lo + PROJECT_CHUNK], norms[lo:lo + PROJECT_CHUNK],
                                     exclude=None if own is None else own[lo:lo + PROJECT_CHUNK])
            first, last = np.searchsorted(keep, (lo, lo + len(part)))
            rows = keep[first:last]
            part = part if len(rows) == len(part) else part[rows - lo]
            part[~mask[rows]] = 0.0
            projected[first:last] = part
            release(matrix)  # read once: its pages need not stay resident
            release(projected)
        out[m] = (projected, mask if len(keep) == len(mask) else mask[keep])
    return out


def write(plan: Plan, out: Path, trained: Trained, chosen: Projection) -> AlignReport:
    """Project, fuse, measure and publish the aligner ``out``; the report of the run.

    The item vectors are written straight into the aligner's staging directory as memory
    maps, and each index is built from its map in turn (:func:`write_parts`).
    """
    from numpy.lib.format import open_memmap

    from mmrec.alignment.aligner import write_parts
    from mmrec.alignment.fusion import fuse, present
    from mmrec.alignment.retrieval import retrieval_metrics
    from mmrec.alignment.train import gallery_sample
    from mmrec.artifacts import Artifact, Kind
    from mmrec.store import release

    keep = present({m: plan.arrays.masks[m] for m in plan.modalities}, plan.config.fusion).nonzero()[0]
    if not len(keep):
        raise ConfigError("nothing to align: no item has a vector of a modality whose "
                          "--fusion weight is above 0")
    ids = [plan.arrays.ids[i] for i in keep]
    val = set(plan.arrays.ids[i] for i in plan.val_rows)
    val_rows = _rows_of(ids, val)
    with Artifact.create(out, Kind.ALIGNER) as staging:
        vectors = staging / "vectors"
        vectors.mkdir()
        projected = project(plan, chosen.projector, keep, into=vectors)
        fused = open_memmap(vectors / "fused.npy", mode="w+", dtype="float32",
                            shape=(len(keep), plan.dim))
        fuse(projected, plan.config.fusion, out=fused)
        hubs = _hubs(plan, trained, projected, val_rows)
        metrics = retrieval_metrics(projected, gallery_sample(val_rows, REPORT_GALLERY, plan.config.seed),
                                    hubs=hubs.terms)
        for matrix, _ in projected.values():  # the sample's rows, by fault-around, map most pages
            release(matrix)
        info = _info(plan, trained, chosen, metrics, hubs)
        contents = _contents(plan.store, ids, projected, fused, val, plan.config, info)
        contents.hubs, contents.memories = hubs.terms, list(chosen.projector.memories.values())
        if trained.tuned is not None:
            contents.tuned[trained.tuned.modality] = {
                k: v.to("cpu").contiguous() for k, v in trained.tuned.export().items()}
        write_parts(staging, plan.config, plan.store, trained.heads.to("cpu"), contents)
    return _report(plan, out, ids, val_rows, trained, chosen, metrics, hubs.weights)


def _hubs(plan: Plan, trained: Trained, projected: dict[str, tuple[np.ndarray, np.ndarray]],
          val_rows: np.ndarray) -> HubChoice:
    """The hubness corrections (``-w * r(item)``, :mod:`mmrec.alignment.hubness`) of each
    pair ``source->target``, as ``{target: {source: term per item}}``, where ``w``, chosen
    on that pair's validation R@10 (or given), is above 0; every pair's weight; and the
    validation R@10 of each weight tried. Rows are those of ``projected``.

    One term per query modality: an image's correction for text queries is measured
    against training texts, for sounds against training sounds (on Tux Paint one pooled
    term traded audio->image for text->image)."""
    import numpy as np

    from mmrec.alignment.hubness import BANK_LIMIT, HUB_GRID, HUB_K, hub_scores
    from mmrec.alignment.retrieval import mean_recall
    from mmrec.alignment.train import VAL_GALLERY, gallery_sample

    config, n = plan.config, len(next(iter(projected.values()))[1])
    if config.hub_weight == 0 or trained.fit.steps == 0 or len(projected) < 2:
        return HubChoice()
    train = np.setdiff1d(np.arange(n), val_rows)
    val = gallery_sample(val_rows, VAL_GALLERY, config.seed)
    hubs, weights, found = {}, {}, {}
    for m, (matrix, mask) in projected.items():
        for x in (x for x in projected if x != m):
            bank, own = query_bank(projected[x], train, BANK_LIMIT, config.seed)
            r = np.where(mask, hub_scores(matrix, bank, HUB_K, own[:, None]), 0.0).astype(np.float32)
            scores = {}
            for weight in (HUB_GRID if config.hub_weight is None else (config.hub_weight,)):
                score = mean_recall(projected, val, k=10, pairs=[(x, m)], hubs={m: {x: -weight * r}})
                if not math.isnan(score):
                    scores[weight] = round(score, 6)
            weight = config.hub_weight if config.hub_weight is not None else \
                max(scores, key=lambda w: (scores[w], -w)) if scores else 0.0
            if weight > 0:
                hubs.setdefault(m, {})[x] = (-weight * r).astype(np.float32)
            weights[f"{x}->{m}"], found[f"{x}->{m}"] = float(weight), scores
    return HubChoice(hubs, weights, found)


def query_bank(vectors: tuple[np.ndarray, np.ndarray], train: np.ndarray, limit: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training items' rows of one modality (at most ``limit``, seeded): the queries
    a correction is measured against; and per item its own bank row (-1 for none)."""
    import numpy as np

    from mmrec.alignment.train import gallery_sample

    matrix, mask = vectors
    rows = gallery_sample(train[mask[train]], limit, seed)
    own = np.full(len(mask), -1, dtype=np.int64)
    own[rows] = np.arange(len(rows))
    return np.asarray(matrix[rows], dtype=np.float32), own


def _info(plan: Plan, trained: Trained, chosen: Projection, metrics: dict[str, Any],
          hubs: HubChoice) -> dict[str, Any]:
    from mmrec.alignment.hubness import HUB_K

    projector, fit, heads = chosen.projector, trained.fit, trained.heads
    bridge = {"enabled": projector.bridge is not None}
    if projector.bridge is not None:
        bridge.update(weight=projector.bridge_weight, chosen_by=chosen.weight_from,
                      temperature=projector.bridge.temperature,
                      val_r10_by_weight={str(w): r for w, r in chosen.weight_scores.items()})
    return {
        "modalities": plan.modalities, "dim": plan.dim, "bridge": bridge,
        "architecture": heads.architecture(),
        "init": plan.source.label if plan.source else "scratch",
        "temperature": heads.temperature(),
        "training": {"steps": fit.steps, "best_step": fit.best_step,
                     "stopped_early": fit.stopped_early,
                     "val_r10": None if math.isnan(fit.best_r10) else fit.best_r10,
                     "history": fit.history},
        "validation": metrics,
        "tuning": _tuning(plan.config, trained),
        "tune_check": trained.tune_check,
        "memory": {m: {"weight": mem.weight if (mem := projector.memories.get(m)) else 0.0,
                       "pairs": len(mem.keys) if mem else 0, "temperature": mem.temperature if mem else None,
                       "k": mem.k if mem else None,
                       "val_r10_by_weight": {str(w): r for w, r in scores.items()}}
                   for m, scores in chosen.memory_scores.items()},
        "hubness": {pair: {"weight": hubs.weights[pair], "k": HUB_K,
                           "val_r10_by_weight": {str(w): r for w, r in scores.items()}}
                    for pair, scores in hubs.scores.items()},
        "hub_sources": {m: list(terms) for m, terms in hubs.terms.items()},  # index columns
    }


def _tuning(config: AlignConfig, trained: Trained) -> dict[str, Any] | None:
    if trained.tuned is None:
        return None
    from mmrec.alignment.tune import TUNE_MAX_TOKENS, weights_file

    return {"modality": trained.tuned.modality, "encoder": trained.tuned.encoder.name,
            "layers": config.tune_layers, "lr": config.tune_lr, "warmup": config.tune_warmup,
            "params": config.tune_params.value, "rank": config.tune_rank,
            "captions": config.tune_captions, "l2sp": config.tune_l2sp,
            "steps": trained.fit.steps, "best_step": trained.fit.best_step,
            "max_tokens": TUNE_MAX_TOKENS, "tensors": sorted(trained.tuned.export()),
            "file": weights_file(trained.tuned.modality)}


def _report(plan: Plan, out: Path, ids: list[str], val_rows: np.ndarray, trained: Trained,
            chosen: Projection, metrics: dict[str, Any], hub_weights: dict[str, float]) -> AlignReport:
    fit, projector, config = trained.fit, chosen.projector, plan.config
    return AlignReport(
        aligner=str(out), store=str(plan.store.path), items=len(ids),
        modalities=plan.modalities, pivot=config.pivot.value, dim=plan.dim,
        head=config.head.value, init=plan.source.label if plan.source else "scratch",
        train_items=len(ids) - len(val_rows), val_items=len(val_rows), steps=fit.steps,
        best_step=fit.best_step, stopped_early=fit.stopped_early, val_r10=fit.best_r10,
        temperature=trained.heads.temperature(),
        bridge_weight=projector.bridge_weight if projector.bridge is not None else None,
        bridge_weight_from=chosen.weight_from,
        memory_weights={m: mem.weight for m, mem in projector.memories.items()},
        hub_weights={m: w for m, w in hub_weights.items() if w > 0},
        retrieval=metrics, seconds=0.0, device="",
        notes=[*plan.notes, *trained.notes], tuning=_tuning(config, trained),
    )


def _rows_of(ids: list[str], wanted: set[str]) -> np.ndarray:
    import numpy as np

    return np.array([i for i, item_id in enumerate(ids) if item_id in wanted], dtype=np.int64)


def _contents(store: Store, ids: list[str], projected: dict[str, Any], fused: np.ndarray,
              val: set[str], config: AlignConfig, info: dict[str, Any]) -> Any:
    from mmrec.alignment.aligner import AlignerContents

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

    from mmrec.alignment.fusion import mix
    from mmrec.alignment.retrieval import mean_recall

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
