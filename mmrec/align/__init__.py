"""Cross-modal alignment: projection heads, contrastive training, fusion and search.

``mmrec.align(store, out, ...)`` fits an aligner (this package is callable: the same
as :func:`align`). Everything heavy (torch, faiss) loads inside the functions.

- :func:`align` - fit heads on a store, write an aligner directory
- :func:`fused_vectors` - an aligner's item ids and unit fused vectors
- search with ``mmrec.recommend(aligner, Query(text=..., modality="image"))`` and
  measure with ``mmrec.evaluate(aligner)`` (modules ``search`` and ``evaluate``)
"""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.align.config import AlignConfig, HeadKind, Pivot, Target

if TYPE_CHECKING:
    import numpy as np

    from mmrec.align.pipeline import AlignReport
    from mmrec.progress import Progress


def align(store: str | Path, out: str | Path, config: AlignConfig | None = None,
          progress: Progress | None = None, **overrides: Any) -> AlignReport:
    """Fit projection heads on ``store`` and write the aligner ``out``.

    ``overrides`` are :class:`AlignConfig` fields, e.g. ``steps=0`` (zero-shot: the
    shipped heads and the image bridge as they are), ``pivot="shared"``, ``dim=256``,
    ``head="mlp"``, ``init="other-aligner/"``, ``from_scratch=True``.
    """
    from mmrec.align.pipeline import align as run

    return run(store, out, config, progress, **overrides)


def fused_vectors(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Item ids and unit-norm fused item vectors ``(items, dim)`` of an aligner directory."""
    import numpy as np

    from mmrec.align.aligner import Aligner

    aligner = Aligner.open(path)
    return list(aligner.ids), np.asarray(aligner.fused(), dtype=np.float32)


class _CallableModule(types.ModuleType):
    """``mmrec.align`` is this package *and* the ``align`` function.

    Importing a submodule (``mmrec.align.search``) rebinds the attribute ``align`` of
    ``mmrec`` to this package, which would shadow a plain function of that name; a
    callable package keeps ``mmrec.align(store, out)`` working either way.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> AlignReport:
        return align(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["AlignConfig", "HeadKind", "Pivot", "Target", "align", "fused_vectors"]
