"""Beyond one process: encode throughput on Ray, step time under torchrun.

- **encode**: N demo texts (a running number each, so none hash alike) embedded by the
  offline default text encoder (MiniLM-L6) with ``mmrec.encode()``: the local engine,
  then ``--engine ray`` with 1 and 2 workers on a local cluster started beforehand
  (so the cluster's start is not counted; each run's actor start and model load are).
- **steps**: one align step (text pivot, 1280-d image head, the real encoders' sizes)
  and one twotower step on random data, timed under ``torchrun --nproc_per_node 1``
  and ``2`` (gloo, CPU) on the same global batch; rank 0 prints ms a step.

Run: ``python bench/distributed.py [--items 512] [--batch 1024] [--steps 20]``.
Ratios are printed against the one-process row of each part.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"


def text_catalog(root: Path, n: int) -> Path:
    base = [json.loads(line) for line in (DEMO / "catalog.jsonl").read_text().splitlines()]
    rows = [{"id": f"t{i}", "title": f"{base[i % len(base)]['title']} number {i}",
             "description": base[i % len(base)].get("description", "")} for i in range(n)]
    path = root / "catalog.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def bench_encode(n: int) -> list[tuple[str, float]]:
    import logging

    import ray

    import mmrec

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        catalog = text_catalog(Path(tmp), n)
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
        try:
            for label, options in [("local (1 process)", {}),
                                   ("ray, 1 worker", {"engine": "ray", "workers": 1}),
                                   ("ray, 2 workers", {"engine": "ray", "workers": 2})]:
                started = time.perf_counter()
                mmrec.encode(catalog, Path(tmp) / label.replace(" ", "_"), modalities=["text"],
                             device="cpu", **options)
                out.append((label, n / (time.perf_counter() - started)))
        finally:
            ray.shutdown()
    return out


def step_worker(batch: int, steps: int) -> None:
    """Under torchrun: time align and twotower steps on a fixed global batch."""
    import numpy as np
    import torch

    from mmrec import distributed

    device = distributed.setup("cpu")
    torch.set_num_threads(1)
    times = {"align": _time(_align_loop(batch, device), steps),
             "twotower": _time(_twotower(batch, device), steps)}
    if distributed.is_main():
        print(json.dumps({k: float(np.median(v)) * 1000 for k, v in times.items()}))


def _time(step, steps: int) -> list[float]:
    from mmrec import distributed

    out = []
    for i in range(steps + 2):  # two warm-up steps
        distributed.barrier()
        started = time.perf_counter()
        step()
        if i >= 2:
            out.append(time.perf_counter() - started)
    return out


def _align_loop(batch: int, device):
    import numpy as np
    import torch

    from mmrec.alignment.config import AlignConfig
    from mmrec.alignment.heads import HeadSet
    from mmrec.alignment.train import TrainData, _Loop, _step

    rng, n = np.random.default_rng(0), 4 * batch
    dims = {"text": 384, "image": 1280}
    matrices = {m: rng.standard_normal((n, d)).astype(np.float32) for m, d in dims.items()}
    masks = {m: np.ones(n, bool) for m in dims}
    torch.manual_seed(0)
    heads = HeadSet(dims, 384, "linear", 16, "text")
    loop = _Loop(heads, TrainData(matrices, masks, np.arange(n), np.arange(0)),
                 AlignConfig(batch_size=batch), device, np.arange(n))
    return lambda: _step(heads, loop.optimizer, loop.loss, loop.present, next(loop.batches),
                         device)


def _twotower(batch: int, device):
    import numpy as np
    import torch

    from mmrec.recsys.config import TrainConfig
    from mmrec.recsys.data import Data
    from mmrec.recsys.splits import make_split
    from mmrec.recsys.twotower import TwoTowerTrainer
    from mmrec.runtime import seed_everything

    rng, n_users, n_items = np.random.default_rng(1), 2000, 5000
    users = np.repeat(np.arange(n_users), 20)
    items, times = rng.integers(0, n_items, len(users)), np.tile(np.arange(20.0), n_users)
    cfg = TrainConfig(batch_size=batch, warmup=0).resolved()
    data = Data([f"i{i}" for i in range(n_items)], [f"u{u}" for u in range(n_users)],
                users, items, times, make_split(cfg.split, users, items, times, 0))
    seed_everything(0)
    content = rng.standard_normal((n_items, 384)).astype(np.float32)
    trainer = TwoTowerTrainer(data, content, cfg, device)

    def step() -> None:
        loss = trainer.batch_loss(rng.permutation(len(trainer.pairs))[:batch])
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()

    torch.manual_seed(0)
    return step


def bench_steps(batch: int, steps: int) -> dict[int, dict[str, float]]:
    out = {}
    for procs in (1, 2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(procs), __file__, "--step-worker",
               "--batch", str(batch), "--steps", str(steps)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[procs] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--step-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-encode", action="store_true")
    args = parser.parse_args()
    if args.step_worker:
        return step_worker(args.batch, args.steps)
    if not args.skip_encode:
        rows = bench_encode(args.items)
        print(f"encode {args.items} texts (MiniLM-L6, cpu)   items/s   vs local")
        for label, rate in rows:
            print(f"  {label:<34} {rate:8.1f}   {rate / rows[0][1]:.2f}x")
    timed = bench_steps(args.batch, args.steps)
    print(f"step time, global batch {args.batch} (gloo, cpu)   ms/step   speed-up")
    for what in ("align", "twotower"):
        for procs, ms in timed.items():
            print(f"  {what:<9} torchrun x{procs}{'':<17} {ms[what]:8.1f}   "
                  f"{timed[1][what] / ms[what]:.2f}x")


if __name__ == "__main__":
    main()
