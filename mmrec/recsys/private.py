"""The two-tower trained with DP-SGD (opacus): user-level differential privacy.

Why not the ordinary two-tower loss: DP-SGD clips each *example's* gradient and adds
noise scaled to that bound, which protects an example only if it influences nothing
but its own gradient. The in-batch InfoNCE breaks that twice: every row's positive is
a negative of every other row (one interaction moves the whole batch's gradient),
and the user tower averages the user's other interactions (one interaction enters
all of that user's examples). The logQ correction and the masks also read
training-wide statistics (item popularity, every user's positives).

So here one *example is one user*, sampled with Poisson sampling over the users who
have training interactions, and everything a user's gradient depends on is that
user's own data plus data-independent randomness:

- targets: up to ``DP_TARGETS`` of the user's training items; history: up to
  ``DP_HISTORY`` of the user's other training items (the mean the user tower
  takes), recent: the latest ``recent`` of those;
- negatives: ``negatives`` (default ``DP_NEGATIVES``) items drawn uniformly from the
  catalog for this user alone, the user's own positives masked; uniform sampling
  needs no logQ correction (it is a constant);
- item id vectors for every item (the non-private trainer zeroes those of items
  never trained on, a data-dependent mask).

The loss of a user is the mean softmax cross-entropy of their targets against their
negatives; opacus clips each user's gradient to ``dp_max_grad_norm`` and the
accountant (PRV) sets the noise for (ε, δ) over the run's epochs. A user is thereby
protected as a whole, a stronger unit than one interaction. The released weights
are the last epoch's: picking the best epoch on validation interactions would be a
non-private choice. What ε covers: the towers' weights. The model directory also
keeps the interactions (for evaluation and seen-item exclusion) and the training
popularity counts, which are not private; combine with ``--anonymize`` and keep the
directory as private as the interactions file.

Cost: opacus keeps one gradient per user for every parameter, the two id tables
included: about ``batch x (items + users) x dim`` floats a step (ml-100k, batch 256,
64-d: 170 MB), so a large catalog wants a smaller ``--batch-size`` or a GPU.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mmrec.errors import ConfigError
from mmrec.recsys.config import TrainConfig
from mmrec.recsys.data import Data
from mmrec.recsys.twotower import TwoTowerTrainer, _lr_factor

if TYPE_CHECKING:
    import torch

DP_TARGETS = 8
DP_HISTORY = 50
DP_NEGATIVES = 100
ACCOUNTANT = "prv"


def _user_loss_module(net: Any, content: torch.Tensor, cfg: TrainConfig):
    """``forward(batch) -> (users,) loss``: every parameter-holding layer sees the users
    as its first dimension, so opacus computes one gradient per user."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class UserLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("content", content, persistent=False)

        def items(self, rows: torch.Tensor) -> torch.Tensor:
            ids = self.net.item_id(rows)
            if self.training and cfg.id_dropout:  # drop whole id vectors, as the plain trainer does
                keep = (torch.rand(*rows.shape, 1, device=rows.device) >= cfg.id_dropout).float()
                ids = ids * keep / (1 - cfg.id_dropout)
            return F.normalize(self.net.adapter(self.content[rows]) + ids, dim=-1)

        def forward(self, users, rows, masks, sizes):
            vecs = self.items(rows)  # one call: targets | negatives | history | recent
            pos, neg, hist, recent = torch.split(vecs, sizes, dim=1)
            t_mask, n_mask, h_mask, r_mask = torch.split(masks, sizes, dim=1)
            query = self.net.user_id(users) + self.net.history(_mean(hist, h_mask))
            if self.net.recent is not None:
                query = query + self.net.recent(_mean(recent, r_mask))
            query = F.normalize(query, dim=-1)[:, None, :]
            pos_logit = (query * pos).sum(-1) / cfg.temperature
            neg_logit = ((query * neg).sum(-1) / cfg.temperature).masked_fill(n_mask < 0.5, float("-inf"))
            log_z = torch.logaddexp(pos_logit, torch.logsumexp(neg_logit, dim=1, keepdim=True))
            per_target = (log_z - pos_logit) * t_mask
            return per_target.sum(1) / t_mask.sum(1).clamp(min=1)

    return UserLoss()


def _make_private(module: Any, optimizer: Any, loader: Any, cfg: TrainConfig, delta: float,
                  generator: Any) -> tuple[Any, ...]:
    """opacus' engine, and the module, optimizer and Poisson loader it made private."""
    import warnings

    from opacus import PrivacyEngine

    with warnings.catch_warnings():
        # secure_mode (a cryptographic RNG) is off: say so in the docs, not on every run
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")  # PRV's RDP bracket
        engine = PrivacyEngine(accountant=ACCOUNTANT)
        made = engine.make_private_with_epsilon(
            module=module, optimizer=optimizer, data_loader=loader, target_epsilon=cfg.dp_epsilon,
            target_delta=delta, epochs=cfg.epochs, max_grad_norm=cfg.dp_max_grad_norm,
            noise_generator=generator)
    return (engine, *made)


