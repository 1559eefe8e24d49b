"""``mmrec train``: fit a recommender on interactions over a store's (or aligner's) items.

One call reads the content and the interactions, splits them, fits the model with
early stopping on the validation part's NDCG@20, and writes the model directory
(see mmrec.recsys.model for its layout).
"""
from __future__ import annotations

import dataclasses
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from mmrec import distributed as dist
from mmrec.artifacts import Kind, check_out
from mmrec.catalog import Interactions, read_interactions
from mmrec.enums import ModelKind
from mmrec.errors import ConfigError
from mmrec.progress import NullProgress, Progress
from mmrec.recsys.config import INTERACTIONS_ONLY, VALID_METRIC, TrainConfig
from mmrec.recsys.content_tune import ContentTuning
from mmrec.recsys.data import Content, Data, aligner_content, index_interactions, store_content
from mmrec.recsys.evaluate import validation_metrics
from mmrec.recsys.scoring import Scorer
from mmrec.recsys.splits import TRAIN, VALID, make_split


@dataclass
class TrainReport:
    out: str
    model: str
    split: str
    items: int
    users: int
    interactions: dict[str, int]
    read: dict[str, Any]
    valid: dict[str, float]
    epochs: int = 0
    best_epoch: int = 0
    seconds: float = 0.0
    device: str = "-"
    curve: list[dict[str, float]] = field(default_factory=list)
    privacy: dict[str, Any] | None = None  # DP-SGD: the epsilon and delta actually spent
    tuning: dict[str, Any] = field(default_factory=dict)  # chosen hyper-parameters and trials
    # seconds per phase: reading, the training steps, validation, the final metrics and
    # writing: where a large catalog's time goes (steps cost the batch, the rest the catalog)
    timings: dict[str, float] = field(default_factory=dict)
    text_tuning: dict[str, Any] | None = None  # --tune text: the encoder, layers, lr, tensors

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["seconds"] = round(self.seconds, 3)
        return out


def _content(store: str | Path | None, aligner: str | Path | None, model: ModelKind) -> Content | None:
    """The items' content; None for a model of interactions alone given none (its items:
    those interacted with)."""
    from mmrec.store import Store

    if aligner is not None:  # --store, if also given, is where the aligner's store now lives
        return aligner_content(aligner, store)
    if store is not None:
        return store_content(Store.open(store))
    if model in INTERACTIONS_ONLY:
        return None
    raise ConfigError(f"--model {model.value} needs the items' content: --store STORE or --aligner ALIGNER",
                      hint=f"{', '.join(m.value for m in INTERACTIONS_ONLY)} train on interactions alone")


def _data(item_ids: list[str], found: Interactions, cfg: TrainConfig) -> Data:
    user_ids, users, items, times = index_interactions(found, item_ids)
    split = make_split(cfg.split, users, items, times, cfg.seed, cfg.test)
    data = Data(item_ids, user_ids, users, items, times, split)
    if not (split.part == TRAIN).any():
        raise ConfigError(f"{found.path}: the {cfg.split.value} split leaves no training interaction")
    return data


def _fit(trainer: Any, data: Data, cfg: TrainConfig, progress: Progress,
         keep: Callable[[], None] | None = None) -> tuple[Scorer, dict[str, Any]]:
    """Epochs until the validation metric stops improving for ``patience`` epochs; the best
    wins. ``keep`` is called whenever an epoch becomes the best (to keep what the scorer
    does not hold: ``--tune text``'s encoder tensors)."""
    rng = np.random.default_rng(cfg.seed)
    validate = bool((data.split.part == VALID).any())
    selects = getattr(trainer, "selects_epoch", True)  # DP-SGD releases its last epoch
    advance = progress.task(f"train {cfg.model.value}", cfg.epochs)
    best, best_metric, best_epoch, stale, curve = None, -math.inf, 0, 0, []
    for epoch in range(1, cfg.epochs + 1):
        started, cpu = time.perf_counter(), time.process_time()  # CPU: a busy box inflates wall
        loss = trainer.epoch(rng)
        stepped, cpu = time.perf_counter(), time.process_time() - cpu
        scorer = trainer.export()
        exported = time.perf_counter()
        # rank 0's metric on every rank, so every rank stops at the same epoch
        metric = dist.from_main(partial(_valid_metric, scorer, data, cfg.seed)) if validate else math.nan
        curve.append({"epoch": epoch, "loss": _finite(loss), VALID_METRIC: _finite(metric),
                      "seconds": round(stepped - started, 3), "cpu_s": round(cpu, 3),
                      "export_s": round(exported - stepped, 3),
                      "valid_s": round(time.perf_counter() - exported, 3)})
        advance(1, loss=loss, **{f"valid {VALID_METRIC}": metric})
        if not math.isfinite(loss):
            raise ConfigError(f"training diverged at epoch {epoch} (loss {loss})",
                              hint="lower --lr, or raise --temperature")
        score = metric if math.isfinite(metric) else -math.inf  # NaN never wins, never blocks
        if not (validate and selects) or best is None or score > best_metric:
            best, best_metric, best_epoch, stale = scorer, score, epoch, 0
            if keep is not None:
                keep()
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    return best, {"epochs": len(curve), "best_epoch": best_epoch, "curve": curve}


