"""Contrastive losses: symmetric InfoNCE over every pair of modalities an item has.

A batch holds items with any mix of modalities. For each pair of modalities, the
items that have both form one InfoNCE problem (each row's positive is the same
item's other modality, the batch's other items are negatives); absent modalities
are masked out, never matched against zero vectors.
"""
from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def info_nce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between row-aligned unit vectors ``a[i] <-> b[i]``."""
    import torch
    from torch.nn.functional import cross_entropy

    logits = scale * a @ b.T
    target = torch.arange(len(a), device=a.device)
    return (cross_entropy(logits, target) + cross_entropy(logits.T, target)) / 2


def multimodal_info_nce(vectors: dict[str, torch.Tensor], present: dict[str, torch.Tensor],
                        scale: torch.Tensor) -> torch.Tensor | None:
    """Mean of :func:`info_nce` over modality pairs, weighted by how many items have both.

    ``vectors[m]`` is ``(batch, dim)``, ``present[m]`` a ``(batch,)`` bool mask. Returns
    None when no pair of modalities has two items in the batch (nothing to contrast).
    """
    import torch

    total, weight = None, 0
    for m1, m2 in combinations(sorted(vectors), 2):
        both = present[m1] & present[m2]
        count = int(both.sum())
        if count < 2:
            continue
        loss = info_nce(vectors[m1][both], vectors[m2][both], scale) * count
        total = loss if total is None else total + loss
        weight += count
    return None if total is None else total / torch.tensor(float(weight), device=total.device)


def has_pairs(present: dict[str, torch.Tensor]) -> bool:
    """Whether :func:`multimodal_info_nce` has anything to contrast for these masks."""
    return any(int((present[m1] & present[m2]).sum()) >= 2
               for m1, m2 in combinations(sorted(present), 2))
