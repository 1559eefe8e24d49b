"""Exploration policies on ml-100k by replay (Li et al., WSDM 2011), through the library.

The ratings are cut at one moment: the earliest ``--train-share`` of them (by time)
train a two-tower (``mmrec.train``, defaults, temporal split inside for early
stopping); the rest, in time order, are the log that ``mmrec.evaluate(..., what=
"replay")`` walks. Each event offers the logged movie and ``--candidates - 1`` random
others; a policy scores when its pick is the logged movie, reward = rating >= 4;
the bandits learn per user from those matched events (see mmrec.recsys.replay).
Log users the model never saw start from the model's vector for an empty history.

Run: ``python bench/replay.py [--candidates 20] [--alphas 0.1,0.2,0.5]``. Results also
go to bench/results/replay.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

from fetch_movielens import DEFAULT_DEST  # noqa: E402
from movielens import store  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def cut(inter: Path, share: float, out: Path) -> tuple[Path, Path]:
    """``(train.csv, log.csv)``: the ratings before and after the ``share`` quantile in time."""
    from mmrec.catalog import read_interactions

    found = read_interactions(inter)
    moment = np.quantile(found.timestamps, share)
    out.mkdir(parents=True, exist_ok=True)
    files = {"train": [], "log": []}
    for u, i, r, t in zip(found.users, found.items, found.ratings, found.timestamps, strict=True):
        files["train" if t <= moment else "log"].append(f"{u},{i},{r:g},{t:.0f}")
    paths = []
    for name, lines in files.items():
        (out / f"{name}.csv").write_text("user,item,rating,timestamp\n" + "\n".join(lines) + "\n")
        paths.append(out / f"{name}.csv")
    return paths[0], paths[1]


def table(result: dict, policies: list[str]) -> str:
    head = f"{'policy':14} {'matched':>8} {'reward':>7} {'95% interval':>16}"
    lines = [head, "-" * len(head)]
    for name in policies:
        r = result[name]
        lines.append(f"{name:14} {r['matched']:8d} {r['reward']:7.4f} "
                     f"   [{r['ci_low']:.4f}, {r['ci_high']:.4f}]")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--train-share", type=float, default=0.8)
    parser.add_argument("--alphas", default="0.1,0.2,0.5", help="ucb/thompson widths to compare")
    parser.add_argument("--data", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import mmrec
    from mmrec.recsys.config import TrainConfig
    from mmrec.recsys.explore import ExploreConfig
    from mmrec.runtime import set_threads

    set_threads(args.threads)
    store_dir = store(args.data, "cpu")
    train_file, log_file = cut(args.data / "ml-100k.inter", args.train_share, RESULTS / "replay")
    model = RESULTS / "replay" / "twotower"
    started = time.perf_counter()
    mmrec.train(train_file, model, store=store_dir, config=TrainConfig(device="cpu"))
    print(f"  trained in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    runs = {}
    for alpha in (float(a) for a in args.alphas.split(",")):
        result = mmrec.evaluate(model, what="replay", log=log_file, candidates=args.candidates,
                                config=ExploreConfig(alpha=alpha))
        runs[f"alpha={alpha:g}"] = result
        print(f"log: {result['events']} events, mean reward {result['log_reward']:.4f}, "
              f"{args.candidates} candidates an event; ucb/thompson alpha {alpha:g}")
        print(table(result, ["greedy", "ucb", "thompson", "epsilon", "popularity", "random"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "replay.json").write_text(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    main()
