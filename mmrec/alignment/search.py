"""Search an aligner: a text, image or audio query (or item ids) against item vectors.

The query is encoded with the store's own encoders, projected by the aligner's heads
(images also through the bridge), fused when it has several parts, and searched in
the faiss index of the chosen item vectors (fused, or one modality's).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.alignment.aligner import Aligner
from mmrec.enums import Target, parse_enum
from mmrec.errors import ConfigError, InputError
from mmrec.query import Hit, Query, pop_title

if TYPE_CHECKING:
    import numpy as np


def recommend(path: str | Path, query: Query) -> list[Hit]:
    """Top ``query.k`` items of the aligner at ``path`` for ``query``."""
    aligner = Aligner.open(path)
    target = parse_enum(Target, query.modality, "--modality")
    if target is not Target.FUSED:
        aligner.require(target.value)
    if query.user is not None or query.history:
        raise ConfigError("an aligner searches by content or item; --user and --history "
                          "need a trained model", hint="train one with `mmrec train`")
    if query.k < 1:
        raise ConfigError(f"-k must be at least 1, got {query.k}")
    vector = query_vector(aligner, query)
    found = aligner.index(target).search(vector[None, :], query.k, exclude=[set(query.items)])[0]
    return [_hit(aligner, target, vector, item_id, score, query.explain) for item_id, score in found]


def query_vector(aligner: Aligner, query: Query) -> np.ndarray:
    """The unit query vector in the aligner's space: the mean of its parts, normalised."""
    import numpy as np

    from mmrec.vectors import unit_rows

    for item_id in query.items:
        aligner.row(item_id)  # an unknown id fails before any model loads
    parts = _content_parts(aligner, query)
    fused = aligner.fused()
    parts += [np.asarray(fused[aligner.row(i)], dtype=np.float32) for i in query.items]
    if not parts:
        raise ConfigError("nothing to search for: give --text, --image, --audio or --item")
    return unit_rows(np.mean(parts, axis=0))


def _content_parts(aligner: Aligner, query: Query) -> list[np.ndarray]:
    from mmrec.alignment.tune import load_query_encoder
    from mmrec.encoders.registry import create
    from mmrec.runtime import resolve_device

    sources = _sources(aligner, query)
    if not sources:
        return []
    encoders = {m: create(aligner.encoders[m]["encoder"], m) for m in sources}
    # decode every input before any model loads: a bad file fails in a moment
    inputs = {m: _decode(m, value, encoders[m]) for m, value in sources.items()}
    device = resolve_device(query.device)
    projector = aligner.projector(with_bridge="image" in inputs)
    parts = []
    for modality, value in inputs.items():
        load_query_encoder(aligner.path, encoders[modality], modality, device)
        unit, norms = encoders[modality].encode([value], batch_size=1, return_norms=True)
        parts.append(projector.project(modality, unit, norms)[0])
    return parts


def _sources(aligner: Aligner, query: Query) -> dict[str, Any]:
    """The query's text and file paths by modality, checked against the aligner."""
    sources: dict[str, Any] = {}
    if query.text is not None:
        if not query.text.strip():
            raise InputError("empty text query")
        aligner.require("text")
        sources["text"] = query.text.strip()
    for modality, path in (("image", query.image), ("audio", query.audio)):
        if path is None:
            continue
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{modality} query not found: {path}")
        aligner.require(modality)
        sources[modality] = path
    return sources


def _decode(modality: str, value: Any, encoder: Any) -> Any:
    from mmrec.catalog import load_audio, load_image

    try:
        if modality == "image":
            return load_image(value)
        if modality == "audio":
            return load_audio(value, encoder.sample_rate)
    except InputError as exc:
        raise InputError(f"{value}: {exc}") from None
    return value


def _hit(aligner: Aligner, target: Target, vector: np.ndarray, item_id: str, score: float,
         explain: bool) -> Hit:
    meta = dict(aligner.items.get(item_id, {}))
    title = pop_title(meta)
    per_modality = _modality_scores(aligner, vector, item_id)
    if target is Target.FUSED:
        matched = max(per_modality, key=per_modality.get) if per_modality else None
    else:
        matched = target.value
    explanation = {m: round(s, 4) for m, s in per_modality.items()} if explain else None
    return Hit(id=item_id, score=score, title=title,
               matched=matched, explanation=explanation, metadata=meta)


def _modality_scores(aligner: Aligner, vector: np.ndarray, item_id: str) -> dict[str, float]:
    """Cosine of the query with each of the item's projected modalities."""
    row = aligner.row(item_id)
    scores = {}
    for modality in aligner.modalities:
        matrix, mask = aligner.projected(modality)
        if mask[row]:
            scores[modality] = float(matrix[row] @ vector)
    return scores
