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
    from mmrec.handle import AlignerHandle, ModelHandle
    from mmrec.progress import Progress
    from mmrec.query import Hit, Query
    from mmrec.recsys.train import TrainReport
    from mmrec.recsys.update import UpdateReport


def encode(catalog: Any, out: Any, **options: Any) -> EncodeReport:
    """Embed every item of ``catalog`` into the store ``out``; see :func:`mmrec.encoding.encode`."""
    from mmrec.encoding import encode as _encode

    return _encode(catalog, out, **options)


def train(interactions: Any, out: Any, **options: Any) -> TrainReport:
    """Fit a recommender and write its model directory; see :func:`mmrec.recsys.train.train`."""
    from mmrec.recsys.train import train as _train

    return _train(interactions=interactions, out=out, **options)


def update(model: Any, interactions: Any, **options: Any) -> UpdateReport:
    """Fold new interactions, users and items into a trained model without retraining;
    republished atomically (in place unless ``out=``). See :func:`mmrec.recsys.update.update`."""
    from mmrec.recsys.update import update as _update

    return _update(model, interactions, **options)


def recommend(path: Any, query: Query, store: Any = None, key: Any = None) -> list[Hit]:
    """Top-k for ``query`` from an aligner (search) or a trained model (recommendation);
    ``store``: where a model's store is now, if it moved (only ``explain`` reads it);
    ``key``: the key file of an anonymised model (``query.user`` is then hashed with it).

    One call opens a handle (see :func:`open`) for this query alone, its encoders on
    ``query.device``.
    """
    return open(path, store=store, device=query.device, key=key).ask(query)


def open(path: Any, store: Any = None, warm: bool = False, device: str = "auto",
         key: Any = None) -> AlignerHandle | ModelHandle:
    """A resident handle on an aligner or model directory: loaded once, queried many times.

    ``mmrec.open("aligner/").ask(Query(text="a barking dog"))`` answers what
    ``mmrec.recommend`` does, without reloading encoders, index and metadata per query;
    ``warm=True`` loads every query encoder at once instead of on first use.
    """
    from mmrec.handle import open as _open

    return _open(path, store=store, warm=warm, device=device, key=key)


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


__all__ = ["__version__", "align", "encode", "evaluate", "open", "recommend", "train", "update"]
