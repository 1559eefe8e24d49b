"""`mmrec serve` latency and throughput against the cold CLI call, in the same run.

    python bench/serve.py                      # 2,000 items, 10,000 mixed requests
    python bench/serve.py --items 500 --mixed 2000 --json out.json

Builds (once, under bench/data/serve/) a synthetic catalog of small pictures and
titles, a store with fast deterministic encoders through the public ``local:`` backend
(bench/serve_encoders.py), an aligner and a two-tower model. Then:

- cold: ``mmrec recommend DIR ... --json`` as a new process, median of 3, per query kind;
- served: ``mmrec serve ALIGNER MODEL`` in its own process on a free loopback port, and
  N clients (threads with keep-alive connections) sending text searches, item searches
  or recommendations for a user: p50/p99 latency per request and requests/s;
- mixed: 10,000 requests of all three kinds from 16 clients, counting every non-200.

Client and server share the machine's CPU, as a shop page's back end and its callers
on one box would. Goals (2-core CPU, ~2k items): text search p50 <= 20 ms and p99 <=
100 ms with one client, >= 100 requests/s with 8 clients, zero errors in the mixed run.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENCODERS = Path(__file__).resolve().parent / "serve_encoders.py"
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
THINGS = ["dog", "cat", "guitar", "drum", "car", "boat", "tree", "house", "bell", "bird",
          "train", "lamp", "chair", "flower", "clock", "horse", "piano", "rocket", "cup", "shoe"]
STYLES = ["small", "large", "old", "shiny", "wooden", "striped", "happy", "noisy", "quiet", "tiny"]
TEXTS = [f"a {s} {c} {t}" for s in STYLES[:3] for c in COLOURS[:4] for t in THINGS[:5]]
CONCURRENCY = (1, 8, 16)


def build(root: Path, n_items: int, n_users: int) -> tuple[Path, Path]:
    """Catalog -> store -> aligner -> model, reused when already there."""
    import mmrec
    from mmrec.recsys.config import TrainConfig

    aligner, model = root / "aligner", root / "model"
    if (aligner / "config.json").is_file() and (model / "config.json").is_file():
        return aligner, model
    catalog = _catalog(root / "catalog", n_items)
    mmrec.encode(catalog, root / "store", encoders={
        "text": f"local:{ENCODERS}:HashedText", "image": f"local:{ENCODERS}:Thumbnail"})
    mmrec.align(root / "store", aligner, steps=60)
    mmrec.train(_interactions(root / "interactions.csv", n_items, n_users), model,
                store=root / "store", config=TrainConfig(epochs=3))
    return aligner, model


def _catalog(root: Path, n_items: int) -> Path:
    from PIL import Image

    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    rows = []
    for i in range(n_items):
        style, colour, thing = STYLES[i % 10], COLOURS[(i // 10) % 8], THINGS[(i // 80) % 20]
        shade = tuple(rng.randrange(256) for _ in range(3))
        Image.new("RGB", (16, 16), shade).save(root / "img" / f"{i}.png")
        rows.append({"id": f"i{i}", "title": f"{style} {colour} {thing} {i}",
                     "description": f"a {style} {colour} {thing}", "image": f"img/{i}.png"})
    path = root / "catalog.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _interactions(path: Path, n_items: int, n_users: int) -> Path:
    rng = random.Random(1)
    lines = ["user,item,timestamp"]
    for u in range(n_users):
        for t, i in enumerate(rng.sample(range(n_items), 20)):
            lines.append(f"u{u},i{i},{t}")
    path.write_text("\n".join(lines) + "\n")
    return path


def cold(args: list[str]) -> float:
    """Median seconds of ``mmrec recommend ARGS --json`` as a fresh process."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mmrec.cli.main", "recommend", *args, "--json"],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def start_server(aligner: Path, model: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mmrec.cli.main", "serve", str(aligner),
                             str(model), "--port", str(port)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("the server did not come up")


def request_for(kind: str, rng: random.Random, n_items: int, n_users: int) -> tuple[str, bytes]:
    if kind == "text":
        return "/search", json.dumps({"text": rng.choice(TEXTS), "k": 10}).encode()
    if kind == "item":
        return "/search", json.dumps({"item": f"i{rng.randrange(n_items)}", "k": 10}).encode()
    return "/recommend", json.dumps({"user": f"u{rng.randrange(n_users)}", "k": 10}).encode()


def load(port: int, kinds: list[str], clients: int, total: int, n_items: int,
         n_users: int) -> dict[str, float]:
    """``total`` requests from ``clients`` threads; latencies, throughput, errors."""
    latencies: list[float] = []
    errors = [0]
    lock, counter = threading.Lock(), iter(range(total))

    def client(seed: int) -> None:
        rng, conn = random.Random(seed), http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for n in counter:  # the shared iterator hands out request numbers
            path, body = request_for(kinds[n % len(kinds)], rng, n_items, n_users)
            start = time.perf_counter()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok, conn = False, http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append(time.perf_counter() - start)
            if not ok:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(s,)) for s in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"requests": len(latencies), "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "rps": len(latencies) / elapsed, "errors": errors[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--requests", type=int, default=600, help="per cell of the table")
    parser.add_argument("--mixed", type=int, default=10_000)
    parser.add_argument("--data", type=Path, default=ROOT / "bench" / "data" / "serve")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("MMREC_HOME", str(args.data / "home"))
    aligner, model = build(args.data / f"{args.items}", args.items, args.users)
    queries = {"text": (aligner, ["--text", TEXTS[0]]), "item": (aligner, ["--item", "i7"]),
               "recommend": (model, ["--user", "u3"])}
    cold_s = {kind: cold([str(path), *q]) for kind, (path, q) in queries.items()}
    proc, port = start_server(aligner, model)
    try:
        load(port, ["text", "item", "recommend"], 4, 200, args.items, args.users)  # warm-up
        table = {(kind, c): load(port, [kind], c, args.requests if c > 1 else args.requests // 2,
                                 args.items, args.users)
                 for kind in queries for c in CONCURRENCY}
        mixed = load(port, ["text", "item", "recommend"], 16, args.mixed, args.items, args.users)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    report(args, cold_s, table, mixed)


