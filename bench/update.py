"""MovieLens-100k: `mmrec update` against no update and against a full retrain.

Protocol (the issue's): each user's ratings in time order (file order breaks ties) are
cut 80/10/10 into ``base``, ``new`` (the interactions that arrive after training) and
``test`` (the user's later behaviour). Every rating is a positive; the item text is
"title. year. genres" encoded with the offline default text encoder
(``bench/movielens.py``'s store).

1. ``mmrec train --no-test`` on base (validation: the last 10% of base, for early
   stopping), then ``mmrec evaluate --test test``: the model without an update;
2. ``mmrec update`` with new (no retraining), evaluated on test; and again with
   ``--steps`` (default 100) steps of fine-tuning on the new interactions;
3. ``mmrec train --no-test`` on base + new (the full retrain), evaluated on test.

Evaluation excludes everything each model has seen. Targets: NDCG@20 after update
>= 1.15x without it and >= 0.9x the retrain; the update takes <= 10% of the retrain's
time. Run: ``python bench/update.py [--steps 100] [--seed 0]``; results also go
to bench/results/update.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

from fetch_movielens import DEFAULT_DEST  # noqa: E402
from movielens import store  # noqa: E402

RESULTS = ROOT / "bench" / "results"
COLUMNS = ("recall@20", "ndcg@20", "hit@20")


def cut(inter: Path, out: Path) -> dict[str, Path]:
    """base/new/test CSVs: each user's interactions in time order, 80/10/10."""
    from mmrec.catalog import read_interactions
    from mmrec.recsys.splits import part_sizes

    found = read_interactions(inter)
    users = np.array(found.users)
    order = np.lexsort((found.timestamps, users))  # stable: file order breaks ties
    part = np.zeros(len(users), dtype=np.int8)
    bounds = np.flatnonzero(users[order][1:] != users[order][:-1]) + 1
    for rows in np.split(order, bounds):
        n_base, n_new, _ = part_sizes(len(rows))
        part[rows[n_base : n_base + n_new]] = 1
        part[rows[n_base + n_new :]] = 2
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.csv" for name in ("base", "new", "test", "base+new")}
    for name, keep in (("base", part == 0), ("new", part == 1), ("test", part == 2),
                       ("base+new", part < 2)):
        lines = ["user,item,rating,timestamp"] + [
            f"{found.users[k]},{found.items[k]},{found.ratings[k]:g},{found.timestamps[k]:.0f}"
            for k in np.flatnonzero(keep)]
        paths[name].write_text("\n".join(lines) + "\n")
    return paths


def scores(model: Path, test: Path) -> dict:
    import mmrec

    result = mmrec.evaluate(model, test=test, ks=[10, 20])
    return {**{k: result[k] for k in COLUMNS}, "users": result["users"],
            "unknown_users": result["unknown_users"]}


def run(args: argparse.Namespace) -> list[dict]:
    import mmrec
    from mmrec.recsys.config import TrainConfig

    store_dir = store(args.data, args.device)
    paths = cut(args.data / "ml-100k.inter", RESULTS / "update" / "data")
    config = TrainConfig(model=args.model, test=False, seed=args.seed, device=args.device)
    root = RESULTS / "update" / f"{args.model}-seed{args.seed}"
    rows = []
    started = time.perf_counter()
    mmrec.train(paths["base"], root / "base", store=store_dir, config=config)
    rows.append({"run": "no update", "seconds": time.perf_counter() - started,
                 **scores(root / "base", paths["test"])})
    started = time.perf_counter()
    mmrec.update(root / "base", paths["new"], out=root / "updated", device=args.device)
    rows.append({"run": "update", "seconds": time.perf_counter() - started,
                 **scores(root / "updated", paths["test"])})
    if args.steps:
        started = time.perf_counter()
        mmrec.update(root / "base", paths["new"], out=root / "tuned", steps=args.steps,
                     device=args.device)
        rows.append({"run": f"update --steps {args.steps}", "seconds": time.perf_counter() - started,
                     **scores(root / "tuned", paths["test"])})
    started = time.perf_counter()
    mmrec.train(paths["base+new"], root / "retrain", store=store_dir, config=config)
    rows.append({"run": "full retrain", "seconds": time.perf_counter() - started,
                 **scores(root / "retrain", paths["test"])})
    return rows


def table(rows: list[dict]) -> str:
    head = f"{'run':20} " + " ".join(f"{c:>9}" for c in COLUMNS) + f" {'users':>6} {'seconds':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['run']:20} " + " ".join(f"{r[c]:9.4f}" for c in COLUMNS)
                     + f" {r['users']:6d} {r['seconds']:8.1f}")
    return "\n".join(lines)


def goals(rows: list[dict]) -> list[str]:
    by = {r["run"]: r for r in rows}
    before, after, retrain = by["no update"], by["update"], by["full retrain"]
    lift = after["ndcg@20"] / before["ndcg@20"]
    share = after["ndcg@20"] / retrain["ndcg@20"]
    cost = after["seconds"] / retrain["seconds"]
    return [
        f"ndcg@20 after update {after['ndcg@20']:.4f} = {lift:.3f}x without it (goal >= 1.15x): "
        f"{'MET' if lift >= 1.15 else 'MISSED'}",
        f"ndcg@20 after update = {share:.3f}x the full retrain's {retrain['ndcg@20']:.4f} "
        f"(goal >= 0.9x): {'MET' if share >= 0.9 else 'MISSED'}",
        f"update {after['seconds']:.1f}s = {cost:.3f}x the retrain's {retrain['seconds']:.1f}s "
        f"(goal <= 0.1x): {'MET' if cost <= 0.1 else 'MISSED'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="twotower")
    parser.add_argument("--steps", type=int, default=100,
                        help="fine-tuning steps of the second update (0: leave it out)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: fastest on a shared 2-core machine)")
    args = parser.parse_args()
    from mmrec.runtime import set_threads

    set_threads(args.threads)
    rows = run(args)
    print(table(rows))
    for line in goals(rows):
        print(line)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "update.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
