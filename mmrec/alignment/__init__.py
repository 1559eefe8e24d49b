"""Cross-modal alignment: projection heads, contrastive training, fusion and search.

``mmrec.align(store, out, ...)`` (a plain function in :mod:`mmrec`) fits an aligner;
the steps live in :mod:`mmrec.alignment.pipeline`. Everything heavy (torch, faiss)
loads inside the functions.

- :func:`fused_vectors` - an aligner's item ids and unit fused vectors
- search with ``mmrec.recommend(aligner, Query(text=..., modality="image"))`` and
  measure with ``mmrec.evaluate(aligner)`` (modules ``search`` and ``evaluate``)
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mmrec.alignment.config import AlignConfig

if TYPE_CHECKING:
    import numpy as np


def fused_vectors(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Item ids and unit-norm fused item vectors ``(items, dim)`` of an aligner directory."""
    import numpy as np

    from mmrec.alignment.aligner import Aligner

    aligner = Aligner.open(path)
    return list(aligner.ids), np.asarray(aligner.fused(), dtype=np.float32)


__all__ = ["AlignConfig", "fused_vectors"]
