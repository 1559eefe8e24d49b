"""``mmrec update --steps N``: a few optimizer steps of a two-tower model on new interactions only.

The network is rebuilt from the saved scorer (adapter, id vectors, user-tower maps) and
trained with the same loss as ``train`` (mmrec.recsys.twotower), but each batch is drawn
from the new interactions alone, at a tenth of the training learning rate and without
warm-up, so a handful of steps adapts the towers to recent behaviour without forgetting
the rest. History sums and in-batch masks still cover every training interaction.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mmrec.errors import ConfigError
from mmrec.recsys.config import TrainConfig
from mmrec.recsys.data import Data
from mmrec.recsys.scoring import TwoTowerScorer
from mmrec.recsys.splits import TRAIN

LR_SHARE = 0.1  # of the training peak learning rate: small steps on a small sample


def fine_tune(config: dict[str, Any], scorer: TwoTowerScorer, data: Data, content: np.ndarray,
              new_rows: np.ndarray, steps: int, device: str) -> TwoTowerScorer:
    """``scorer`` after ``steps`` steps on the interactions at ``new_rows`` of ``data``."""
    import torch

    from mmrec.recsys.twotower import TwoTowerTrainer
    from mmrec.runtime import resolve_device, seed_everything

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in config.items() if k in names}).resolved()
    seed_everything(cfg.seed)
    # dense ids: the AdamW below updates every parameter (a few steps, no lazy updates)
    trainer = TwoTowerTrainer(data, content, cfg, resolve_device(device), sparse_ids=False)
    _load(trainer.net, scorer)
    # where the new interactions sit among the trainer's (training) pairs
    picks = np.searchsorted(np.flatnonzero(data.split.part == TRAIN), new_rows)
    if len(picks) < 2:
        raise ConfigError("--steps needs at least 2 new interactions to fine-tune on")
    optimizer = torch.optim.AdamW(trainer.net.parameters(), lr=cfg.lr * LR_SHARE,
                                  weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    trainer.net.train()
    for _ in range(steps):
        batch = rng.choice(picks, size=min(cfg.batch_size, len(picks)), replace=False)
        loss = trainer._loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainer.net.parameters(), 5.0)
        optimizer.step()
    # the towers moved; the item-item term is the model's own, as update keeps it
    return trainer.export().with_item_item(scorer.item_item_weights(), scorer.item_item_weight)


def _load(net: Any, scorer: TwoTowerScorer) -> None:
    """The saved weights into a freshly built network (torch layouts: weights (out, in))."""
    import torch

    def put(param: torch.nn.Parameter, value: np.ndarray) -> None:
        if tuple(param.shape) != value.shape:
            raise ConfigError(f"the saved model's weights ({value.shape}) do not fit its own "
                              f"configuration ({tuple(param.shape)}): it cannot be fine-tuned")
        with torch.no_grad():
            param.copy_(torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)))

    layers = [m for m in net.adapter if isinstance(m, torch.nn.Linear)]
    for layer, (weight, bias) in zip(layers, scorer.adapter, strict=True):
        put(layer.weight, weight)
        put(layer.bias, bias)
    put(net.item_id.weight, scorer.item_id)
    put(net.user_id.weight, scorer.users)
    put(net.history.weight, scorer.history.weight.T)
    put(net.history.bias, scorer.history.bias)
    if net.recent is not None and scorer.recent_term is not None:
        put(net.recent.weight, scorer.recent_term.weight.T)
        put(net.recent.bias, scorer.recent_term.bias)
