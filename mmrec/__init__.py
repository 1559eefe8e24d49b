"""mmrec: multimodal embeddings and recommendations over text, images and audio.

The library works without the CLI: ``mmrec.encode(...)`` does what ``mmrec encode``
does. Heavy dependencies (torch, transformers, faiss, ...) load on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mmrec.encoding import EncodeReport
    from mmrec.handle import AlignerHandle, ModelHandle
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


def recommend(path: Any, query: Query) -> list[Hit]:
    """Top-k for ``query`` from an aligner (search) or a trained model (recommendation)."""
    from mmrec.artifacts import Kind, kind_of

    if kind_of(path) is Kind.ALIGNER:
        from mmrec.align.search import recommend as run
    else:
        from mmrec.recsys.recommend import recommend as run
    return run(path, query)


def open(path: Any) -> AlignerHandle | ModelHandle:
    """A resident handle on an aligner or model directory: loaded once, queried many times.

    ``mmrec.open("aligner/").ask(Query(text="a barking dog"))`` answers what
    ``mmrec.recommend`` does, without reloading encoders, index and metadata per query.
    """
    from mmrec.handle import open as _open

    return _open(path)


def evaluate(path: Any, what: str = "auto", **options: Any) -> dict[str, Any]:
    """Metrics of an aligner (cross-modal retrieval) or a model (recommendation)."""
    from mmrec.artifacts import Kind, kind_of

    kind = kind_of(path)
    if what == "retrieval" or (what == "auto" and kind is Kind.ALIGNER):
        if kind is not Kind.ALIGNER:
            from mmrec.errors import ConfigError

            raise ConfigError(f"{path} is a trained model; retrieval evaluation needs an aligner")
        from mmrec.align.evaluate import retrieval

        return retrieval(path, **options)
    from mmrec.recsys.evaluate import evaluate as run

    return run(path, **options)


# ``mmrec.align(store, out, ...)`` fits an aligner. It is the ``mmrec.align`` package
# itself, made callable: a function of that name here would be replaced by the package
# as soon as any ``mmrec.align.*`` module is imported. The package imports nothing heavy.
from mmrec import align  # noqa: E402

__all__ = ["__version__", "align", "encode", "evaluate", "open", "recommend", "train"]
