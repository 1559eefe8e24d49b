"""``mmrec update MODEL --interactions NEW``: fold new behaviour into a model without retraining.

What each model can take in without a new fit:

- interactions are appended to the model's own (as training), so every later
  ``recommend`` and ``evaluate`` serves a user from the extended history and never
  offers what they already had;
- new users get a row: ``twotower`` a zero id vector (the user tower serves them from
  their history, as it serves any user it never saw), ``bpr`` the mean of their
  history's item vectors (its fold-in for unseen users), the others need no user vector;
- new items (in the model's store or aligner, put there by ``mmrec encode``, but not
  in the model) get vectors from their content: ``twotower`` through its item tower
  with a zero id vector (exactly how it scores a cold item), ``itemknn`` their unit
  content vectors, ``pop`` their counts; ``bpr`` has no content path, so its new items
  and their interactions are skipped and reported;
- the item popularity counts are recounted, and the faiss index rebuilt;
- a ``twotower``'s item-item term keeps its fitted ``W`` (as the towers keep their
  weights): new interactions on the model's items enter a user's history, and with it
  the term, at once; new items get no ``W`` column and add nothing to it as history.

``steps`` fine-tunes a two-tower model for that many optimizer steps on the new
interactions only (see mmrec.recsys.finetune); it needs the model's content. The result is staged and published
through the artifact layer: in place when ``out`` is None, where a reader (``mmrec
serve`` too) sees the old model or the whole new one, never a mix. Interactions on
items the content does not have are counted and skipped, as ``train`` does.

:class:`FeedbackLog` is the library side of ``POST /feedback``: it appends events to a
journal and applies them in batches through :func:`update`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.artifacts import CONFIG, Artifact, Kind, check_out
from mmrec.atomic import write_json
from mmrec.catalog import Interactions, read_interactions
from mmrec.enums import ModelKind
from mmrec.errors import CatalogError, ConfigError, InputError, ModelError
from mmrec.progress import NullProgress, Progress
from mmrec.recsys.data import Content, Data, aligner_content, store_content
from mmrec.recsys.model import ITEMS, METADATA, SPLIT, STORE_MANIFEST, USERS, Model, load_model
from mmrec.recsys.scoring import BPRScorer, PopScorer, Scorer, aggregate
from mmrec.recsys.splits import TEST, TRAIN, VALID, save_split

UPDATABLE = (ModelKind.TWOTOWER, ModelKind.BPR, ModelKind.ITEMKNN, ModelKind.POP)


@dataclass
class UpdateReport:
    out: str
    model: str
    interactions: int  # new interactions folded in
    new_users: int
    new_items: int  # items added from content (or, for pop without a store, from NEW)
    users_updated: int  # users already in the model who have new interactions
    read: dict[str, Any]
    already_seen: int = 0  # interactions the model already held, skipped
    items_without_vectors: int = 0  # bpr: new items it cannot place without retraining
    steps: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "seconds": round(self.seconds, 3)}


@dataclass
class NewItems:
    """Items added to the model: their ids, vectors and metadata."""

    ids: list[str] = field(default_factory=list)
    vectors: np.ndarray | None = None
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    without_vectors: list[str] = field(default_factory=list)  # known to content, not placeable


def update(
    model: str | Path,
    interactions: str | Path,
    out: str | Path | None = None,
    store: str | Path | None = None,
    steps: int = 0,
    fields: dict[str, str] | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    key: str | Path | None = None,
) -> UpdateReport:
    """Fold ``interactions`` (new users, items, behaviour) into ``model``; publish at ``out``
    (default: in place). ``store``: where the model's store now lives, if it moved;
    ``fields``: the file's ``user``/``item``/``rating``/``timestamp`` columns when they are
    not the ones the model was trained with; ``key``: an anonymised model's key file, with
    which the new interactions' user ids are hashed before anything else sees them."""
    started = time.perf_counter()
    progress = progress or NullProgress()
    if steps < 0:
        raise ConfigError(f"--steps must be >= 0, got {steps}")
    from mmrec.privacy import anonymize, user_key

    loaded = load_model(model)
    secret = user_key(loaded.config, key, loaded.path)  # refuses a missing or wrong key
    _check_kind(loaded, steps)
    target = Path(out) if out is not None else loaded.path
    check_out(target, Kind.MODEL)
    content = _content(loaded, store, every=steps > 0)
    if content is not None:  # a model trained with --tune text: its tuned text vectors
        from mmrec.recsys.content_tune import tuned_content

        content = tuned_content(loaded.path, content)
    added = _content_items(loaded, content, progress)
    found = _read_new(loaded, interactions, added, fields)
    if secret is not None:
        found = anonymize(found, secret)
    data, counts = _extend(loaded, found, added.ids)
    if not counts["interactions"]:
        raise InputError(f"{interactions}: nothing new: the model already holds all "
                         f"{counts['already_seen']} of its interactions")
    scorer = _extend_scorer(loaded, data, added)
    if steps:
        scorer = _fine_tune(loaded, scorer, data, content, counts["rows"], steps, device)
    report = UpdateReport(str(target), loaded.kind, counts["interactions"], counts["new_users"],
                          len(added.ids), counts["users_updated"], found.summary(),
                          counts["already_seen"], len(added.without_vectors), steps)
    report.seconds = time.perf_counter() - started
    _publish(target, loaded, scorer, data, added, report)
    return report


