"""What the two-tower's EASE item-item term costs as the catalog grows: with it and without.

Synthetic catalogs (``bench/scale.py``'s ``c<cluster> n<number>`` titles, encoded with its
fast deterministic encoder through ``local:``, so the figures are mmrec's own cost) and
interactions with a MovieLens-like popularity skew: item popularity Zipf (exponent
``--zipf``, ranks shuffled over the items), each user on two of the 256 planted clusters
(``--in-cluster`` of their picks from those clusters' items, by popularity, the rest from
the whole catalog by popularity), ``--per-user`` distinct items on average (geometric,
at least 5), timestamps increasing.

Per size, each stage in a fresh process (peak RSS its own ``ru_maxrss``, interpreter and
imports included; CPU seconds beside wall seconds, which on a shared box also measure the
neighbours):

- ``towers``: ``mmrec train --model twotower --no-item-item`` for ``--epochs`` epochs
  (no early stop; ``--epochs 0``: the defaults, early stopping on validation), the reference;
- ``term``: the same with ``--item-item`` as by default (lambda from EASE's 7-value grid,
  then the weight from 7, each on validation NDCG@20: 7 inversions, 14 rankings);
- ``term1``: ``--item-item --reg R --item-item-weight W``: one inversion, no grid;
- ``evaluate`` and ``recommend`` (the model opened once, then QUERIES known users one at
  a time, k 10: load seconds and milliseconds a query) of the ``towers`` and ``term``
  models, and each model directory's size.

``other_s`` is a fit less its epochs' steps, export and validation: the trainer's setup,
plus with ``term`` the item-item term (its cost: ``term``'s less ``towers``'). Run:
``python bench/item_item.py --sizes 5000,10000 [--stages towers,term,...] [--work DIR]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from scale import CLUSTERS, ENCODER, write_catalog  # noqa: E402
from scale import measure as run_stage  # noqa: E402

STAGES = ["towers", "term", "term1", "evaluate-towers", "evaluate-term", "recommend-towers",
          "recommend-term"]
QUERIES = 200  # recommend: known users served one at a time after the model is loaded
MODELS = {"towers": {"item_item": False}, "term": {"item_item": True},
          "term1": {"item_item": True, "reg": 200.0, "item_item_weight": 0.5}}


def write_interactions(path: Path, n_items: int, users: int, per_user: int, zipf: float,
                       in_cluster: float, seed: int = 0) -> int:
    """Skewed interactions (see the module doc) as ``user,item,timestamp``; returns the rows."""
    import numpy as np

    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** zipf
    popularity = popularity[rng.permutation(n_items)]
    cluster_items = [np.arange(c, n_items, CLUSTERS) for c in range(CLUSTERS)]
    rows = 0
    with open(path, "w") as fh:
        fh.write("user,item,timestamp\n")
        for u in range(users):
            want = min(n_items // 2, 5 + int(rng.geometric(1.0 / max(1, per_user - 4))))
            likes = np.concatenate([cluster_items[c] for c in rng.choice(CLUSTERS, 2, replace=False)])
            near = min(len(likes), int(round(want * in_cluster)))
            p = popularity[likes] / popularity[likes].sum()
            picked = set(rng.choice(likes, near, replace=False, p=p).tolist())
            while len(picked) < want:  # the rest from the whole catalog, by popularity
                picked.update(rng.choice(n_items, want - len(picked), p=popularity / popularity.sum()).tolist())
            order = rng.permutation(sorted(picked))
            fh.writelines(f"u{u},i{i},{1_000_000 + k * 60 + u}\n" for k, i in enumerate(order.tolist()))
            rows += len(order)
    return rows


def model_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def stage(name: str, work: Path, epochs: int) -> dict:
    """Run one stage in this (fresh) process; what it returns is printed as JSON."""
    import mmrec

    if name == "encode":
        mmrec.encode(work / "catalog.jsonl", work / "store", encoders={"text": ENCODER}, modalities=["text"])
        return {}
    if name in MODELS:
        from mmrec.recsys.config import TrainConfig

        stop = {"epochs": epochs, "patience": 0} if epochs else {}  # 0: the defaults, early stopping
        config = TrainConfig(model="twotower", device="cpu", **stop, **MODELS[name])
        report = mmrec.train(work / "interactions.csv", work / name, store=work / "store", config=config)
        t = report.timings
        return {"valid_ndcg@20": report.valid.get("ndcg@20"), "chosen": report.tuning.get("chosen"),
                "fit_s": t["fit"], "steps_s": t["steps"],
                "other_s": round(t["fit"] - t["steps"] - t["export"] - t["validation"], 2),
                "save_s": t["save"], "model_mb": round(model_bytes(work / name) / 1e6, 1)}
    what, model = name.split("-", 1)
    if what == "evaluate":
        result = mmrec.evaluate(work / model)
        return {"ndcg@20": round(result["ndcg@20"], 4), "users": result["users"]}
    from mmrec.query import Query

    started = time.perf_counter()
    handle = mmrec.open(work / model)  # loaded once, as serve holds it
    loaded = time.perf_counter()
    hits = [handle.ask(Query(user=f"u{u}", k=10)) for u in range(QUERIES)]
    return {"load_s": round(loaded - started, 2), "hits": len(hits[0]),
            "query_ms": round((time.perf_counter() - loaded) / QUERIES * 1000, 2)}


def measure(name: str, work: Path, epochs: int, timeout: float) -> dict:
    return run_stage(name, work, timeout, __file__, ("--epochs", str(epochs)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,10000")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--per-user", type=int, default=30)
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--in-cluster", type=float, default=0.7)
    parser.add_argument("--epochs", type=int, default=2, help="fixed, no early stop; 0: the defaults")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        import resource

        from mmrec.runtime import set_threads

        set_threads(1)  # the same for every stage, whatever the box
        result = stage(args.stage, args.work, args.epochs)
        usage = resource.getrusage(resource.RUSAGE_SELF)  # ru_maxrss: KiB on Linux
        print(json.dumps({"rss_gb": round(usage.ru_maxrss / 1024**2, 2),
                          "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), **result}))
        return
    root = args.work or Path(tempfile.mkdtemp(prefix="mmrec-itemitem-"))
    for size in (int(s) for s in args.sizes.split(",")):
        work = root / str(size)
        work.mkdir(parents=True, exist_ok=True)
        if not (work / "interactions.csv").is_file():
            write_catalog(work / "catalog.jsonl", size)
            rows = write_interactions(work / "interactions.csv", size, args.users, args.per_user,
                                      args.zipf, args.in_cluster)
            print(json.dumps({"size": size, "interactions": rows}), file=sys.stderr, flush=True)
            measure("encode", work, args.epochs, args.timeout)
        for name in filter(None, args.stages.split(",")):  # --stages "": only prepare
            result = measure(name, work, args.epochs, args.timeout)
            print(json.dumps({"size": size, **result}), flush=True)


if __name__ == "__main__":
    main()
