"""The pieces of ``mmrec recommend MODEL`` that :class:`mmrec.handle.ModelHandle` composes:
top-K items for a known user, a new user's history, or items.

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

from mmrec.errors import ConfigError, UnknownIdError
from mmrec.query import Query, pop_title
from mmrec.recsys.data import Content, model_content
from mmrec.recsys.model import Model
from mmrec.recsys.scoring import History, Parts, bandit_context
from mmrec.store import Store

TOP_REASONS = 3  # history items named per explained hit


def check_query(query: Query) -> None:
    if query.feedback is not None and query.explore is None:
        raise ConfigError("--feedback updates an --explore policy: give --explore ucb|thompson|epsilon")
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
        raise UnknownIdError(f"{option}: unknown item id(s) {', '.join(map(repr, unknown[:5]))}"
                         + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""),
                         hint="ids must be items of the store the model was trained on")
    return np.array([model.item_row(i) for i in dict.fromkeys(ids)], dtype=np.int64)


def anchor(model: Model, query: Query, key: str | Path | None = None) -> tuple[int, np.ndarray]:
    """``(user row or -1, history item rows)`` of the query; ``key`` hashes the user's id
    for an anonymised model (see mmrec.privacy)."""
    from mmrec.privacy import map_user, user_key

    if query.user is None:  # a history needs no key; one given that does not fit is refused
        if key is not None:
            user_key(model.config, key, model.path)
        return -1, _rows(model, query.history or query.items, "--history" if query.history else "--item")
    user = map_user(model.config, key, model.path, query.user)
    row = model.user_row(user)
    if row is None:
        # an anonymised model's ids are hashes: naming one would help nobody
        example = "" if user != query.user else f" (e.g. {model.data.user_ids[0]!r})"
        raise UnknownIdError(f"unknown user {query.user!r}: the model was trained on "
                         f"{model.data.n_users} users{example}",
                         hint="for a new user pass --history ID,ID,...")
    return row, model.data.items[model.data.users == row]


def query_vector(model: Model, query: Query, user: int, history: np.ndarray) -> np.ndarray:
    scorer = model.scorer
    if query.items:  # item to item: the items' own mean vector, or the model's own query
        similar = getattr(scorer, "item_query", None)
        return similar(history) if similar else scorer.items[history].mean(axis=0, keepdims=True)
    return scorer.user_vectors(np.array([user]), History.of([history]))


def explore_candidates(model: Model, index: Any, query: Query, theta0: np.ndarray,
             seen: list[str]) -> list[tuple[str, float]]:
    """The model's top candidates re-ranked by a bandit updated with the user's feedback
    (see mmrec.recsys.explore); each hit keeps the model's score."""
    from mmrec.enums import ExploreKind, parse_enum
    from mmrec.recsys.explore import ExploreConfig, read_feedback, rerank

    kind = parse_enum(ExploreKind, query.explore, "--explore")
    if query.user is None:
        raise ConfigError("--explore re-ranks for a user: give --user (feedback is per user)")
    cfg = ExploreConfig()
    shown, rewards = ([], np.zeros(0)) if query.feedback is None else read_feedback(
        Path(query.feedback), model.data.item_ids, query.user, query.threshold)
    exclude = seen + shown if query.exclude_seen else seen
    found = index.search(theta0[None, :], max(query.k, cfg.candidates), exclude=[exclude])[0]
    theta, candidates = bandit_context(model.scorer, theta0, [model.item_row(i) for i, _ in found])
    _, feedback = bandit_context(model.scorer, theta0, [model.item_row(i) for i in shown])
    order = rerank(kind, cfg, theta, candidates, feedback, rewards, query.seed)
    return [found[n] for n in order[: query.k]]


NO_STORE = "the split by modality needs the model's store: pass --store STORE (it is not at {})"


def explanations(model: Model, store: Store | None, vector: np.ndarray, user: int,
                  history: np.ndarray, rows: np.ndarray,
                  metadata: dict[str, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per item row, its score split into numbers: ``history`` (the top history items,
    each ``{item, title, contribution}``, or ``similar`` with a ``similarity`` for models
    whose score has no history term), ``user``, ``popularity`` and ``modalities``
    (``{modality: score lost without it}``), each key where it applies."""
    scorer = model.scorer
    content, note = None, None
    if scorer.uses_content and len(rows) and not _fused(model):
        if store is None:
            note = NO_STORE.format(model.config["store"]["path"])
        else:
            content = model_content(model.config, store, [model.data.item_ids[r] for r in rows])
    out = {}
    for n, row in enumerate(rows):
        why = _score_parts(model, scorer.explain(user, history, int(row)), history, metadata)
        if content is not None:
            why["modalities"] = _modality_parts(model, content, n, int(row), vector)
        if note:
            why["note"] = note
        out[int(row)] = why
    return out


def _fused(model: Model) -> bool:
    """Trained on an aligner's fused vectors: no modality to take away."""
    return bool(model.config.get("content", {}).get("aligner"))


def _score_parts(model: Model, parts: Parts, history: np.ndarray,
                 metadata: dict[str, dict[str, Any]]) -> dict[str, Any]:
    why: dict[str, Any] = {}
    if parts.popularity is not None:
        why["popularity"] = parts.popularity
    if parts.history is not None and len(history):
        field = "similarity" if parts.similar else "contribution"
        best = np.argsort(-parts.history, kind="stable")[:TOP_REASONS]
        why["similar" if parts.similar else "history"] = [
            {**_named(model.data.item_ids[history[h]], metadata),
             field: round(float(parts.history[h]), 6)} for h in best]
    if parts.has_user:
        why["user"] = None if parts.user is None else round(parts.user, 6)
    return why


def _named(item_id: str, metadata: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"item": item_id, "title": pop_title(dict(metadata.get(item_id, {})))}


def _modality_parts(model: Model, content: Content, n: int, row: int,
                    vector: np.ndarray) -> dict[str, float]:
    """Score lost when each modality is removed from the item's content."""
    scorer = model.scorer
    base_row = content.matrix[n : n + 1]
    base = float(scorer.content_vectors(base_row, np.array([row]))[0] @ vector)
    parts = {}
    for modality, (start, stop) in content.blocks.items():
        if not base_row[0, start:stop].any():
            continue  # the item has no such modality
        without = base_row.copy()
        without[0, start:stop] = 0.0
        lost = base - float(scorer.content_vectors(without, np.array([row]))[0] @ vector)
        parts[modality] = round(lost, 6)
    return parts