def report(args, cold_s, table, mixed) -> None:
    print(f"{args.items} items, {args.users} users; cold = `mmrec recommend ... --json` as a new process")
    print(f"{'query':10} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} {'errors':>6} "
          f"{'cold s':>7} {'cold/p50':>9}")
    for (kind, c), r in table.items():
        print(f"{kind:10} {c:>7} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['rps']:>7.0f} "
              f"{r['errors']:>6} {cold_s[kind]:>7.2f} {1000 * cold_s[kind] / r['p50_ms']:>8.0f}x")
    print(f"mixed      {16:>7} {mixed['p50_ms']:>8.1f} {mixed['p99_ms']:>8.1f} {mixed['rps']:>7.0f} "
          f"{mixed['errors']:>6}   ({mixed['requests']} requests)")
    text1, text8 = table[("text", 1)], table[("text", 8)]
    goals = [("text p50 <= 20 ms (1 client)", text1["p50_ms"] <= 20),
             ("text p99 <= 100 ms (1 client)", text1["p99_ms"] <= 100),
             (">= 100 req/s with 8 clients (text)", text8["rps"] >= 100),
             (f"{mixed['requests']} mixed requests, 16 clients, zero errors", mixed["errors"] == 0)]
    for goal, met in goals:
        print(f"goal {'met ' if met else 'MISSED'}: {goal}")
    if args.json:
        args.json.write_text(json.dumps({"cold_s": cold_s, "mixed": mixed, "table": [
            {"query": k, "clients": c, **r} for (k, c), r in table.items()]}, indent=2))


if __name__ == "__main__":
    main()
