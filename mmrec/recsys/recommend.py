"""``mmrec recommend MODEL``: top-K items for a known user, a new user's history, or items.

A known user is served with everything the model holds for them (all their
interactions form the history, and are excluded unless ``--include-seen``); a user
the model never saw is served from ``--history`` alone, given oldest first (the
two-tower user tower weighs the latest items apart). ``--explain`` splits each
score into the history items that drove it (and the user's own vector) and, for
models built on store content, into modalities, by removing each modality from the
item's content and measuring the score lost.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmrec.enums import ModelKind
from mmrec.errors import ConfigError, InputError
from mmrec.query import Hit, Query, pop_title
from mmrec.recsys.data import Content, model_content
from mmrec.recsys.model import Model, load_model
from mmrec.recsys.scoring import History

TOP_REASONS = 3  # history items named per explained hit


def _check(query: Query) -> None:
    if query.text or query.image or query.audio:
        raise ConfigError("a trained model recommends for --user, --history or --item; "
                          "text, image and audio queries need an aligner directory")
    if query.modality != "fused":
        raise ConfigError("--modality applies to aligners; a trained model has one item vector per item")
    given = [name for name, v in (("--user", query.user), ("--history", query.history),
                                  ("--item", query.items)) if v]
    if len(given) > 1:
        raise ConfigError(f"give one of --user, --history or --item, not {' and '.join(given)}")
    if not given:
        raise ConfigError("nothing to recommend for: give --user, --history ID,ID,... or --item",
                          hint="--history takes the item ids of a user the model never saw")


def _rows(model: Model, ids: list[str], option: str) -> np.ndarray:
    unknown = [i for i in ids if model.item_row(i) is None]
    if unknown:
        raise InputError(f"{option}: unknown item id(s) {', '.join(map(repr, unknown[:5]))}"
                         + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""),
                         hint="ids must be items of the store the model was trained on")
    return np.array([model.item_row(i) for i in dict.fromkeys(ids)], dtype=np.int64)


def _anchor(model: Model, query: Query) -> tuple[int, np.ndarray]:
    """``(user row or -1, history item rows)`` of the query."""
    if query.user is not None:
        row = model.user_row(query.user)
        if row is None:
            raise InputError(f"unknown user {query.user!r}: the model was trained on "
                             f"{model.data.n_users} users (e.g. {model.data.user_ids[0]!r})",
                             hint="for a new user pass --history ID,ID,...")
        return row, model.data.items[model.data.users == row]
    return -1, _rows(model, query.history or query.items, "--history" if query.history else "--item")


def _query_vector(model: Model, query: Query, user: int, history: np.ndarray) -> np.ndarray:
    scorer = model.scorer
    if query.items:  # item to item: the items' own mean vector
        return scorer.items[history].mean(axis=0, keepdims=True)
    return scorer.user_vectors(np.array([user]), History.of([history]))


def recommend(path: str | Path, query: Query) -> list[Hit]:
    """The top ``query.k`` items of the model at ``path`` for ``query``."""
    from mmrec.index import VectorIndex

    _check(query)
    model = load_model(path)
    store = model.store()
    user, history = _anchor(model, query)
    vector = _query_vector(model, query, user, history)
    seen = [model.data.item_ids[h] for h in history] if query.exclude_seen or query.items else []
    found = VectorIndex.load(Path(path)).search(vector, query.k, exclude=[seen])[0]
    metadata = store.items()
    rows = np.array([model.item_row(i) for i, _ in found], dtype=np.int64)
    why = _explanations(model, store, vector[0], user, history, rows, metadata) if query.explain else {}
    hits = []
    for (item_id, score), row in zip(found, rows, strict=True):
        meta = dict(metadata.get(item_id, {}))
        hits.append(Hit(id=item_id, score=score, title=pop_title(meta), metadata=meta,
                        explanation=why.get(int(row))))
    return hits


def _explanations(model: Model, store: Any, vector: np.ndarray, user: int, history: np.ndarray,
                  rows: np.ndarray, metadata: dict[str, dict[str, Any]]) -> dict[int, dict[str, str]]:
    scorer = model.scorer
    content = None
    if scorer.kind in (ModelKind.TWOTOWER, ModelKind.ITEMKNN) and len(rows):
        content = model_content(model.config, store, [model.data.item_ids[r] for r in rows])
    out = {}
    for n, row in enumerate(rows):
        why: dict[str, str] = {}
        if scorer.kind is ModelKind.POP:
            why["popularity"] = f"{int(scorer.counts[row])} training interactions"
        elif len(history):
            why.update(_history_reason(model, user, history, int(row), metadata))
        if content is not None:
            why["modalities"] = _modality_reason(model, content, n, int(row), vector)
        out[int(row)] = why
    return out


def _history_reason(model: Model, user: int, history: np.ndarray, row: int,
                    metadata: dict[str, dict[str, Any]]) -> dict[str, str]:
    own, parts = model.scorer.history_parts(user, history, row)
    best = np.argsort(-parts, kind="stable")[:TOP_REASONS]
    names = []
    for h in best:
        item_id = model.data.item_ids[history[h]]
        title = pop_title(dict(metadata.get(item_id, {}))) or item_id
        names.append(f"{title} ({item_id}) {parts[h]:+.3f}")
    label = "similar to" if model.scorer.kind is ModelKind.BPR else "history"
    why = {label: ", ".join(names)}
    if model.scorer.kind is ModelKind.TWOTOWER and user >= 0:
        why["user"] = f"{own:+.3f}"
    return why


def _modality_reason(model: Model, content: Content, n: int, row: int, vector: np.ndarray) -> str:
    """Score lost when each modality is removed from the item's content."""
    scorer = model.scorer
    base_row = content.matrix[n : n + 1]
    base = float(scorer.content_vectors(base_row, np.array([row]))[0] @ vector)
    parts = []
    for modality, (start, stop) in content.blocks.items():
        if not base_row[0, start:stop].any():
            continue  # the item has no such modality
        without = base_row.copy()
        without[0, start:stop] = 0.0
        lost = base - float(scorer.content_vectors(without, np.array([row]))[0] @ vector)
        parts.append(f"{modality} {lost:+.3f}")
    return ", ".join(parts) or "none"
