"""mmrec: multimodal embeddings and recommendations over text, images and audio.

The library works without the CLI: ``mmrec.encode(...)`` does what ``mmrec encode``
does. Heavy dependencies (torch, transformers, faiss, ...) load on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mmrec.encoding import EncodeReport


def encode(catalog: Any, out: Any, **options: Any) -> EncodeReport:
    """Embed every item of ``catalog`` into the store ``out``; see :func:`mmrec.encoding.encode`."""
    from mmrec.encoding import encode as _encode

    return _encode(catalog, out, **options)


__all__ = ["__version__", "encode"]
