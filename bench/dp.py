"""The utility cost of DP-SGD: the two-tower on ml-100k (temporal split) at several epsilons.

Each run trains with ``mmrec.train`` (the store and data of bench/movielens.py) and is
scored with ``mmrec.evaluate`` on the test part (full ranking, training and validation
items excluded). "none" is the ordinary two-tower (early stopping on validation);
each ``--epsilons`` run is the DP-SGD two-tower of mmrec.recsys.private (one example
per user, Poisson-sampled, clipped and noised by opacus; the last epoch released), at
the same epochs for every epsilon, so only the noise differs. Popularity is printed
as the floor a private model should beat to be worth its cost.

Run: ``python bench/dp.py [--epsilons 1,4,8] [--epochs 30]``. Results also go to
bench/results/dp.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

from fetch_movielens import DEFAULT_DEST  # noqa: E402
from movielens import store  # noqa: E402

RESULTS = ROOT / "bench" / "results"
COLUMNS = ("recall@20", "ndcg@10", "ndcg@20", "hit@20")


def run(name: str, store_dir: Path, inter: Path, options: dict) -> dict:
    import mmrec
    from mmrec.recsys.config import TrainConfig

    out = RESULTS / "dp" / name
    started = time.perf_counter()
    report = mmrec.train(inter, out, store=store_dir, config=TrainConfig(split="temporal", **options))
    seconds = time.perf_counter() - started
    result = mmrec.evaluate(out)
    privacy = report.privacy or {}
    return {"run": name, "epsilon": privacy.get("epsilon"), "delta": privacy.get("delta"),
            "noise": privacy.get("noise_multiplier"), "epochs": report.epochs, "seconds": seconds,
            **{k: result[k] for k in COLUMNS}}


def table(rows: list[dict]) -> str:
    head = (f"{'run':10} {'eps spent':>9} {'delta':>8} {'noise':>6} "
            + " ".join(f"{c:>9}" for c in COLUMNS) + f" {'train s':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        eps = f"{r['epsilon']:9.3f}" if r["epsilon"] is not None else f"{'-':>9}"
        delta = f"{r['delta']:8.0e}" if r["delta"] is not None else f"{'-':>8}"
        noise = f"{r['noise']:6.3f}" if r["noise"] is not None else f"{'-':>6}"
        lines.append(f"{r['run']:10} {eps} {delta} {noise} "
                     + " ".join(f"{r[c]:9.4f}" for c in COLUMNS) + f" {r['seconds']:8.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilons", default="1,4,8")
    parser.add_argument("--epochs", type=int, default=30, help="DP-SGD epochs (every epsilon)")
    parser.add_argument("--lr", type=float, default=None, help="DP-SGD peak learning rate")
    parser.add_argument("--data", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from mmrec.runtime import set_threads

    set_threads(args.threads)
    store_dir, inter = store(args.data, "cpu"), args.data / "ml-100k.inter"
    rows = [run("pop", store_dir, inter, {"model": "pop"}),
            run("none", store_dir, inter, {"device": "cpu"})]
    print(f"  none: ndcg@20 {rows[-1]['ndcg@20']:.4f}", file=sys.stderr, flush=True)
    for eps in (float(e) for e in args.epsilons.split(",")):
        options = {"device": "cpu", "dp_epsilon": eps, "epochs": args.epochs, "lr": args.lr}
        rows.append(run(f"eps={eps:g}", store_dir, inter, options))
        print(f"  eps {eps:g}: ndcg@20 {rows[-1]['ndcg@20']:.4f}", file=sys.stderr, flush=True)
    print(table(rows))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dp.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
