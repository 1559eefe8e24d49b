"""One training step of align and of twotower, run by tests/test_distributed.py both in
one process and in each rank of a 2-process gloo group (torch.multiprocessing.spawn)."""
from __future__ import annotations

import os

import numpy as np
import torch

GLOBAL_BATCH = 11  # odd: the ranks' shards differ in size (6 and 5)


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def align_step(device):
    from mmrec.alignment.config import AlignConfig
    from mmrec.alignment.heads import HeadSet
    from mmrec.alignment.train import TrainData, _Loop

    rng, n = np.random.default_rng(0), 24
    dims = {"text": 8, "image": 6, "audio": 4}
    matrices = {m: _unit(rng, n, d) for m, d in dims.items()}
    masks = {"text": np.ones(n, bool), "image": np.ones(n, bool), "audio": np.arange(n) % 2 == 0}
    torch.manual_seed(0)
    heads = HeadSet(dims, 8, "linear", 16, "text")
    data = TrainData(matrices, masks, np.arange(n), np.arange(0))
    loop = _Loop(heads, data, AlignConfig(batch_size=GLOBAL_BATCH), device, np.arange(n))
    index = torch.as_tensor(rng.permutation(n)[:GLOBAL_BATCH])
    loss = loop.loss(index)
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy().copy() for k, p in heads.net.named_parameters()}


def twotower_step(device):
    from mmrec.recsys.config import TrainConfig
    from mmrec.recsys.data import Data
    from mmrec.recsys.splits import make_split
    from mmrec.recsys.twotower import TwoTowerTrainer
    from mmrec.runtime import seed_everything

    rng, n_users, n_items = np.random.default_rng(1), 12, 30
    users = np.repeat(np.arange(n_users), 6)
    items = rng.integers(0, n_items, len(users))
    times = np.tile(np.arange(6), n_users).astype(float)
    cfg = TrainConfig(batch_size=GLOBAL_BATCH, negatives=3, warmup=0).resolved()
    split = make_split(cfg.split, users, items, times, 0)
    data = Data([f"i{i}" for i in range(n_items)], [f"u{u}" for u in range(n_users)],
                users, items, times, split)
    seed_everything(0)
    trainer = TwoTowerTrainer(data, _unit(rng, n_items, 8), cfg, device)
    loss = trainer.batch_loss(rng.permutation(len(trainer.pairs))[:GLOBAL_BATCH])
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy().copy() for k, p in trainer.net.named_parameters()}


def both_steps(device):
    return {"align": align_step(device), "twotower": twotower_step(device)}


def rank_main(rank, world, port, out):
    """torch.multiprocessing.spawn's entry: join a gloo group as torchrun would."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from mmrec import distributed

    torch.set_num_threads(1)
    results = both_steps(distributed.setup("cpu"))
    flat = {f"{name}/{key}": grad for name, (_, grads) in results.items()
            for key, grad in grads.items()}
    flat.update({f"{name}/loss": np.float64(loss) for name, (loss, _) in results.items()})
    np.savez(os.path.join(out, f"rank{rank}.npz"), **flat)
