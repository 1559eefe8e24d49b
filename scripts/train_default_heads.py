"""Make the shipped zero-shot assets: the ImageNet bridge and the default heads.

Public-domain data only: the openclipart catalog that ``scripts/fetch_bench_data.py``
prepares from Debian's ``openclipart-svg`` (``bench/data/openclipart/catalog.jsonl``).

    python scripts/train_default_heads.py            # bridge + heads
    python scripts/train_default_heads.py bridge     # only assets/bridge/

Steps (every choice made on openclipart's validation split, never on bench data):

1. ``bridge``: embed the 1000 ImageNet class names with MiniLM (float16) into
   ``assets/bridge/classes.safetensors``; pick the text template and the softmax
   temperature by the bridge's own text->image R@10 on openclipart validation items.
2. ``heads``: encode the catalog into ``bench/data/openclipart/store`` (incremental),
   fit a linear text-pivot image head from scratch with early stopping (the bridge
   weight chosen on validation by ``mmrec.align``), and copy the heads and their
   config into ``assets/heads/``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data" / "openclipart"
ASSETS = ROOT / "assets"
TEMPLATES = ("{}", "a {}", "a picture of a {}", "a drawing of a {}")
TEMPERATURES = (0.5, 1.0, 2.0, 3.0, 5.0)
SEED = 0


def class_names() -> list[str]:
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def embed_texts(texts: list[str]) -> np.ndarray:
    import torch

    from mmrec.encoders.registry import create

    encoder = create("builtin:minilm-l6-v2", "text")
    encoder.load(torch.device("cpu"))
    return encoder.encode(texts, batch_size=128)


def write_bridge(embeddings: np.ndarray, names: list[str], template: str, temperature: float,
                 measured: dict) -> None:
    from safetensors.numpy import save_file

    from mmrec.alignment.bridge import IMAGE_ENCODER, TEXT_ENCODER

    out = ASSETS / "bridge"
    out.mkdir(parents=True, exist_ok=True)
    save_file({"embeddings": embeddings.astype(np.float16)}, str(out / "classes.safetensors"),
              metadata={"encoder": TEXT_ENCODER, "template": template})
    (out / "bridge.json").write_text(json.dumps({
        "image_encoder": IMAGE_ENCODER, "text_encoder": TEXT_ENCODER, "template": template,
        "temperature": temperature, "classes": names, "chosen_on": measured,
    }, indent=2) + "\n")


def encode_store() -> Path:
    import mmrec

    catalog, store = DATA / "catalog.jsonl", DATA / "store"
    if not catalog.is_file():
        sys.exit(f"{catalog} is missing: run scripts/fetch_bench_data.py first")
    report = mmrec.encode(catalog, store, modalities=["text", "image"], batch_size=64)
    print(f"store {store}: {report.items} items, encoded {report.encoded}", file=sys.stderr)
    return store


def bridge_r10(store: Path, classes: np.ndarray, temperature: float) -> float:
    """Bridge-only text->image R@10 on openclipart's validation items."""
    from mmrec.alignment.bridge import ImageNetBridge, imagenet_classifier
    from mmrec.alignment.pipeline import split_items
    from mmrec.alignment.retrieval import pair_ranks
    from mmrec.store import Store

    st = Store.open(store)
    _, val = split_items(st.ids, 0.2, SEED)
    bridge = ImageNetBridge(*imagenet_classifier(), classes=classes, temperature=temperature)
    image, image_mask = st.matrix("image", mmap=False)
    text, text_mask = st.matrix("text", mmap=False)
    projected = {"text": (text, text_mask),
                 "image": (bridge(image, st.norms("image")), image_mask)}
    ranks, _ = pair_ranks(projected, "text", "image", val)
    return float(np.mean(ranks <= 10))


def make_bridge(store: Path) -> None:
    names = class_names()
    best = None
    scores = {}
    for template in TEMPLATES:
        classes = embed_texts([template.format(n) for n in names])
        for temperature in TEMPERATURES:
            r10 = bridge_r10(store, classes, temperature)
            scores[f"{template!r} T={temperature}"] = round(r10, 4)
            print(f"bridge template {template!r} T={temperature}: text->image R@10 {r10:.4f}",
                  file=sys.stderr)
            if best is None or r10 > best[0]:
                best = (r10, template, temperature, classes)
    r10, template, temperature, classes = best
    write_bridge(classes, names, template, temperature,
                 {"data": "openclipart validation split (seed 0, 20%)",
                  "metric": "bridge-only text->image R@10", "scores": scores})
    print(f"bridge: template {template!r}, temperature {temperature} (R@10 {r10:.4f})",
          file=sys.stderr)


def make_heads(store: Path, head: str, max_steps: int) -> None:
    import mmrec
    from mmrec.artifacts import Artifact, Kind
    from mmrec.atomic import write_json

    out = ASSETS / "heads"
    with tempfile.TemporaryDirectory() as tmp:
        aligner = Path(tmp) / "aligner"
        report = mmrec.align(store, aligner, from_scratch=True, head=head, steps=max_steps,
                             seed=SEED)
        print(json.dumps(report.as_dict(), indent=2), file=sys.stderr)
        config = json.loads((aligner / "config.json").read_text())
        config["format"] = "mmrec-heads"
        config["store"]["path"] = "openclipart (Debian openclipart-svg), bench/data/openclipart/store"
        config["aligner"].pop("training", None)
        config["trained_on"] = {"items": report.items, "train_items": report.train_items,
                                "val_items": report.val_items, "best_step": report.best_step}
        # a heads directory is an artifact like the others: staged, then published whole
        with Artifact.create(out, Kind.HEADS) as staging:
            shutil.copy(aligner / "heads.safetensors", staging / "heads.safetensors")
            for kept in out.glob("README*"):  # the attribution written by hand stays
                shutil.copy(kept, staging / kept.name)
            write_json(staging / "config.json", config)
    print(f"wrote {out}: bridge weight {report.bridge_weight} ({report.bridge_weight_from})",
          file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["all", "bridge", "heads"], default="all")
    parser.add_argument("--head", default="linear", choices=["linear", "mlp"])
    parser.add_argument("--steps", type=int, default=1000, help="upper bound; early stopping")
    args = parser.parse_args()
    store = encode_store()
    if args.what in ("all", "bridge"):
        make_bridge(store)
    if args.what in ("all", "heads"):
        make_heads(store, args.head, args.steps)


if __name__ == "__main__":
    main()
