"""The offline default end to end on the real bundled catalog: all three real encoders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmrec.cli.main import app
from mmrec.store import Store

pytestmark = pytest.mark.slow  # all three real encoders, then align, train and evaluate
runner = CliRunner()
DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


def _categories() -> dict[str, str]:
    lines = (DEMO / "catalog.jsonl").read_text().splitlines()
    return {row["id"]: row["category"] for row in map(json.loads, lines)}


def _most_popular_ndcg(store: Path, tmp_path: Path) -> float:
    trained = runner.invoke(app, ["train", "--store", str(store), "-i",
                                  str(DEMO / "interactions.csv"), "--model", "pop",
                                  "-o", str(tmp_path / "pop")])
    assert trained.exit_code == 0, trained.output
    return json.loads(runner.invoke(app, ["evaluate", str(tmp_path / "pop"), "--json"]).stdout)["ndcg@10"]


def test_demo_encodes_all_modalities_with_real_encoders(tmp_path):
    out = tmp_path / "demo"
    first = runner.invoke(app, ["demo", "--out", str(out), "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["encode"]["vectors"] == {"text": 38, "image": 34, "audio": 29}
    assert report["encode"]["skipped"] == []
    store = Store.open(out / "store")
    for modality, dim in {"text": 384, "image": 1280, "audio": 512}.items():
        ids, vectors = store.vectors(modality)
        assert vectors.shape == (len(ids), dim)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # the text neighbours make sense: a cow sits next to other farm animals
    near = report["neighbours"]
    assert set(near) == {"text", "image", "audio"}
    assert near["text"]["cow"][0][0] in {"sheep", "horse", "pig"}

    # after aligning, a text query finds the matching picture and sound first
    found = report["search"]["a barking dog"]
    assert found["image"][0][0] == "dog" and found["audio"][0][0] == "dog"
    assert report["align"]["modalities"] == ["text", "image", "audio"]
    # then a recommender trained on the bundled interactions answers for a user, explained
    assert report["train"]["model"] == "twotower" and report["train"]["users"] == 16
    # on the same split, it ranks held-out items better than popularity does
    assert report["evaluate"]["ndcg@10"] > _most_popular_ndcg(out / "store", tmp_path)
    results = report["recommend"]["results"]
    seen = {"airplane", "door", "clock", "guitar", "trumpet", "bell", "fireworks", "telephone",
            "violin", "cymbal", "bicycle"}  # u03's history in assets/demo/interactions.csv
    assert len(results) == 5 and not seen & {r["id"] for r in results}
    assert all(r["explanation"]["history"] for r in results)
    # u03 plays five instruments: unseen instruments come up (MostPop's top 5 has none)
    category = _categories()
    assert sum(category[r["id"]] == "instruments" for r in results) >= 2

    _learns_structure(out / "model", tmp_path / "pop-history")

    again = runner.invoke(app, ["demo", "--out", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["encode"]["encoded"] == {"text": 0, "image": 0, "audio": 0}


def _learns_structure(model, pop):
    """Trained with the defaults (as the README's `mmrec train`), the demo's model
    recommends animals for a history of animals, unlike popularity: a model that stops
    before it learns anything (patience 5 stopped it at epoch 1 of 6) ranks like pop."""
    import mmrec
    from mmrec.query import Query
    from mmrec.recsys import TrainConfig
    from mmrec.resources import asset

    animals = {i for i, meta in Store.open(model.parent / "store").items().items()
               if meta["category"] == "animals"}
    mmrec.train(asset("demo/interactions.csv"), pop, config=TrainConfig(model="pop"))
    query = Query(history=["dog", "cat", "cow"], k=10)
    found = {name: len(animals & {h.id for h in mmrec.recommend(path, query)})
             for name, path in (("model", model), ("pop", pop))}
    assert found["model"] >= 4 and found["model"] >= found["pop"] + 2, found
