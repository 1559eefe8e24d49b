"""``mmrec demo``: the offline default on the small real catalog shipped in assets/demo."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmrec.encoding import encode
from mmrec.enums import Modality
from mmrec.progress import Progress
from mmrec.query import Query
from mmrec.recsys.config import TrainConfig
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


# the defaults, as `mmrec train` uses them: the README commands reproduce the demo
DEMO_USER = "u03"  # the synthetic "drummer": instruments, then household sounds

QUERIES = ("a barking dog", "church bells ringing", "someone playing the guitar",
           "a thunderstorm with heavy rain")


def search(aligner: Path, queries: tuple[str, ...] = QUERIES, k: int = 3) -> dict[str, Any]:
    """For each text query, the top ``k`` items by picture and by sound."""
    import mmrec
    from mmrec.alignment.aligner import Aligner

    have = set(Aligner.open(aligner).modalities)
    return {q: {m: [(h.id, round(h.score, 4)) for h in
                    mmrec.recommend(aligner, Query(text=q, modality=m, k=k))]
                for m in ("image", "audio") if m in have}
            for q in queries}


def run(out: Path | None = None, device: str = "auto", batch_size: int | None = None,
        progress: Progress | None = None) -> dict[str, Any]:
    """Encode the bundled catalog, align its modalities, search it by text, train a
    recommender on the bundled (synthetic) interactions and recommend for one user.
    """
    import mmrec

    root = out or home() / "demo"
    report = encode(asset("demo/catalog.jsonl"), root / "store", device=device,
                    batch_size=batch_size, progress=progress)
    store = Store.open(root / "store")
    titles = {i: meta.get("title", i) for i, meta in store.items().items()}
    aligned = mmrec.align(root / "store", root / "aligner", device=device, progress=progress)
    # the defaults of `mmrec train`, so the README's commands reproduce what the demo shows
    trained = mmrec.train(asset("demo/interactions.csv"), root / "model", aligner=root / "aligner",
                          config=TrainConfig(device=device), progress=progress)
    user = Query(user=DEMO_USER, k=5, explain=True)
    return {"encode": report, "align": aligned, "titles": titles,
            "neighbours": {m.value: neighbours(store, m) for m in store.modalities},
            "search": search(root / "aligner"), "train": trained,
            "evaluate": mmrec.evaluate(root / "model"),
            "recommend": {"user": DEMO_USER, "results": mmrec.recommend(root / "model", user)}}
