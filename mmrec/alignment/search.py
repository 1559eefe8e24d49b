"""The pieces of an aligner search that :class:`mmrec.handle.AlignerHandle` composes.

A query is encoded with the store's own encoders, projected by the aligner's heads
(images also through the bridge), fused when it has several parts, and searched in
the faiss index of the chosen item vectors (fused, or one modality's). The handle
keeps the encoders, indexes and vectors resident; this module checks and decodes a
query's inputs and describes each hit.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.alignment.aligner import Aligner
from mmrec.enums import Target
from mmrec.errors import InputError
from mmrec.query import Hit, Query, pop_title

if TYPE_CHECKING:
    import numpy as np


def query_sources(aligner: Aligner, query: Query) -> dict[str, Any]:
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


def decode_query(modality: str, value: Any, encoder: Any) -> Any:
    from mmrec.catalog import load_audio, load_image

    try:
        if modality == "image":
            return load_image(value)
        if modality == "audio":
            return load_audio(value, encoder.sample_rate)
    except InputError as exc:
        raise InputError(f"{value}: {exc}") from None
    return value


def describe_hit(aligner: Aligner, target: Target, vector: np.ndarray, item_id: str, score: float,
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