def _check_kind(model: Model, steps: int) -> None:
    kind = ModelKind(model.kind)
    if kind not in UPDATABLE:
        raise ModelError(f"{model.path}: update cannot fold interactions into a {kind.value} "
                         "model without retraining", hint="retrain it with `mmrec train`")
    if steps and kind is not ModelKind.TWOTOWER:
        raise ConfigError(f"--steps fine-tunes a twotower model; {model.path} is {kind.value}")


def _fine_tune(model: Model, scorer: Scorer, data: Data, content: Content | None,
               new_rows: np.ndarray, steps: int, device: str) -> Scorer:
    from mmrec.recsys.finetune import fine_tune

    if content is None:
        raise ConfigError(f"--steps needs the content the model {model.path} was trained on",
                          hint="pass --store where the model's store now lives")
    row = {item: r for r, item in enumerate(content.ids)}
    matrix = content.matrix[[row[i] for i in data.item_ids]]
    return fine_tune(model.config["config"], scorer, data, matrix, new_rows, steps, device)


def _content_items(model: Model, content: Content | None, progress: Progress) -> NewItems:
    """Items of the model's content (store or aligner) that the model does not hold yet."""
    if content is None:
        return NewItems()
    ids = [i for i in content.ids if model.item_row(i) is None]
    if not ids:
        return NewItems()
    metadata = content.store.items()
    row = {item: r for r, item in enumerate(content.ids)}
    vectors = _item_vectors(model, content.matrix[[row[i] for i in ids]], len(ids))
    if vectors is None:
        progress.log(f"{len(ids)} new items in the content: a {model.kind} model cannot place "
                     "them without retraining; their interactions are skipped")
        return NewItems(without_vectors=ids)
    return NewItems(ids, vectors, {i: metadata.get(i, {}) for i in ids})


def _content(model: Model, store: str | Path | None, every: bool) -> Content | None:
    """The model's content as it is now: of every item (``every``, for fine-tuning) or of
    the store's items the model lacks; None where it has none or it is gone (then only
    the model's own items can take interactions)."""
    source = model.config.get("content", {})
    if model.config.get("store") is None:
        return None
    if store is None and not Path(model.config["store"]["path"]).exists():
        return None
    if source.get("aligner"):
        if not Path(source["aligner"]).is_dir():
            return None
        return aligner_content(source["aligner"], store)
    opened = model.store(store)
    if opened is None:
        return None
    if model.scorer.uses_content:
        blocks = {m.value for m in opened.modalities}
        if blocks != set(source.get("blocks", {})):
            raise ModelError(f"the store {opened.path} holds {', '.join(sorted(blocks))}; the model "
                             f"was trained on {', '.join(sorted(source.get('blocks', {})))}",
                             hint="update needs the store the model was trained on")
    # only the new rows: a small feedback batch need not copy a large store's matrix
    ids = list(opened.ids) if every else [i for i in opened.ids if model.item_row(i) is None]
    return store_content(opened, ids)


