"""`mmrec serve` as a real process on a free port, and its page in a headless Chromium."""
from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from mmrec.cli.main import app as cli
from serve_world import shared

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared(tmp_path_factory)


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    """``mmrec serve ALIGNER MODEL`` in its own process, until the module's tests end."""
    port = free_port()
    log = (tmp_path_factory.mktemp("serve-log") / "server.log").open("w")
    env = {**os.environ, "MMREC_HOME": str(world.root / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "mmrec.cli.main", "serve", str(world.aligner),
                             str(world.model), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"the server did not come up: {open(log.name).read()[-2000:]}")
    yield base
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def cli_ids(path, *args):
    result = CliRunner().invoke(cli, ["recommend", str(path), *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return [r["id"] for r in json.loads(result.stdout)["results"]]


def test_real_server_answers_concurrent_clients(server, world):
    bodies = [("/search", {"text": "a green thing", "k": 5}), ("/search", {"item": "item2"}),
              ("/recommend", {"user": "u4", "k": 3}), ("/search", b"{oops")] * 25

    def send(job):
        path, body = job
        kw = {"content": body} if isinstance(body, bytes) else {"json": body}
        return httpx.post(server + path, timeout=30, **kw).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, bodies))
    assert statuses.count(200) == 75 and statuses.count(400) == 25
    found = httpx.post(f"{server}/search", json={"text": "a green thing", "k": 5}).json()
    assert [r["id"] for r in found["results"]] == cli_ids(world.aligner, "--text", "a green thing", "-k", 5)
    metrics = httpx.get(f"{server}/metrics").text
    assert 'endpoint="/search",status="400"} 25' in metrics


def test_cli_refuses_an_open_bind_without_token(world):
    proc = subprocess.run([sys.executable, "-m", "mmrec.cli.main", "serve", str(world.aligner),
                           "--host", "0.0.0.0", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ")
    assert "--token" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def browser():
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (.ci/run installs it with apt)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.outside = []  # any request leaving the server: the page must work offline
    page.on("request", lambda r: r.url.startswith(server) or page.outside.append(r.url))
    yield page
    context.close()


def wait_js(page, script, arg=None, seconds=15.0):
    """Poll ``script`` with page.evaluate: the page's CSP forbids the eval that
    wait_for_function's in-page polling needs."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(script, arg):
        assert time.monotonic() < deadline, f"timed out waiting for {script}"
        time.sleep(0.05)


def cards(page):
    page.wait_for_selector("#results .card", timeout=15000)
    wait_js(page, "() => [...document.querySelectorAll('#results img')].every(i => i.complete)")
    return page.eval_on_selector_all("#results .card", """cards => cards.map(c => ({
        id: c.dataset.id, title: c.querySelector('.title').textContent,
        image: c.querySelector('img') ? c.querySelector('img').naturalWidth : 0,
        audio: !!c.querySelector('audio'), why: (c.querySelector('.why') || {}).textContent}))""")


def test_page_runs_the_search_in_its_url(page, server, world):
    page.goto(f"{server}/?q=a%20blue%20thing&modality=image")
    shown = cards(page)
    assert [c["id"] for c in shown] == cli_ids(world.aligner, "--text", "a blue thing",
                                               "--modality", "image", "-k", 12)
    assert all(c["image"] == 64 for c in shown)  # every picture decoded at its real size
    assert {c["id"] for c in shown if c["audio"]} == {c["id"] for c in shown
                                                      if int(c["id"][4:]) % 3 == 0}
    assert page.input_value("#q") == "a blue thing" and page.input_value("#modality") == "image"
    assert "results from aligner" in page.inner_text("#status")
    # the first item's sound really plays: decoded at its length (0.5 s), and time moves
    page.evaluate("() => { const a = document.querySelector('#results audio'); a.muted = true; a.play(); }")
    wait_js(page, "() => document.querySelector('#results audio').currentTime > 0.05")
    duration = page.evaluate("() => document.querySelector('#results audio').duration")
    assert abs(duration - 0.5) < 0.05, duration
    assert page.outside == []


def test_page_searches_by_typed_text_and_uploaded_image(page, server, world):
    page.goto(server)
    page.fill("#q", "a red thing")
    page.click("#search-form button.go")
    shown = cards(page)
    assert [c["id"] for c in shown] == cli_ids(world.aligner, "--text", "a red thing", "-k", 12)
    assert "q=a+red+thing" in page.url  # the search is now a link to share
    page.fill("#q", "")
    page.set_input_files("#image", str(world.root / "cat" / "img" / "6.png"))
    page.click("#search-form button.go")
    wait_js(page, "first => document.querySelector('#results .card').dataset.id !== first",
            shown[0]["id"])
    image_ids = [c["id"] for c in cards(page)]
    assert image_ids == cli_ids(world.aligner, "--image", world.root / "cat" / "img" / "6.png", "-k", 12)


def test_page_recommends_for_a_user_with_explanations(page, server, world):
    page.goto(f"{server}/?user=u2&k=5")
    shown = cards(page)
    assert [c["id"] for c in shown] == cli_ids(world.model, "--user", "u2", "-k", 5)
    assert all("history" in c["why"] for c in shown)
    page.select_option("#rec-mode", "user")
    page.fill("#rec-input", "nobody")
    page.click("#recommend-form button.go")
    page.wait_for_selector("#status.error", timeout=15000)
    assert "unknown user 'nobody'" in page.inner_text("#status")
    assert page.locator("#results .card").count() == 0
