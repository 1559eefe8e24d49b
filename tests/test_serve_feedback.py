"""``POST /feedback``: events journalled, applied in batches by ``mmrec update``'s code, and
the republished model answering for the new user without a restart."""
from __future__ import annotations

import shutil
import time

import pytest
from fastapi.testclient import TestClient

from mmrec.serve.app import create_app
from mmrec.serve.config import ServeConfig
from serve_world import shared

NEW_USER = [{"user": "newcomer", "item": f"item{i}", "rating": 5} for i in (0, 4, 8)]


@pytest.fixture()
def served(tmp_path_factory, tmp_path):
    world = shared(tmp_path_factory)
    model = tmp_path / "model"
    shutil.copytree(world.model, model)  # feedback republishes it: never the shared one
    config = ServeConfig([model], feedback_batch=3, feedback_seconds=3600)
    with TestClient(create_app(config)) as client:
        yield client, model


def wait_for(check, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_a_full_batch_is_folded_into_the_served_model(served):
    client, model = served
    assert client.post("/recommend", json={"user": "newcomer"}).status_code == 404
    first = client.post("/feedback", json={"events": NEW_USER[:2]})
    assert first.status_code == 200, first.text
    assert first.json() == {"name": "model", "accepted": 2, "pending": 2}
    assert client.post("/recommend", json={"user": "newcomer"}).status_code == 404  # not yet
    last = client.post("/feedback", json=NEW_USER[2])  # the third event fills the batch
    assert last.status_code == 200 and last.json()["accepted"] == 1
    assert wait_for(lambda: client.post("/recommend", json={"user": "newcomer"}).status_code == 200)
    answer = client.post("/recommend", json={"user": "newcomer", "k": 5}).json()["results"]
    assert not {"item0", "item4", "item8"} & {r["id"] for r in answer}  # its history is seen
    assert wait_for(lambda: client.get("/health").json()["served"][0]["reloads"] >= 1)
    assert (model.parent / "model.feedback" / "events.jsonl").read_text().count("\n") == 3


@pytest.mark.parametrize("body", [
    {"events": [{"user": "u1", "item": "item1"}, {"user": "u1"}]},  # one bad: none taken
    {"user": "u1", "item": "item1", "colour": "red"},
    [],
    "just text",
])
def test_bad_feedback_is_a_400_and_nothing_is_journalled(served, body):
    client, model = served
    response = client.post("/feedback", json=body)
    assert response.status_code == 400, response.text
    assert "\n" not in response.json()["error"]
    assert not (model.parent / "model.feedback" / "events.jsonl").exists()
    assert client.get("/health").status_code == 200
