"""Item-item models over the training interactions: EASE and item-based kNN.

Both score ``score(u, i) = sum over the user's history h of W[h, i]`` with a dense
items x items weight matrix ``W``, so they refuse catalogs above MAX_ITEMS (the
matrix, its inverse for EASE and the faiss index each hold items^2 floats: 3.6 GB
apiece at 30k items).

- EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): ``W`` minimises
  ``||X - XW||^2 + lambda ||W||^2`` with a zero diagonal; closed form
  ``P = (X'X + lambda I)^-1``, ``W = -P / diag(P)``, diagonal zeroed.
- item-kNN (Sarwar et al. 2001; as tuned by Ferrari Dacrema et al. 2019): cosine
  similarity of the items' user columns, shrunk by ``shrink`` so items seen by few
  users do not look alike by chance, each item keeping its ``neighbours`` most
  similar items.
"""
from __future__ import annotations

import numpy as np

from mmrec.errors import ConfigError
from mmrec.recsys.data import Data
from mmrec.recsys.splits import TRAIN

MAX_ITEMS = 30_000
GRAM_CELLS = 1 << 25  # users x items per dense block of X when summing X'X (128 MB)
# Grids searched on validation NDCG@20; the first value is the pick without a validation part.
EASE_GRID = {"reg": (200.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2000.0)}
ITEMCF_GRID = {"neighbours": (100, 10, 20, 50, 200, 500), "shrink": (10.0, 0.0, 50.0, 100.0)}


def train_gram(data: Data) -> np.ndarray:
    """``X'X`` of the training part's (users, items) 0/1 matrix ``X`` without ever holding
    all of ``X``: summed over blocks of users of at most GRAM_CELLS cells, so memory is the
    Gram matrix's, whatever the number of users. Exact (sums of 0/1 products), refused
    above MAX_ITEMS items."""
    if data.n_items > MAX_ITEMS:
        raise ConfigError(f"item-item models hold a dense {data.n_items} x {data.n_items} matrix; "
                          f"catalogs above {MAX_ITEMS} items are refused",
                          hint="use --model ials or --model twotower on large catalogs")
    train = data.split.part == TRAIN
    order = np.argsort(data.users[train], kind="stable")
    users, items = data.users[train][order], data.items[train][order]
    step = max(1, GRAM_CELLS // max(data.n_items, 1))
    gram = np.zeros((data.n_items, data.n_items), dtype=np.float32)
    bounds = np.searchsorted(users, np.arange(0, data.n_users + step, step))
    for block, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if lo == hi:
            continue
        x = np.zeros((step, data.n_items), dtype=np.float32)
        x[users[lo:hi] - block * step, items[lo:hi]] = 1.0
        gram += x.T @ x
    return gram


def ease_weights(gram: np.ndarray, reg: float) -> np.ndarray:
    """EASE's closed form ``W`` from the item Gram matrix ``X'X`` (a transposed view of
    :func:`ease_columns`)."""
    return ease_columns(gram, reg).T


def ease_columns(gram: np.ndarray, reg: float) -> np.ndarray:
    """``W.T`` (C-ordered float32: row ``i`` is ``W[:, i]``, as EASEScorer keeps it),
    float64 for the inverse.

    Inverted in place (LAPACK getrf + getri on one float64 copy, which is Fortran-ordered
    as the transpose of a symmetric matrix) and scaled in place, so one items^2 float64
    buffer is held rather than numpy's four (copy, identity, inverse, scaled), with about
    half the arithmetic of ``np.linalg.inv``'s solve against the identity; the transpose
    of that Fortran-ordered ``W`` is C-ordered, so no further copy either."""
    from scipy.linalg import inv

    g = gram.astype(np.float64).T
    g[np.diag_indices_from(g)] += reg
    p = inv(g, overwrite_a=True, check_finite=False)
    p /= -np.diag(p)[None, :]
    np.fill_diagonal(p, 0.0)
    return p.T.astype(np.float32, order="C")


def cosine_weights(gram: np.ndarray, neighbours: int, shrink: float) -> np.ndarray:
    """Shrunk cosine between item columns, each item's column keeping its top ``neighbours``."""
    norms = np.sqrt(np.diag(gram))
    sim = gram / (norms[:, None] * norms[None, :] + shrink + 1e-9)
    np.fill_diagonal(sim, 0.0)
    if neighbours < sim.shape[0]:
        # per target item (column), zero everything below its neighbours-th best source
        drop = np.argpartition(-sim, neighbours, axis=0)[neighbours:]
        np.put_along_axis(sim, drop, 0.0, axis=0)
    return sim.astype(np.float32)
