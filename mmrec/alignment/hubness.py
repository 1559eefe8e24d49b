"""Hubness correction: a few gallery items are everybody's nearest neighbour; lower them.

CSLS (Conneau, Lample et al. 2018, "Word translation without parallel data") scores
``2 cos(q, g) - r(q) - r(g)`` where ``r(x)`` is the mean cosine of ``x`` to its ``k``
nearest neighbours on the other side. ``r(q)`` is the same for every item a query
ranks, so the ranking only needs the per-item term: ``cos(q, g) - w * r(g)``, with
``r(g)`` measured against a bank of training queries (the training items' vectors
of the other modalities). That term is one float per item, kept in the item index as
an extra column (the query side gets a 1 there), so every search path ranks by it.

A training item's own vectors are in the bank: its term leaves them out, as a held-out
item, which has none there, is measured. ``w`` is chosen on validation per modality
(0, no correction, is a candidate); ``k`` was chosen on a split of the training part.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

HUB_K = 20  # bank neighbours averaged (10-50 tried on the dev split: flat)
HUB_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
BANK_LIMIT = 20_000  # bank rows at most (a seeded sample beyond): bounds the cost per item
CHUNK = 1024


def hub_scores(gallery: np.ndarray, bank: np.ndarray, k: int = HUB_K,
               exclude: np.ndarray | None = None) -> np.ndarray:
    """``r(g)``: each gallery row's mean cosine to its ``k`` nearest ``bank`` rows.

    ``exclude``: a ``(gallery, j)`` int array, the bank rows of each gallery row's own
    item (its other modalities), padded with -1: those are left out.
    """
    import numpy as np

    out = np.zeros(len(gallery), dtype=np.float32)
    if not len(bank) or not len(gallery):
        return out
    k = min(k, len(bank))
    for lo in range(0, len(gallery), CHUNK):
        sims = np.asarray(gallery[lo:lo + CHUNK], dtype=np.float32) @ bank.T
        if exclude is not None:
            for column in np.asarray(exclude[lo:lo + CHUNK]).T:
                hit = column >= 0
                sims[np.flatnonzero(hit), column[hit]] = -np.inf
        top = np.partition(sims, len(bank) - k, axis=1)[:, len(bank) - k:]
        out[lo:lo + len(sims)] = np.where(np.isfinite(top), top, 0.0).mean(axis=1)
    return out

