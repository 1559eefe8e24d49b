"""Index types on clustered unit vectors: recall@10 against exact search and queries/s.

    python bench/index.py                                  # 100k and 1M
    python bench/index.py --sizes 100000 --types flat,hnsw,ivf --json out.json

Data (seeded): ``--clusters`` Gaussian centres on the unit sphere in ``--dim``
dimensions; each point is a centre plus isotropic noise (``--noise`` per dimension,
so the noise and the centre have similar norms at 384-d), normalised. The
``--queries`` last points are held out of the index and used as queries (k=10).

Per size and type: build time (``VectorIndex.build``, which includes tuning the
search parameter to mmrec's recall target on the index's own vectors), the saved
index's bytes, queries/s with faiss on ``--threads`` threads (one batch of all
queries, best of ``--repeats``), recall@10 against the flat index's answers, and the
search parameter chosen. The reference is ``flat`` in the same process, re-measured
right after each row (the box is shared): every row prints its speed as a multiple
of flat's. ``fp16`` and ``int8`` rows are exhaustive
scans over half- and quarter-size codes (``SQfp16``, ``SQ8``): what a compressed
vector store would cost in recall. The last line is the ``auto`` choice at the
default memory budget and its ratio to flat.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmrec.index import VectorIndex, choose_index, memory_budget  # noqa: E402

TYPES = ["flat", "hnsw", "ivf", "sq8", "ivfpq", "fp16", "int8"]
STORES = {"fp16": "SQfp16", "int8": "SQ8"}  # exhaustive scans over compressed vectors


def clustered(n: int, dim: int, clusters: int, noise: float, seed: int) -> np.ndarray:
    """``n`` unit vectors around ``clusters`` random unit centres, made chunk by chunk."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        x = centres[rng.integers(0, clusters, stop - start)]
        x += noise * rng.standard_normal(x.shape, dtype=np.float32)
        out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def build(kind: str, vectors: np.ndarray, seed: int):
    """A faiss index and the chosen search parameters, timed."""
    import faiss

    started = time.perf_counter()
    if kind in STORES:
        index = faiss.index_factory(vectors.shape[1], STORES[kind], faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[:100_000])
        index.add(vectors)
        params, built = {}, kind
    else:
        found = VectorIndex.build([str(i) for i in range(len(vectors))], vectors, kind, seed=seed)
        index, params, built = found.index, found.info["params"], found.kind.value
    return index, params, built, time.perf_counter() - started


def index_bytes(index) -> int:
    import faiss

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.faiss")
        faiss.write_index(index, path)
        return os.path.getsize(path)


def measure(index, queries: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    best, rows = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        _, rows = index.search(queries, 10)
        best = min(best, time.perf_counter() - started)
    return len(queries) / best, rows


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def run_size(n: int, args) -> list[dict]:
    data = clustered(n + args.queries, args.dim, args.clusters, args.noise, args.seed)
    vectors, queries = data[:n], np.ascontiguousarray(data[n:])
    flat, _, _, _ = build("flat", vectors, args.seed)
    _, truth = measure(flat, queries, 1)
    rows = []
    for kind in ["flat"] + [t for t in args.types if t != "flat"]:
        index, params, built, seconds = build(kind, vectors, args.seed)
        qps, found = measure(index, queries, args.repeats)
        # flat again right before or after: on a shared box the load changes minute by minute
        flat_qps = measure(flat, queries, args.repeats)[0] if kind != "flat" else qps
        row = {"n": n, "type": kind, "built": built, "build_s": round(seconds, 2),
               "bytes": index_bytes(index), "qps": round(qps, 1), "x_flat": round(qps / flat_qps, 2),
               "recall@10": round(recall(found, truth), 4), "params": params}
        rows.append(row)
        print(json.dumps(row), flush=True)
        del index
    del flat
    auto = choose_index(n, args.dim, memory_budget()).value
    chosen = next((r for r in rows if r["type"] == auto), None)
    print(f"auto at n={n}: {auto}" + (f" recall@10 {chosen['recall@10']} at {chosen['x_flat']}x flat"
                                       if chosen else " (not measured)"), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| n | type | build s | MB | queries/s | x flat | recall@10 | search param |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        param = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        lines.append(f"| {r['n']:,} | {r['type']} | {r['build_s']:.1f} | {r['bytes'] / 2**20:.0f} "
                     f"| {r['qps']:,.0f} | {r['x_flat']:.1f} | {r['recall@10']:.3f} | {param} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--types", default=",".join(TYPES))
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="Also write every row here.")
    args = parser.parse_args()
    args.types = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = sorted(set(args.types) - set(TYPES))
    if unknown:
        parser.error(f"unknown --types {', '.join(unknown)}; choose from {', '.join(TYPES)}")
    import faiss

    faiss.omp_set_num_threads(args.threads)
    rows = [r for n in (int(s) for s in args.sizes.split(",")) for r in run_size(n, args)]
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
