"""``mmrec serve``: resident handles behind a small HTTP API and an offline web page.

:func:`mmrec.serve.app.create_app` builds the FastAPI app over :class:`ServeConfig`;
:func:`mmrec.serve.app.serve` runs it under uvicorn. Nothing heavy loads on import.
"""
from __future__ import annotations

from mmrec.serve.config import ServeConfig

__all__ = ["ServeConfig"]
