"""Baselines in the same harness as the two-tower model: MostPop, content ItemKNN, BPR-MF."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from mmrec.recsys.config import TrainConfig
from mmrec.recsys.data import Data
from mmrec.recsys.scoring import BPRScorer, ItemKNNScorer, PopScorer
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
