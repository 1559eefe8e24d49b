"""mmrec: multimodal embeddings and recommendations over text, images and audio.

The library works without the CLI: ``mmrec.encode(...)`` does what ``mmrec encode``
does. Heavy dependencies (torch, transformers, faiss, ...) load on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmrec.version import __version__

if TYPE_CHECKING:
    from mmrec.alignment.config import AlignConfig
    from mmrec.alignment.pipeline import AlignReport
    from mmrec.encoding import EncodeReport
    from mmrec.progress import Progress
    from mmrec.query import Hit, Query
    from mmrec.recsys.train import TrainReport


def encode(catalog: Any, out: Any, **options: Any) -> EncodeReport:
    """Embed every item of ``catalog`` into the store ``out``; see :func:`mmrec.encoding.encode`."""
    from mmrec.encoding import encode as _encode

    return _encode(catalog, out, **options)


def train(interactions: Any, out: Any, **options: Any) -> TrainReport:
    """Fit a recommender and write its model directory; see :func:`mmrec.recsys.train.train`."""
    from mmrec.recsys.train import train as _train

    return _train(interactions=interactions, out=out, **options)


def recommend(path: Any, query: Query, store: Any = None, key: Any = None) -> list[Hit]:
    """Top-k for ``query`` from an aligner (search) or a trained model (recommendation);
    ``store``: where a model's store is now, if it moved (only ``explain`` reads it);
    ``key``: the key file of an anonymised model (``query.user`` is then hashed with it)."""
    from mmrec.artifacts import Kind, kind_of

    if kind_of(path) is Kind.ALIGNER:
        from mmrec.alignment.search import recommend as search

        given = [name for name, v in (("--store", store), ("--key", key),
                                      ("--explore", query.explore)) if v is not None]
        if given:
            from mmrec.errors import ConfigError

            raise ConfigError(f"{given[0]} applies to a model directory, not an aligner")
        return search(path, query)
    from mmrec.recsys.recommend import recommend as run

    return run(path, query, store, key)


def evaluate(path: Any, what: str = "auto", **options: Any) -> dict[str, Any]:
    """Metrics of an aligner (cross-modal retrieval) or a model (recommendation)."""
    from mmrec.artifacts import Kind, kind_of

    kind = kind_of(path)
    if what == "replay":  # a model's policies over a time-ordered log (mmrec.recsys.replay)
        from mmrec.recsys.replay import evaluate_replay

        return evaluate_replay(path, **options)
    if what == "retrieval" or (what == "auto" and kind is Kind.ALIGNER):
        if kind is not Kind.ALIGNER:
            from mmrec.errors import ConfigError

            raise ConfigError(f"{path} is a trained model; retrieval evaluation needs an aligner")
        from mmrec.alignment.evaluate import retrieval

        return retrieval(path, **options)
    from mmrec.recsys.evaluate import evaluate as run

    return run(path, **options)


def align(store: Any, out: Any, config: AlignConfig | None = None,
          progress: Progress | None = None, **overrides: Any) -> AlignReport:
    """Fit projection heads on ``store`` and write the aligner ``out``.

    ``overrides`` are :class:`~mmrec.alignment.config.AlignConfig` fields, e.g.
    ``steps=0`` (zero-shot: the shipped heads and the image bridge as they are),
    ``pivot="shared"``, ``dim=256``, ``head="mlp"``, ``init="other-aligner/"``.
    See :func:`mmrec.alignment.pipeline.align`.
    """
    from mmrec.alignment.pipeline import align as _align

    return _align(store, out, config, progress, **overrides)


__all__ = ["__version__", "align", "encode", "evaluate", "recommend", "train"]
