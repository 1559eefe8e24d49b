"""The two-tower recommender (torch), trained with sampled-softmax InfoNCE.

Item tower: the item's content vector through an adapter (an MLP, or one linear
layer), plus a learnable id vector; the sum is L2-normalised. Id vectors are dropped
at random in training (``id_dropout``) so the content path alone must score well:
that is what serves cold items, whose id vectors are zero.

User tower: a user id vector, plus a linear map of the mean of the user's history
item vectors, plus another of the mean of the latest ``recent`` of them, normalised.
In training the target item is taken out of its own history (the mean is recomputed
without it) and the recent window is the items just before the target in time, so
the tower learns to predict an item from the others and not to echo it; a new user
with a history needs no retraining.

Loss: softmax over the batch's items (in-batch negatives), optional uniform extra
negatives and hard negatives, with the logQ correction: each candidate's logit is
lowered by the log of how often it is expected among the candidates (in-batch by
training popularity, uniform by N/items), so popular items are not over-penalised
for being sampled often. A candidate that is another training positive of the row's
user is masked, not used as a negative. AdamW, linear warm-up, cosine decay.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from mmrec import distributed as dist
from mmrec.recsys.config import TrainConfig
from mmrec.recsys.data import Data
from mmrec.recsys.scoring import Linear, TwoTowerScorer
from mmrec.recsys.splits import TRAIN

if TYPE_CHECKING:
    import torch

HARD_POOL = 50  # hard negatives are drawn from each user's top this many non-positives
DENSE_MASK_LIMIT = 50_000_000  # users x items: up to this a bitmap of positives (<= 50 MB)


def _net(content_dim: int, n_items: int, n_users: int, cfg: TrainConfig):
    from torch import nn

    class TwoTowerNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers = ([nn.Linear(content_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.dim)]
                      if cfg.hidden else [nn.Linear(content_dim, cfg.dim)])
            self.adapter = nn.Sequential(*layers)
            # zero ids: training starts from content alone and ids learn the residual
            self.item_id = nn.Embedding(n_items, cfg.dim)
            self.user_id = nn.Embedding(n_users, cfg.dim)
            nn.init.zeros_(self.item_id.weight)
            nn.init.zeros_(self.user_id.weight)
            self.history = nn.Linear(cfg.dim, cfg.dim)
            self.recent = nn.Linear(cfg.dim, cfg.dim) if cfg.recent else None

    return TwoTowerNet()


def _row_dropout(weight: torch.Tensor, p: float, training: bool,
                 rows: slice | None = None, n: int | None = None) -> torch.Tensor:
    """Drop whole rows (an item's or user's id vector), rescaling the kept ones.

    ``rows`` of ``n``: ``weight`` is that part of an ``n``-row batch (one rank's shard);
    the draw is for all ``n`` rows so the random stream, and the rows' fate, are those
    of one process."""
    import torch

    if not training or p == 0:
        return weight
    n = weight.shape[0] if n is None else n
    keep = (torch.rand(n, 1, device=weight.device) >= p).to(weight.dtype)
    return weight * keep[rows or slice(None)] / (1 - p)


class TwoTowerTrainer:
    """One model, its optimiser and its training data on ``device``."""

    def __init__(self, data: Data, content: np.ndarray, cfg: TrainConfig, device: torch.device) -> None:
        import torch

        self.data, self.cfg, self.device = data, cfg, device
        train = data.split.part == TRAIN
        self.pairs = np.stack([data.users[train], data.items[train]], axis=1)
        counts = data.train_counts()
        self.known = torch.from_numpy(counts > 0).to(device)
        self.content = torch.from_numpy(np.array(content, dtype=np.float32)).to(device)  # a writable copy
        self.net = _net(content.shape[1], data.n_items, data.n_users, cfg).to(device)
        pop = counts / max(counts.sum(), 1)
        # log of each item's expected count among a batch's items; unseen items never appear
        self.log_q = torch.from_numpy(np.log(np.maximum(pop * cfg.batch_size, 1e-12))).float().to(device)
        self.bitmap = self.keys = None
        if data.n_users * data.n_items <= DENSE_MASK_LIMIT:  # a lookup beats a search per pair
            self.bitmap = torch.zeros(data.n_users, data.n_items, dtype=torch.bool, device=device)
            self.bitmap[torch.from_numpy(self.pairs[:, 0]), torch.from_numpy(self.pairs[:, 1])] = True
        else:
            keys = np.unique(self.pairs[:, 0] * data.n_items + self.pairs[:, 1])
            self.keys = torch.from_numpy(keys).to(device)
        self.adjacency = self._adjacency()
        self.hist_n = torch.from_numpy(np.bincount(self.pairs[:, 0], minlength=data.n_users)).float().to(device)
        self.windows = _windows(self.pairs[:, 0], self.pairs[:, 1], cfg.recent)
        self.steps_per_epoch = max(1, math.ceil(len(self.pairs) / cfg.batch_size))
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = self.steps_per_epoch * cfg.epochs
        # A fixed warm-up can outlast a small run (the demo: 1 step an epoch), leaving the
        # learning rate far below its peak throughout: cap it at a tenth of the run.
        warmup = min(cfg.warmup, total // 10)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: _lr_factor(s, warmup, total))
        self.hard: np.ndarray | None = None  # per user, item rows mined each epoch
        self.rng = np.random.default_rng(cfg.seed)
        # under torchrun: DDP; each rank runs the user tower on its shard of the batch
        self.batch_loss = dist.data_parallel(self.net, self._loss, device)

    def _adjacency(self) -> torch.Tensor:
        """Sparse (users, items) training matrix: one product gives every history sum."""
        import torch

        index = torch.from_numpy(self.pairs.T.copy())
        values = torch.ones(len(self.pairs))
        shape = (self.data.n_users, self.data.n_items)
        return torch.sparse_coo_tensor(index, values, shape, check_invariants=True).coalesce().to(self.device)

    def item_vectors(self, training: bool) -> torch.Tensor:
        import torch.nn.functional as F

        net = self.net
        ids = net.item_id.weight * self.known[:, None]
        return F.normalize(net.adapter(self.content) + _row_dropout(ids, self.cfg.id_dropout, training), dim=-1)

    def _users(self, users: torch.Tensor, items: torch.Tensor, windows: np.ndarray | None,
               vectors: torch.Tensor) -> torch.Tensor:
        """User vectors for training rows, each without its own target in the history;
        under torchrun, for this rank's shard of the rows, gathered from all ranks."""
        import torch
        import torch.nn.functional as F

        n, mine = len(users), dist.shard(len(users))
        users, items = users[mine], items[mine]
        sums = torch.sparse.mm(self.adjacency, vectors)[users] - vectors[items]
        mean = sums / torch.clamp(self.hist_n[users] - 1, min=1)[:, None]
        own = _row_dropout(self.net.user_id(users), self.cfg.id_dropout, True, mine, n)
        mixed = self.net.history(mean)
        if windows is not None:
            rows = torch.from_numpy(windows[mine]).to(self.device)
            present = (rows >= 0).float()[..., None]
            latest = (vectors[rows.clamp(min=0)] * present).sum(1) / present.sum(1).clamp(min=1)
            mixed = mixed + self.net.recent(latest)
        return dist.gather_rows(F.normalize(own + mixed, dim=-1), n)

    def _loss(self, picked: np.ndarray) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        batch = self.pairs[picked]
        users = torch.from_numpy(batch[:, 0]).to(self.device)
        items = torch.from_numpy(batch[:, 1]).to(self.device)
        vectors = self.item_vectors(training=True)
        windows = self.windows[picked] if self.windows is not None else None
        queries = self._users(users, items, windows, vectors)
        cand = items
        log_q = self.log_q[items]
        if self.cfg.negatives:
            extra = torch.randint(0, self.data.n_items, (self.cfg.negatives,), device=self.device)
            cand = torch.cat([cand, extra])
            log_q = torch.cat([log_q, torch.full_like(extra, math.log(self.cfg.negatives / self.data.n_items), dtype=torch.float)])
        logits = queries @ vectors[cand].T / self.cfg.temperature - log_q
        positive = self._positive(users, cand)
        rows = torch.arange(len(batch), device=self.device)
        positive[rows, rows] = False  # the row's own target stays the positive
        logits = logits.masked_fill(positive, float("-inf"))
        if self.hard is not None:
            hard = torch.from_numpy(self._draw_hard(batch[:, 0])).to(self.device)
            logits = torch.cat([logits, (queries[:, None, :] * vectors[hard]).sum(-1) / self.cfg.temperature], dim=1)
        return F.cross_entropy(logits, rows)

    def _positive(self, users: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """``(users, candidates)``: is the candidate a training positive of the row's user."""
        import torch

        if self.bitmap is not None:
            return self.bitmap[users[:, None], cand[None, :]]
        keys = users[:, None] * self.data.n_items + cand[None, :]
        found = torch.searchsorted(self.keys, keys).clamp(max=len(self.keys) - 1)
        return self.keys[found] == keys

    def _draw_hard(self, users: np.ndarray) -> np.ndarray:
        pool = self.hard[users]
        pick = self.rng.integers(0, pool.shape[1], size=(len(users), self.cfg.hard_negatives))
        return np.take_along_axis(pool, pick, axis=1)

    def _mine_hard(self) -> None:
        """Each user's top non-positive items under the current model, from a faiss index."""
        from mmrec.index import VectorIndex

        scorer = self.export()
        history = self.data.history(TRAIN)
        users = np.arange(self.data.n_users)
        index = VectorIndex.build([str(i) for i in range(self.data.n_items)], scorer.items)
        found = index.search(scorer.user_vectors(users, history), HARD_POOL,
                             exclude=[map(str, history[u]) for u in users])
        pool = np.zeros((len(users), HARD_POOL), dtype=np.int64)
        for u, hits in enumerate(found):
            rows = [int(i) for i, _ in hits] or [0]
            pool[u] = np.resize(rows, HARD_POOL)
        self.hard = pool

    def epoch(self, rng: np.random.Generator) -> float:
        import torch

        self.rng = rng
        if self.cfg.hard_negatives:
            self._mine_hard()
        self.net.train()
        order = rng.permutation(len(self.pairs))
        total = 0.0
        for step in range(self.steps_per_epoch):
            picked = order[step * self.cfg.batch_size : (step + 1) * self.cfg.batch_size]
            if len(picked) < 2:
                continue
            loss = self.batch_loss(picked)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
            self.optimizer.step()
            self.scheduler.step()
            total += loss.item()
        return total / self.steps_per_epoch

    def export(self) -> TwoTowerScorer:
        """The current weights as a numpy scorer (no dropout)."""
        import torch

        net = self.net
        with torch.no_grad():
            net.eval()
            items = self.item_vectors(training=False)
            layers = [m for m in net.adapter if isinstance(m, torch.nn.Linear)]

            def arr(t: torch.Tensor) -> np.ndarray:
                return t.detach().float().cpu().numpy().copy()

            return TwoTowerScorer(
                arr(items), self.data.train_counts().astype(np.float32), arr(net.user_id.weight),
                Linear(arr(net.history.weight.T), arr(net.history.bias)),
                arr(net.item_id.weight * self.known[:, None]),
                adapter=[(arr(m.weight), arr(m.bias)) for m in layers], recent=self.cfg.recent,
                recent_term=Linear(arr(net.recent.weight.T), arr(net.recent.bias)) if net.recent else None,
            )


def _windows(users: np.ndarray, items: np.ndarray, size: int) -> np.ndarray | None:
    """``(pairs, size)``: for each pair, the item rows of the same user's ``size``
    pairs just before it (pairs are grouped by user in time order), -1 where none."""
    if not size:
        return None
    index = np.arange(len(users))
    out = np.full((len(users), size), -1, dtype=np.int64)
    for back in range(1, size + 1):
        prev = index - back
        same = (prev >= 0) & (users[np.maximum(prev, 0)] == users)
        out[same, back - 1] = items[prev[same]]
    return out


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