def _item_vectors(model: Model, content: np.ndarray, n_new: int) -> np.ndarray | None:
    """Vectors of new items from their content (zero id vectors: as the model scores cold items)."""
    scorer = model.scorer
    if ModelKind(model.kind) is ModelKind.POP:
        return np.zeros((n_new, 1), dtype=np.float32)  # recounted in _extend_scorer
    if ModelKind(model.kind) is ModelKind.TWOTOWER and scorer.adapter:
        expected = scorer.adapter[0][0].shape[1]
        if content.shape[1] != expected:
            raise ModelError(f"{model.path}: the content has {content.shape[1]} dimensions, "
                             f"the item tower takes {expected}")
    content = np.asarray(content, dtype=np.float32)
    vectors = scorer.cold_vectors(content) if ModelKind(model.kind) is ModelKind.TWOTOWER \
        else scorer.content_vectors(content, np.arange(n_new))
    return None if vectors is None else vectors.astype(np.float32)


def _read_new(model: Model, path: str | Path, added: NewItems,
              fields: dict[str, str] | None) -> Interactions:
    """NEW read as train reads interactions; items outside the model and its new content skipped."""
    cfg, fields = model.config.get("config", {}), fields or {}
    no_store = model.config.get("store") is None and ModelKind(model.kind) is ModelKind.POP
    known = None if no_store else [*model.data.item_ids, *added.ids]
    return read_interactions(path, known, cfg.get("min_rating"),
                             *(fields.get(r, cfg.get(f"{r}_field")) for r in
                               ("user", "item", "rating", "timestamp")))


def _extend(model: Model, found: Interactions, added: list[str]) -> tuple[Data, dict[str, Any]]:
    """The model's interactions plus the new ones (as training), in user then time order."""
    old, taken = model.data, set(added)
    # pop without a store takes any new item; the others only the content's (``added``)
    item_ids = [*old.item_ids, *added, *(i for i in found.distinct_items()
                                        if model.item_row(i) is None and i not in taken)]
    item_row = {i: r for r, i in enumerate(item_ids)}
    user_ids = [*old.user_ids, *(u for u in found.user_ids if model.user_row(u) is None)]
    user_row = {u: r for r, u in enumerate(user_ids)}
    users, items = found.user_rows(user_row.get), found.item_rows(item_row.get)
    n = len(item_ids)  # a pair as one key: user row * items + item row
    fresh = ~np.isin(users * n + items, old.users * n + old.items)
    users, items, times = users[fresh], items[fresh], found.timestamps[fresh]
    all_users = np.concatenate([old.users, users])
    all_times = np.concatenate([old.times, times])
    order = np.lexsort((all_times, all_users))  # stable: the old order breaks ties
    part = np.concatenate([old.split.part, np.full(len(users), TRAIN, dtype=np.int8)])
    split = dataclasses.replace(old.split, part=part[order])
    data = Data(item_ids, user_ids, all_users[order], np.concatenate([old.items, items])[order],
                all_times[order], split)
    new_rows = np.flatnonzero(order >= len(old.users))  # where the new interactions now are
    return data, {"interactions": int(fresh.sum()), "already_seen": int((~fresh).sum()),
                  "new_users": len(user_ids) - old.n_users, "rows": new_rows,
                  "users_updated": len({int(u) for u in users if u < old.n_users})}