def _valid_metric(scorer: Scorer, data: Data, seed: int) -> float:
    """NDCG@20 on the validation part (a seeded sample of users when there are many)."""
    return validation_metrics(scorer, data, (20,), seed)[VALID_METRIC]


def _finite(value: float) -> float | None:
    """Rounded for the report; None (JSON null) where there is no number (no valid part)."""
    return round(value, 5) if math.isfinite(value) else None


def _bpr(data: Data, content: Content | None, cfg: TrainConfig, device: Any) -> Any:
    from mmrec.recsys.baselines import BPRTrainer

    return BPRTrainer(data, cfg, device)


def _twotower(data: Data, content: Content | None, cfg: TrainConfig, device: Any) -> Any:
    from mmrec.recsys.twotower import TwoTowerTrainer

    if cfg.dp_epsilon is not None:
        from mmrec.recsys.private import PrivateTwoTowerTrainer

        return PrivateTwoTowerTrainer(data, content.matrix, cfg, device)
    return TwoTowerTrainer(data, content.matrix, cfg, device)


def _pop(data: Data, content: Content | None) -> Scorer:
    from mmrec.recsys.baselines import most_popular

    return most_popular(data)


def _itemknn(data: Data, content: Content | None) -> Scorer:
    from mmrec.recsys.baselines import item_knn

    return item_knn(data, content.matrix)


def _tuned(name: str) -> Any:
    def fit(data: Data, cfg: TrainConfig, progress: Progress) -> tuple[Scorer, dict[str, Any]]:
        from mmrec.recsys import baselines

        scorer, tuning = getattr(baselines, name)(data, cfg, progress)
        return scorer, {"tuning": tuning}

    return fit


CLOSED_FORM = {ModelKind.POP: _pop, ModelKind.ITEMKNN: _itemknn}  # no epochs, no device
# closed form, hyper-parameters chosen on validation (mmrec.recsys.tuning)
TUNED = {ModelKind.EASE: _tuned("ease"), ModelKind.IALS: _tuned("ials"),
         ModelKind.ITEMCF: _tuned("item_cf")}
TRAINERS = {ModelKind.BPR: _bpr, ModelKind.TWOTOWER: _twotower}  # epochs with early stopping


def fit(data: Data, content: Content | None, cfg: TrainConfig,
        progress: Progress, tune: ContentTuning | None = None) -> tuple[Scorer, dict[str, Any]]:
    """Train ``cfg.model`` on ``data``'s training part; ``device`` is in the returned info.
    ``tune``: the twotower also tunes the items' text encoder (``--tune text``); the kept
    epoch's encoder tensors are then the info's ``text_tensors``."""
    if cfg.model in CLOSED_FORM:
        return CLOSED_FORM[cfg.model](data, content), {}
    if cfg.model in TUNED:
        return TUNED[cfg.model](data, cfg, progress)
    from mmrec.runtime import seed_everything

    if cfg.model is ModelKind.BPR and dist.world().size > 1:
        raise ConfigError("--model bpr does not train data-parallel",
                          hint="run it without torchrun, or use --model twotower")
    device = dist.setup(cfg.device)  # under torchrun: joins the ranks (DDP in the trainer)
    seed_everything(cfg.seed)
    trainer = TRAINERS[cfg.model](data, content, cfg, device)
    tuning = None
    if tune is not None:
        from mmrec.recsys.content_tune import TunedContent

        tuning = TunedContent(content, tune, cfg.seed, device)
        tuning.attach(trainer, trainer.steps_per_epoch * cfg.epochs)
    scorer, info = _fit(trainer, data, cfg, progress, tuning.keep if tuning is not None else None)
    if cfg.model is ModelKind.TWOTOWER:  # its item-item term, chosen on validation
        from mmrec.recsys.twotower import item_item

        scorer, info["tuning"] = item_item(scorer, data, cfg, progress)
    if tuning is not None:  # the kept epoch's encoder tensors, saved with the model
        info["text_tuning"], info["text_tensors"] = tuning.info(), tuning.kept
    spent = trainer.spent() if hasattr(trainer, "spent") else None
    # Free the trainer (id tables, optimiser moments: 0.8 GB at 1M items) before the final
    # validation and the write, where train's memory peaked: its loss is a bound method
    # it holds, a cycle only a collection frees.
    del trainer
    gc.collect()
    return scorer, {**info, "device": str(device), "privacy": spent}


