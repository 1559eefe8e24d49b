"""The HTTP API through FastAPI's TestClient: every endpoint, every bad request, CLI parity."""
from __future__ import annotations

import base64
import json
import shutil
import threading

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mmrec.cli.main import app as cli
from mmrec.errors import ConfigError
from mmrec.serve.app import create_app
from mmrec.serve.config import ServeConfig
from serve_world import invoke, shared


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared(tmp_path_factory)


@pytest.fixture(scope="module")
def client(world):
    with TestClient(create_app(ServeConfig([world.aligner, world.model]))) as c:
        yield c


def cli_json(*args):
    result = CliRunner().invoke(cli, ["recommend", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["results"]


def without_media(results):
    return [{k: v for k, v in r.items() if k != "media"} for r in results]


def b64(path):
    return base64.b64encode(path.read_bytes()).decode()


def test_health_lists_what_is_served(client):
    body = client.get("/health").json()
    assert body["status"] == "ok"
    kinds = {s["name"]: s["kind"] for s in body["served"]}
    assert kinds == {"aligner": "aligner", "model": "model"}
    assert all(s["media"] for s in body["served"])


@pytest.mark.parametrize(("body", "args"), [
    ({"text": "a red thing", "k": 5}, ["--text", "a red thing", "-k", 5]),
    ({"text": "blue", "modality": "image", "k": 4, "explain": True},
     ["--text", "blue", "--modality", "image", "-k", 4, "--explain"]),
    ({"item": "item3", "k": 6}, ["--item", "item3", "-k", 6]),
    ({"items": ["item1", "item2"], "modality": "text"}, ["--item", "item1", "--item", "item2",
                                                         "--modality", "text"]),
])
def test_search_matches_the_cli(client, world, body, args):
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert without_media(results) == cli_json(world.aligner, *args)
    assert results and all(r["media"]["image"].startswith("/items/") for r in results)


@pytest.mark.parametrize(("field", "file", "modality"), [("image", "img/5.png", "fused"),
                                                          ("audio", "snd/9.wav", "audio")])
def test_search_by_uploaded_file_matches_the_cli(client, world, field, file, modality):
    path = world.root / "cat" / file
    response = client.post("/search", json={field: b64(path), "modality": modality, "k": 4})
    assert response.status_code == 200, response.text
    expected = cli_json(world.aligner, f"--{field}", path, "--modality", modality, "-k", 4)
    assert without_media(response.json()["results"]) == expected


@pytest.mark.parametrize(("body", "args"), [
    ({"user": "u0", "k": 5}, ["--user", "u0", "-k", 5]),
    ({"user": "u3", "explain": True}, ["--user", "u3", "--explain"]),
    ({"history": ["item2", "item6"], "k": 4}, ["--history", "item2,item6", "-k", 4]),
    ({"user": "u1", "include_seen": True, "k": 30}, ["--user", "u1", "--include-seen", "-k", 30]),
])
def test_recommend_matches_the_cli(client, world, body, args):
    response = client.post("/recommend", json=body)
    assert response.status_code == 200, response.text
    assert without_media(response.json()["results"]) == cli_json(world.model, *args)


def test_recommend_excludes_seen_and_explains(client, world):
    seen = {line.split(",")[1] for line in world.inter.read_text().splitlines()[1:]
            if line.startswith("u0,")}
    results = client.post("/recommend", json={"user": "u0", "k": 30, "explain": True}).json()["results"]
    assert seen and not seen & {r["id"] for r in results}
    assert all(r["explanation"] for r in results)


def test_items_and_their_media(client, world):
    item = client.get("/items/item3").json()
    assert item["title"] == "A yellow thing, number 3" and item["metadata"]["colour"] == "yellow"
    assert set(item["media"]) == {"image", "audio"}
    image = client.get(item["media"]["image"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == (world.root / "cat" / "img" / "3.png").read_bytes()
    audio = client.get("/items/item3/audio")
    assert audio.status_code == 200 and audio.content == (world.root / "cat" / "snd" / "3.wav").read_bytes()


@pytest.mark.parametrize("path", [
    "/items/item1/audio",  # the catalog names no sound for it
    "/items/nope", "/items/nope/image",
    "/items/..%2F..%2Fcat%2Fimg%2F1.png/image", "/items/item1/image?name=..",
    "/items/%2Fetc%2Fpasswd/image", "/nothing-here",
])
def test_what_the_catalog_does_not_name_is_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert set(response.json()) <= {"error", "hint"} and "\n" not in response.json()["error"]


PNG_1X1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")
BAD = [
    ("/search", b"{not json", 400, "not valid JSON"),
    ("/search", b"[1, 2]", 400, "JSON object"),
    ("/search", {}, 400, "nothing to search for"),
    ("/search", {"text": "   "}, 400, "empty"),
    ("/search", {"item": "nope"}, 404, "nope"),
    ("/search", {"text": "x", "k": 0}, 400, '"k"'),
    ("/search", {"text": "x", "k": 100000}, 400, '"k"'),
    ("/search", {"text": "x", "k": "5"}, 400, '"k"'),
    ("/search", {"text": "x", "modality": "smell"}, 400, "fused"),
    ("/search", {"text": "x", "colour": "red"}, 400, "unknown field"),
    ("/search", {"image": "%%% not base64"}, 400, "base64"),
    ("/search", {"image": base64.b64encode(b"GIF89a but not really").decode()}, 400, "not an image"),
    ("/search", {"audio": base64.b64encode(b"RIFF....WAVE garbage").decode()}, 400, "audio"),
    ("/search", {"text": "x", "name": "model"}, 404, "no aligner named"),
    ("/search", {"user": "u0"}, 400, "unknown field"),
    ("/recommend", {}, 400, "nothing to recommend"),
    ("/recommend", {"user": "ghost"}, 404, "ghost"),
    ("/recommend", {"history": ["item1", "nope"]}, 404, "nope"),
    ("/recommend", {"history": "item1,item2"}, 404, "item1,item2"),
    ("/recommend", {"user": "u0", "history": ["item1"]}, 400, "not"),
    ("/recommend", {"user": 7}, 400, "string"),
    ("/recommend", {"user": "u0", "explain": "yes"}, 400, "true or false"),
]


@pytest.mark.parametrize(("path", "body", "status", "needle"), BAD, ids=[f"{b[0]}-{n}" for n, b in enumerate(BAD)])
def test_bad_requests_get_one_line_4xx(client, path, body, status, needle):
    if isinstance(body, bytes):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        response = client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error and "\n" not in error and "Traceback" not in response.text
    assert "mmrec-upload-" not in error  # the upload's temporary file is never named
    assert client.get("/health").status_code == 200


def test_limits_answer_413(world):
    config = ServeConfig([world.aligner], max_body=2048, max_pixels=100)
    with TestClient(create_app(config)) as c:
        big = c.post("/search", json={"text": "x" * 4096})
        assert big.status_code == 413 and "limit" in big.json()["error"]
        image = c.post("/search", json={"image": b64(world.root / "cat" / "img" / "1.png")})
        assert image.status_code == 413 and "64x64 pixels" in image.json()["error"]
        tiny = c.post("/search", json={"image": PNG_1X1, "k": 2})
        assert tiny.status_code == 200 and len(tiny.json()["results"]) == 2


def test_metrics_count_requests_and_latency(world):
    with TestClient(create_app(ServeConfig([world.aligner]))) as c:
        for _ in range(3):
            c.post("/search", json={"text": "red"})
        c.post("/search", json={})
        text = c.get("/metrics").text
    assert 'mmrec_requests_total{method="POST",endpoint="/search",status="200"} 3' in text
    assert 'mmrec_requests_total{method="POST",endpoint="/search",status="400"} 1' in text
    assert 'mmrec_request_seconds_count{endpoint="/search"} 4' in text
    assert 'mmrec_request_seconds_bucket{endpoint="/search",le="+Inf"} 4' in text


def test_several_aligners_are_picked_by_name(world, tmp_path):
    other = tmp_path / "second"
    shutil.copytree(world.aligner, other)
    with TestClient(create_app(ServeConfig([world.aligner, other]))) as c:
        unnamed = c.post("/search", json={"text": "red"})
        assert unnamed.status_code == 400 and "second" in unnamed.json()["error"]
        named = c.post("/search", json={"text": "red", "name": "second"})
        assert named.status_code == 200 and named.json()["name"] == "second"
        assert "name=second" in named.json()["results"][0]["media"]["image"]
    with pytest.raises(ConfigError, match="named"):
        create_app(ServeConfig([world.aligner, world.aligner]))


def test_token_guards_everything_but_the_page(world):
    with TestClient(create_app(ServeConfig([world.aligner], token="s3cret-token"))) as c:
        assert c.get("/health").status_code == 401
        assert c.post("/search", json={"text": "red"}).status_code == 401
        assert c.get("/health", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert c.get("/health", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        c.cookies.set("mmrec_token", "s3cret-token")
        assert c.get("/items/item1/image").status_code == 200
        assert c.get("/").status_code == 200


def test_safe_defaults(world):
    with pytest.raises(ConfigError, match="--token"):
        create_app(ServeConfig([world.aligner], host="0.0.0.0"))
    result = CliRunner().invoke(cli, ["serve", str(world.aligner), "--host", "0.0.0.0"])
    assert result.exit_code == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.output
    with TestClient(create_app(ServeConfig([world.aligner]))) as c:
        response = c.get("/health", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in response.headers
    with TestClient(create_app(ServeConfig([world.aligner], cors=["http://shop.example"]))) as c:
        response = c.get("/health", headers={"Origin": "http://shop.example"})
        assert response.headers["access-control-allow-origin"] == "http://shop.example"


def test_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and "<form" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, no web font
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_republished_directory_is_picked_up_without_dropping_requests(world, tmp_path):
    import time

    import mmrec
    from mmrec.query import Query

    live = tmp_path / "live"
    shutil.copytree(world.aligner, live)
    with TestClient(create_app(ServeConfig([live]))) as c:
        before = c.post("/search", json={"text": "red", "k": 5}).json()["results"]
        statuses, stop = [], threading.Event()

        def hammer():
            while not stop.is_set() and len(statuses) < 2000:
                statuses.append(c.post("/search", json={"text": "red", "k": 5}).status_code)

        thread = threading.Thread(target=hammer)
        thread.start()
        invoke("align", world.store, "--out", live, "--steps", "3", "--batch-size", "8", "--seed", "7")
        deadline = time.monotonic() + 20
        while c.get("/health").json()["served"][0]["reloads"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join()
        after = c.post("/search", json={"text": "red", "k": 5}).json()["results"]
    assert statuses and set(statuses) == {200}
    expected = [h.as_dict() for h in mmrec.recommend(live, Query(text="red", k=5))]
    assert without_media(after) == expected and after != before


def test_a_broken_republish_keeps_the_old_directory_serving(world, tmp_path):
    import time

    from mmrec.atomic import publish_dir

    live = tmp_path / "live"
    shutil.copytree(world.aligner, live)
    with TestClient(create_app(ServeConfig([live]))) as c:
        before = c.post("/search", json={"text": "red", "k": 3}).json()["results"]
        broken = tmp_path / ".broken"
        broken.mkdir()
        (broken / "config.json").write_text("{ half a file")
        publish_dir(broken, live)
        deadline = time.monotonic() + 20
        while "error" not in c.get("/health").json()["served"][0] and time.monotonic() < deadline:
            time.sleep(0.05)
        served = c.get("/health").json()["served"][0]
        assert "reload failed" in served["error"] and served["reloads"] == 0
        again = c.post("/search", json={"text": "red", "k": 3})
        assert again.status_code == 200 and again.json()["results"] == before


def test_cli_passes_options_and_takes_the_token_from_the_environment(world, monkeypatch):
    import mmrec.serve.app

    seen = []
    monkeypatch.setattr(mmrec.serve.app, "serve", seen.append)
    monkeypatch.setenv("MMREC_TOKEN", "from-the-env")
    result = CliRunner().invoke(cli, ["serve", str(world.aligner), str(world.model), "--host",
                                      "0.0.0.0", "--port", "9123", "--cors", "http://a.example",
                                      "--max-body-mb", "1"])
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert config.token == "from-the-env" and config.port == 9123 and config.host == "0.0.0.0"
    assert config.cors == ["http://a.example"] and config.max_body == 1 << 20
    assert config.paths == [world.aligner, world.model]