def _mean(vecs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (vecs * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)


class PrivateTwoTowerTrainer(TwoTowerTrainer):
    """:class:`TwoTowerTrainer`'s model and export, trained by DP-SGD over users."""

    selects_epoch = False  # the last epoch is released: choosing one would read validation data
    sparse_ids = False  # opacus computes per-sample gradients of dense tables

    def __init__(self, data: Data, content: np.ndarray, cfg: TrainConfig, device: torch.device) -> None:
        import torch

        super().__init__(data, content, cfg, device)
        self.known = torch.ones_like(self.known)  # every item's id vector, no data-dependent mask
        users, items = self.pairs[:, 0], self.pairs[:, 1]  # grouped by user, in time order
        self.trained_users = np.unique(users)
        self.starts = np.searchsorted(users, self.trained_users)
        self.stops = np.searchsorted(users, self.trained_users, side="right")
        self.items_sorted = items
        self.n_neg = cfg.negatives or DP_NEGATIVES
        # the whole content on the device: DP-SGD's per-user gradients are for small catalogs
        self.module = _user_loss_module(self.net, torch.as_tensor(self.content, device=device), cfg)
        generator = torch.Generator().manual_seed(cfg.seed)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.arange(len(self.trained_users))),
            batch_size=min(cfg.batch_size, len(self.trained_users)), generator=generator)
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.engine, self.module, self.optimizer, self.loader = _make_private(
            self.module, optimizer, loader, cfg, self.delta, generator)
        total = len(self.loader) * cfg.epochs
        warmup = min(cfg.warmup, total // 10)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: _lr_factor(s, warmup, total))

    @property
    def delta(self) -> float:
        """``dp_delta``, or by default well below 1/users (the usual requirement)."""
        n = len(np.unique(self.pairs[:, 0]))
        delta = self.cfg.dp_delta if self.cfg.dp_delta is not None else min(1e-5, 0.1 / n)
        if delta >= 1 / n:
            raise ConfigError(f"--dp-delta {delta:g} is not below 1/users (1/{n}): "
                              "it would allow leaking a user outright", hint="leave it unset")
        return delta

    def _batch(self, picked: np.ndarray) -> tuple[Any, ...]:
        """Rows (items) and masks, per user: targets | negatives | history | recent."""
        import torch

        width = [DP_TARGETS, self.n_neg, DP_HISTORY, max(self.cfg.recent, 1)]
        rows = np.zeros((len(picked), sum(width)), dtype=np.int64)
        masks = np.zeros(rows.shape, dtype=np.float32)
        for n, u in enumerate(picked):
            own = self.items_sorted[self.starts[u] : self.stops[u]]
            rows[n], masks[n] = _user_rows(own, width, self.data.n_items, self.rng)
        users = torch.from_numpy(self.trained_users[picked]).to(self.device)
        return (users, torch.from_numpy(rows).to(self.device),
                torch.from_numpy(masks).to(self.device), width)

    def epoch(self, rng: np.random.Generator) -> float:
        import warnings

        self.rng = rng
        self.module.train()
        total, steps = 0.0, 0
        for (picked,) in self.loader:
            if not len(picked):  # Poisson sampling can draw nobody; nothing to learn from
                continue
            loss = self.module(*self._batch(picked.numpy())).mean()
            self.optimizer.zero_grad(set_to_none=True)
            with warnings.catch_warnings():
                # the ids are integer inputs, so no input needs a gradient: expected here
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            total, steps = total + loss.item(), steps + 1
        return total / max(steps, 1)

    def spent(self) -> dict[str, Any]:
        """The privacy actually spent so far, for the report and the config."""
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
            epsilon = float(self.engine.get_epsilon(self.delta))
        return {"epsilon": round(epsilon, 4), "delta": self.delta,
                "unit": "user", "accountant": ACCOUNTANT,
                "noise_multiplier": round(float(self.optimizer.noise_multiplier), 4),
                "max_grad_norm": self.cfg.dp_max_grad_norm,
                "sample_rate": round(1 / len(self.loader), 5),
                "steps": sum(steps for _, _, steps in self.engine.accountant.history)}


def _user_rows(own: np.ndarray, width: list[int], n_items: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One user's item rows and masks (1 = used), from the user's items ``own`` alone."""
    n_t = min(width[0], max(1, len(own) - 1))  # keep at least one item for the history
    chosen = np.sort(rng.choice(len(own), size=n_t, replace=False))
    targets, rest = own[chosen], np.delete(own, chosen)
    history = rest[np.sort(rng.choice(len(rest), size=min(width[2], len(rest)), replace=False))]
    recent = rest[-width[3]:]
    negatives = rng.integers(0, n_items, size=width[1])
    parts = [(targets, np.ones(len(targets))), (negatives, ~np.isin(negatives, own)),
             (history, np.ones(len(history))), (recent, np.ones(len(recent)))]
    rows, masks = [], []
    for (values, mask), size in zip(parts, width, strict=True):
        rows.append(np.resize(values, size) if len(values) else np.zeros(size, np.int64))
        masks.append(np.concatenate([mask, np.zeros(size - len(values))]).astype(np.float32))
    return np.concatenate(rows), np.concatenate(masks)