def _check_tune(tune: ContentTuning | None, cfg: TrainConfig, store: Any, aligner: Any) -> None:
    """Every reason ``--tune text`` cannot run, as one line, before any work."""
    if tune is None:
        return
    tune.check()
    if cfg.model is not ModelKind.TWOTOWER:
        raise ConfigError(f"--tune text trains the twotower's item text, not --model {cfg.model.value}")
    if cfg.dp_epsilon is not None:
        raise ConfigError("--tune text and --dp-epsilon exclude each other",
                          hint="DP-SGD accounts for the twotower's own parameters only")
    if aligner is not None or store is None:
        raise ConfigError("--tune text needs --store (the items' text vectors), not --aligner")
    if dist.world().size > 1:
        raise ConfigError("--tune text runs in one process, not under torchrun")


def train(
    store: str | Path | None = None,
    aligner: str | Path | None = None,
    interactions: str | Path | None = None,
    out: str | Path | None = None,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    key: str | Path | None = None,
    tune: ContentTuning | None = None,
) -> TrainReport:
    """Train a recommender and write it to ``out``; returns what was read, split and fitted.

    ``key``: a key file (created if absent, never inside ``out``): the model then holds
    user ids only as keyed hashes (see mmrec.privacy). ``tune``: also tune the items'
    text encoder's top layers on behaviour (twotower from a store; mmrec.recsys.content_tune).
    """
    from mmrec.privacy import anonymize, load_key, privacy_record
    from mmrec.recsys.model import save_model

    started = time.perf_counter()
    asked = config or TrainConfig()
    cfg = asked.resolved()  # checked before any work
    if interactions is None or out is None:
        raise ConfigError("train needs --interactions FILE and --out MODEL")
    check_out(Path(out), Kind.MODEL)
    _check_tune(tune, cfg, store, aligner)
    secret = load_key(key, out, create=True) if key is not None else None
    progress = progress if progress and dist.world().main else NullProgress()
    content = _content(store, aligner, cfg.model)
    found = read_interactions(interactions, content.ids if content else None, cfg.min_rating,
                              cfg.user_field, cfg.item_field, cfg.rating_field, cfg.timestamp_field)
    if secret is not None:  # before any id is indexed, logged or written
        found = anonymize(found, secret)
    if found.unknown_items:
        progress.log(f"skipped {found.unknown_items} interactions on items absent from the store")
    data = _data(content.ids if content else found.distinct_items(), found, cfg)
    cfg = asked.resolved(int((data.split.part == TRAIN).sum()))
    read_s = time.perf_counter() - started
    scorer, info = fit(data, content, cfg, progress, tune)
    fitted = time.perf_counter()
    cfg = dataclasses.replace(cfg, **info.get("tuning", {}).get("chosen", {}))  # recorded as fitted
    # the validation users training selected on (a seeded sample when there are many)
    valid = validation_metrics(scorer, data, (10, 20), cfg.seed) if (data.split.part == VALID).any() else {}
    valid = {k: round(v, 5) for k, v in valid.items() if k.split("@")[0] in ("recall", "ndcg", "hit")}
    scored = time.perf_counter()
    source = {"aligner": str(Path(aligner).resolve()) if aligner else None,
              "blocks": {k: list(v) for k, v in content.blocks.items()} if content else {}}
    report = TrainReport(
        out=str(out), model=cfg.model.value, split=cfg.split.value, items=data.n_items,
        users=data.n_users, interactions=data.split.counts(), read=found.summary(), valid=valid,
        epochs=info.get("epochs", 0), best_epoch=info.get("best_epoch", 0),
        device=info.get("device", "-"), curve=info.get("curve", []), privacy=info.get("privacy"),
        tuning=info.get("tuning", {}), text_tuning=info.get("text_tuning"),
    )
    curve = info.get("curve", [])
    report.timings = {"read": read_s, "steps": sum(c["seconds"] for c in curve),
                      "steps_cpu": sum(c["cpu_s"] for c in curve),
                      "export": sum(c["export_s"] for c in curve),
                      "validation": sum(c["valid_s"] for c in curve),
                      "fit": fitted - started - read_s, "final_valid": scored - fitted}
    report.seconds = time.perf_counter() - started
    extra = {"content": source, "interactions": str(Path(interactions).resolve()),
             "report": {k: v for k, v in report.as_dict().items() if k != "curve"},
             "privacy": {**(privacy_record(secret) if secret is not None else {"anonymized": False}),
                         "dp": report.privacy}}
    # rank 0 writes the model; the others wait until it is in place
    from mmrec.recsys.content_tune import WEIGHTS

    tensors = {WEIGHTS: info["text_tensors"]} if info.get("text_tensors") else None
    saving = time.perf_counter()
    dist.from_main(lambda: save_model(Path(out), cfg, content.store if content else None, scorer,
                                      data, extra, tensors))
    report.timings = {k: round(v, 3) for k, v in {**report.timings, "save": time.perf_counter() - saving}.items()}
    return report
