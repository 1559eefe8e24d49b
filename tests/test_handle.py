"""``mmrec.open``: a handle kept resident over many queries answers what a fresh one
(``mmrec.recommend``, one handle per call, as the CLI uses it) answers."""
from __future__ import annotations

import pytest

import mmrec
from mmrec.errors import ConfigError, UnknownIdError
from mmrec.query import Query
from serve_world import shared


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared(tmp_path_factory)


def same(a, b):
    assert [h.as_dict() for h in a] == [h.as_dict() for h in b]


ALIGNER_QUERIES = [
    Query(text="a red thing", k=5),
    Query(text="blue object 2", modality="image", k=3, explain=True),
    Query(items=["item3"], k=4),
    Query(items=["item1", "item2"], modality="text", k=6),
    Query(text="green", items=["item5"], modality="audio", k=2),
]


@pytest.fixture(scope="module")
def resident(world):
    """One aligner handle for every query of this module: answers must not drift."""
    return mmrec.open(world.aligner)


@pytest.mark.parametrize("query", ALIGNER_QUERIES, ids=lambda q: f"{q.modality}-{q.k}")
def test_aligner_handle_matches_recommend(world, resident, query):
    same(resident.ask(query), mmrec.recommend(world.aligner, query))


def test_encoders_load_on_first_use_only(world):
    """An item query (the CLI's quick path) loads no encoder; a text query loads the text
    one alone; ``warm`` loads them all up front, as ``mmrec serve`` does."""
    handle = mmrec.open(world.aligner)
    handle.ask(Query(items=["item3"], k=2))
    assert handle._encoders == {}
    handle.ask(Query(text="a red thing", k=2))
    assert {m for m, (_, loaded) in handle._encoders.items() if loaded} == {"text"}
    warm = mmrec.open(world.aligner, warm=True)
    assert {m for m, (_, loaded) in warm._encoders.items() if loaded} == set(warm.aligner.modalities)


def test_aligner_content_queries_from_files(world):
    handle = mmrec.open(world.aligner)
    for query in (Query(image=world.root / "cat" / "img" / "7.png", k=3),
                  Query(audio=world.root / "cat" / "snd" / "9.wav", modality="audio", k=3)):
        same(handle.ask(query), mmrec.recommend(world.aligner, query))


def test_aligner_batch_equals_one_by_one(world):
    handle = mmrec.open(world.aligner)
    batch = handle.search(ALIGNER_QUERIES)
    for query, hits in zip(ALIGNER_QUERIES, batch, strict=True):
        same(hits, handle.ask(query))
    assert [len(h) for h in batch] == [5, 3, 4, 6, 2]


MODEL_QUERIES = [
    Query(user="u0", k=5),
    Query(user="u3", k=4, explain=True),
    Query(user="u1", k=30, exclude_seen=False),
    Query(history=["item2", "item6"], k=5, explain=True),
    Query(items=["item4"], k=3),
]


@pytest.mark.parametrize("query", MODEL_QUERIES, ids=lambda q: f"{q.user}-{q.k}")
def test_model_handle_matches_recommend(world, query):
    handle = mmrec.open(world.model)
    same(handle.ask(query), mmrec.recommend(world.model, query))
    batch = handle.recommend([query, Query(user="u2", k=2)])
    same(batch[0], handle.ask(query))


def test_model_excludes_seen(world):
    handle = mmrec.open(world.model)
    seen = {line.split(",")[1] for line in world.inter.read_text().splitlines()[1:]
            if line.startswith("u0,")}
    ids = [h.id for h in handle.ask(Query(user="u0", k=30))]
    assert seen and not seen & set(ids)
    assert len(ids) == len(handle.ids()) - len(seen)


def test_unknown_ids_and_bad_k(world):
    aligner, model = mmrec.open(world.aligner), mmrec.open(world.model)
    with pytest.raises(UnknownIdError, match="nope"):
        aligner.ask(Query(items=["nope"]))
    with pytest.raises(UnknownIdError, match="ghost"):
        model.ask(Query(user="ghost"))
    with pytest.raises(UnknownIdError, match="nope"):
        model.ask(Query(history=["item1", "nope"]))
    with pytest.raises(ConfigError, match="at least 1"):
        aligner.ask(Query(text="x", k=0))
    with pytest.raises(ConfigError, match="trained model"):
        aligner.ask(Query(user="u0"))
    with pytest.raises(ConfigError, match="aligner"):
        model.ask(Query(text="red"))


def test_items_and_media_come_from_the_catalog(world):
    handle = mmrec.open(world.aligner)
    item = handle.item("item3")
    assert item["title"] == "A yellow thing, number 3"
    assert item["metadata"]["colour"] == "yellow" and item["media"] == ["audio", "image"]
    assert handle.media("item3", "image") == (world.root / "cat" / "img" / "3.png").resolve()
    assert mmrec.open(world.model).media("item1", "image").name == "1.png"
    with pytest.raises(UnknownIdError, match="no audio"):
        handle.media("item1", "audio")
    with pytest.raises(ConfigError, match="media must be"):
        handle.media("item1", "../../etc/passwd")
