"""``mmrec demo``: the offline default on the small real catalog shipped in assets/demo."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmrec.encoders.base import Modality
from mmrec.encoding import EncodeReport, encode
from mmrec.progress import Progress
from mmrec.resources import asset
from mmrec.store import Store


def home() -> Path:
    """Where mmrec keeps its own files: $MMREC_HOME, else ~/.cache/mmrec."""
    return Path(os.environ.get("MMREC_HOME") or Path.home() / ".cache" / "mmrec")


def neighbours(store: Store, modality: Modality, k: int = 3) -> dict[str, list[tuple[str, float]]]:
    """Each item's ``k`` nearest other items by cosine within one modality."""
    import numpy as np

    ids, matrix = store.vectors(modality)
    if len(ids) < 2:
        return {}
    sims = matrix @ matrix.T
    np.fill_diagonal(sims, -np.inf)
    k = min(k, len(ids) - 1)
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return {ids[i]: [(ids[j], float(sims[i, j])) for j in top[i]] for i in range(len(ids))}


def run(out: Path | None = None, device: str = "auto", batch_size: int = 16,
        progress: Progress | None = None) -> tuple[EncodeReport, dict[str, Any]]:
    """Encode the bundled catalog; return the report and per-modality neighbours."""
    out = out or home() / "demo" / "store"
    report = encode(asset("demo/catalog.jsonl"), out, device=device, batch_size=batch_size,
                    progress=progress)
    store = Store.open(out)
    titles = {i: meta.get("title", i) for i, meta in store.items().items()}
    found = {m.value: neighbours(store, m) for m in store.modalities}
    return report, {"titles": titles, "neighbours": found}
