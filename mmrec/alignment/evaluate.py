"""``mmrec evaluate retrieval ALIGNER``: cross-modal retrieval on the held-out items.

For every ordered pair of modalities the aligner holds (``text->image``,
``image->text``, ``audio->text``, ...): Recall@1/5/10, the median rank of the right
item, how many queries and gallery items there were, and the chance level
``K / gallery`` of each Recall@K.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mmrec.alignment.aligner import Aligner
from mmrec.alignment.config import RECALL_KS
from mmrec.enums import RetrievalSplit, parse_enum
from mmrec.errors import ConfigError


def retrieval(path: str | Path, split: RetrievalSplit | str = RetrievalSplit.VAL,
              ks: tuple[int, ...] = RECALL_KS) -> dict[str, dict[str, Any]]:
    """``{"text->image": {"recall@1": ..., "median_rank": ..., "gallery": ...}, ...}``."""
    import numpy as np

    aligner = Aligner.open(path)
    split = parse_enum(RetrievalSplit, split, "split")
    if split is RetrievalSplit.VAL:
        held_out = set(aligner.split()["val"])
        if not held_out:
            raise ConfigError(f"aligner {aligner.path} has no held-out items (--val-split 0)",
                              hint="align again with --val-split 0.2, or evaluate split='all'")
        rows = np.array([i for i, item_id in enumerate(aligner.ids) if item_id in held_out])
    else:
        rows = np.arange(len(aligner.ids))
    from mmrec.alignment.retrieval import retrieval_metrics

    found = retrieval_metrics(aligner.all_projected(), rows, tuple(ks), hubs=aligner.hubs)
    if not found:
        raise ConfigError(f"aligner {aligner.path}: no pair of modalities shares an item in "
                          f"the {split.value} split, so there is nothing to retrieve")
    return found