def _extend_scorer(model: Model, data: Data, added: NewItems) -> Scorer:
    """The scorer with rows for the new users and items, and the counts recounted."""
    scorer, kind = model.scorer, ModelKind(model.kind)
    counts = data.train_counts().astype(np.float32)
    if kind is ModelKind.POP:
        return PopScorer.of_counts(counts)
    items = np.vstack([scorer.items, added.vectors]) if added.ids else scorer.items
    if kind is ModelKind.ITEMKNN:
        return dataclasses.replace(scorer, items=items, counts=counts)
    n_new_users = data.n_users - scorer.users.shape[0]
    if kind is ModelKind.BPR:
        return BPRScorer(items, counts, np.vstack([scorer.users, _folded(items, data, n_new_users)]))
    dim = scorer.dim
    return dataclasses.replace(
        scorer, items=items, counts=counts,
        users=np.vstack([scorer.users, np.zeros((n_new_users, dim), np.float32)]),
        item_id=np.vstack([scorer.item_id, np.zeros((len(added.ids), dim), np.float32)]))


def _folded(items: np.ndarray, data: Data, n_new: int) -> np.ndarray:
    """BPR's vector for a new user: the mean of the history's item vectors."""
    history = data.history(TRAIN, VALID, TEST)
    new = np.arange(data.n_users - n_new, data.n_users)
    return aggregate(items, history.take(new), mean=True)


def _publish(out: Path, model: Model, scorer: Scorer, data: Data, added: NewItems,
             report: UpdateReport) -> None:
    """Every file of the updated model into a staging sibling of ``out``, then one rename."""
    from mmrec.index import VectorIndex
    from mmrec.recsys.scoring import save_scorer
    from mmrec.store import write_items

    metadata = {**model.metadata(), **added.metadata}
    config = {**model.config, "updates": [*model.config.get("updates", []), report.as_dict()]}
    with Artifact.create(out, Kind.MODEL) as staging:
        write_json(staging / ITEMS, data.item_ids)
        write_items(staging / METADATA, [{**metadata.get(i, {}), "id": i} for i in data.item_ids])
        from mmrec.recsys.content_tune import WEIGHTS

        for kept in (STORE_MANIFEST, WEIGHTS):  # the tuned text encoder stays with the model
            if (model.path / kept).is_file():
                shutil.copy2(model.path / kept, staging / kept)
        write_json(staging / USERS, data.user_ids)
        save_split(staging / SPLIT, data.split, data.users, data.items, data.times)
        save_scorer(scorer, staging)
        VectorIndex.build(data.item_ids, scorer.items).save(staging)
        write_json(staging / CONFIG, config)


# -- feedback: the library side of `mmrec serve`'s POST /feedback ---------------------

JOURNAL, APPLIED = "events.jsonl", "applied.json"
EVENT_KEYS = {"user", "item", "rating", "timestamp"}


def parse_event(event: Any, received: float) -> dict[str, Any]:
    """One feedback event, checked: ``{"user", "item", "rating"?, "timestamp"?}``; a missing
    timestamp is the time it was received, so it orders after what the model holds."""
    from mmrec.catalog import _parse_time as parse_time  # the interactions reader's own

    if not isinstance(event, dict):
        raise InputError(f"a feedback event is a JSON object, got {type(event).__name__}")
    extra = set(event) - EVENT_KEYS
    if extra:
        raise InputError(f"unknown feedback field(s) {', '.join(sorted(extra))}; "
                         f"allowed: {', '.join(sorted(EVENT_KEYS))}")
    ids = {k: event.get(k) for k in ("user", "item")}
    for key, value in ids.items():
        if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
            raise InputError(f"feedback needs a {key} id (a non-empty string), got {value!r}")
    rating, stamp = event.get("rating"), event.get("timestamp")
    try:
        rating = None if rating is None else _finite(rating)
        stamp = received if stamp is None else parse_time(stamp)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"unreadable feedback rating {rating!r} or timestamp {stamp!r}") from None
    return {"user": str(ids["user"]), "item": str(ids["item"]), "rating": rating, "timestamp": stamp}


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(value)
    return float(value)


