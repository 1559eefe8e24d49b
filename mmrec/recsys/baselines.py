"""Baselines in the same harness as the two-tower model: MostPop, content ItemKNN, BPR-MF,
and the strong interaction baselines EASE, iALS and item-kNN (tuned on validation)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from mmrec.progress import Progress
from mmrec.recsys.config import TrainConfig
from mmrec.recsys.data import Data
from mmrec.recsys.scoring import (
    BPRScorer,
    EASEScorer,
    IALSScorer,
    ItemCFScorer,
    ItemKNNScorer,
    PopScorer,
    Scorer,
)
from mmrec.recsys.splits import TRAIN
from mmrec.vectors import unit_rows

if TYPE_CHECKING:
    import torch


def most_popular(data: Data) -> PopScorer:
    """Every user gets the items with the most training interactions."""
    return PopScorer.of_counts(data.train_counts())


def item_knn(data: Data, content: np.ndarray) -> ItemKNNScorer:
    """Each item scores its summed content cosine to the user's history (no training)."""
    return ItemKNNScorer(unit_rows(np.asarray(content, dtype=np.float32)),
                         data.train_counts().astype(np.float32))


def ease(data: Data, cfg: TrainConfig, progress: Progress) -> tuple[Scorer, dict]:
    """EASE, its lambda (``reg``) chosen on validation NDCG@20."""
    from mmrec.recsys.itemitem import EASE_GRID, ease_columns, train_gram
    from mmrec.recsys.tuning import tune

    gram, counts = train_gram(data), data.train_counts().astype(np.float32)

    def fit(reg: float) -> Scorer:
        return EASEScorer(ease_columns(gram, reg), counts)

    return tune(data, cfg, EASE_GRID, fit, progress)


def item_cf(data: Data, cfg: TrainConfig, progress: Progress) -> tuple[Scorer, dict]:
    """Interaction item-kNN, neighbours and shrinkage chosen on validation NDCG@20."""
    from mmrec.recsys.itemitem import ITEMCF_GRID, cosine_weights, train_gram
    from mmrec.recsys.tuning import tune

    gram, counts = train_gram(data), data.train_counts().astype(np.float32)

    def fit(neighbours: int, shrink: float) -> Scorer:
        return ItemCFScorer(np.ascontiguousarray(cosine_weights(gram, neighbours, shrink).T), counts)

    return tune(data, cfg, ITEMCF_GRID, fit, progress)


def ials(data: Data, cfg: TrainConfig, progress: Progress) -> tuple[Scorer, dict]:
    """iALS, factors, regularisation and confidence chosen on validation NDCG@20."""
    from mmrec.recsys.ials import IALS_GRID, fit_ials, interactions
    from mmrec.recsys.tuning import tune

    r, counts = interactions(data), data.train_counts().astype(np.float32)

    def fit(factors: int, reg: float, alpha: float) -> Scorer:
        users, items = fit_ials(r, factors, reg, alpha, cfg.seed)
        return IALSScorer(items, counts, users, reg, alpha)

    return tune(data, cfg, IALS_GRID, fit, progress)


class BPRTrainer:
    """BPR-MF as RecBole implements it: user and item vectors (Xavier-normal init), one
    uniformly drawn non-positive item per training pair, ``-log sigmoid(x_ui - x_uj)``.
    """

    def __init__(self, data: Data, cfg: TrainConfig, device: torch.device) -> None:
        import torch
        from torch import nn

        self.data, self.cfg, self.device = data, cfg, device
        train = data.split.part == TRAIN
        self.pairs = np.stack([data.users[train], data.items[train]], axis=1)
        self.keys = np.unique(self.pairs[:, 0] * data.n_items + self.pairs[:, 1])
        self.user = nn.Embedding(data.n_users, cfg.dim).to(device)
        self.item = nn.Embedding(data.n_items, cfg.dim).to(device)
        nn.init.xavier_normal_(self.user.weight)
        nn.init.xavier_normal_(self.item.weight)
        params = [self.user.weight, self.item.weight]
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def negatives(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item per user that is not among the user's training items (rejection)."""
        neg = rng.integers(0, self.data.n_items, size=len(users))
        for _ in range(100):
            keys = users * self.data.n_items + neg
            pos = np.searchsorted(self.keys, keys)
            clash = (pos < len(self.keys)) & (self.keys[np.minimum(pos, len(self.keys) - 1)] == keys)
            if not clash.any():
                break
            neg[clash] = rng.integers(0, self.data.n_items, size=int(clash.sum()))
        return neg

    def epoch(self, rng: np.random.Generator) -> float:
        import torch
        import torch.nn.functional as F

        order = rng.permutation(len(self.pairs))
        steps = max(1, math.ceil(len(order) / self.cfg.batch_size))
        total = 0.0
        for step in range(steps):
            batch = self.pairs[order[step * self.cfg.batch_size : (step + 1) * self.cfg.batch_size]]
            u, i, j = (torch.from_numpy(a).to(self.device)
                       for a in (batch[:, 0], batch[:, 1], self.negatives(batch[:, 0], rng)))
            user = self.user(u)
            diff = (user * self.item(i)).sum(-1) - (user * self.item(j)).sum(-1)
            loss = -F.logsigmoid(diff).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item()
        return total / steps

    def export(self) -> BPRScorer:
        def arr(weight) -> np.ndarray:
            return weight.detach().float().cpu().numpy().copy()

        return BPRScorer(arr(self.item.weight), self.data.train_counts().astype(np.float32),
                         arr(self.user.weight))
