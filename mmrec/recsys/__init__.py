"""Recommendation: interactions, splits, the two-tower model and its baselines.

``mmrec.recsys.train.train`` fits a model and writes its directory (layout in
``mmrec.recsys.model``); ``recommend`` and ``evaluate`` read it back. Heavy modules
(torch, faiss) load inside the functions that need them.
"""
from __future__ import annotations

from mmrec.recsys.config import TrainConfig

__all__ = ["TrainConfig"]