class FeedbackLog:
    """Feedback events for one model directory: appended to a journal, applied in batches.

    The journal (``events.jsonl`` in ``directory``, default the model's sibling
    ``MODEL.feedback/``) gets one JSON object a line, each append one ``write`` of whole
    lines on an ``O_APPEND`` descriptor, fsynced; ``applied.json`` records how far it
    has been folded into the model. :meth:`apply` runs :func:`update` in place once
    ``batch`` events are waiting or the oldest has waited ``seconds``; the model is
    republished atomically, so a server reopening it swaps the new one in.
    """

    def __init__(self, model: str | Path, directory: str | Path | None = None, batch: int = 100,
                 seconds: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        if batch < 1 or seconds < 0:
            raise ConfigError(f"feedback batches need batch >= 1 and seconds >= 0, got {batch}, {seconds}")
        self.model = Path(model)
        self.directory = Path(directory) if directory else self.model.with_name(f"{self.model.name}.feedback")
        self.batch, self.seconds, self.clock = batch, seconds, clock
        self._lock = threading.Lock()  # one apply at a time; appends stay whole lines anyway

    @property
    def journal(self) -> Path:
        return self.directory / JOURNAL

    def append(self, events: dict[str, Any] | Iterable[dict[str, Any]]) -> int:
        """Check every event (all or none are taken), then append them; returns how many."""
        now = self.clock()
        listed = [events] if isinstance(events, dict) else list(events)
        if not listed:
            raise InputError("no feedback events given")
        lines = [json.dumps({**parse_event(e, now), "received": now}, sort_keys=True) + "\n"
                 for e in listed]
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, "".join(lines).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return len(lines)

    def _offset(self) -> int:
        path = self.directory / APPLIED
        return int(json.loads(path.read_text())["offset"]) if path.is_file() else 0

    def _waiting(self) -> tuple[list[dict[str, Any]], int]:
        """The events not applied yet and the journal offset just past them (whole lines only)."""
        if not self.journal.is_file():
            return [], 0
        start = self._offset()
        with open(self.journal, "rb") as fh:
            fh.seek(start)
            blob = fh.read()
        whole = blob[: blob.rfind(b"\n") + 1]
        return [json.loads(line) for line in whole.splitlines() if line.strip()], start + len(whole)

    def pending(self) -> int:
        return len(self._waiting()[0])

    def due(self) -> bool:
        """A batch is full, or its oldest event has waited ``seconds``."""
        events, _ = self._waiting()
        if not events:
            return False
        oldest = min(e.get("received", e["timestamp"]) for e in events)
        return len(events) >= self.batch or self.clock() - oldest >= self.seconds

    def apply(self, force: bool = False) -> UpdateReport | None:
        """Fold the waiting events into the model when due (or ``force``); None if nothing ran.

        A batch with nothing usable (every item unknown, every pair already held) is
        passed over and counted in ``applied.json``, so it cannot block the ones after it.
        """
        with self._lock:
            events, end = self._waiting()
            if not events or not (force or self.due()):
                return None
            batch = self.directory / f".batch-{end}.jsonl"
            batch.write_text("".join(json.dumps({k: e.get(k) for k in EVENT_KEYS}) + "\n"
                                     for e in events), encoding="utf-8")
            try:
                report = update(self.model, batch, fields={k: k for k in EVENT_KEYS})
            except (CatalogError, InputError) as exc:
                self._advance(end, len(events), skipped=str(exc))
                return None
            finally:
                batch.unlink(missing_ok=True)
            self._advance(end, len(events))
            return report

    def _advance(self, offset: int, n: int, skipped: str | None = None) -> None:
        path = self.directory / APPLIED
        state = json.loads(path.read_text()) if path.is_file() else {"applied": 0, "skipped": 0}
        state["offset"] = offset
        state["skipped" if skipped else "applied"] += n
        if skipped:
            state["last_skip"] = skipped
        write_json(path, state)


__all__ = ["FeedbackLog", "UpdateReport", "parse_event", "update"]
