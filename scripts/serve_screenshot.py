"""Take the README's screenshot of the serve page, in the same headless Chromium the tests use.

    mmrec demo                       # builds ~/.cache/mmrec/demo/{aligner,model}
    python scripts/serve_screenshot.py [DEMO_DIR] [--out docs/serve.png]

Serves the demo's aligner and model on a free loopback port, opens the page with a
search in its URL, waits for every picture, and saves a PNG.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from mmrec.demo import home
from mmrec.serve.app import create_app
from mmrec.serve.config import ServeConfig

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def start(demo: Path) -> tuple[uvicorn.Server, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ServeConfig([demo / "aligner", demo / "model"], port=port))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def shrink(path: Path) -> None:
    """A 256-colour PNG: a README picture should not weigh more than the code it shows."""
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(256)
    small.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("demo", nargs="?", type=Path, default=home() / "demo")
    parser.add_argument("--out", type=Path, default=Path("docs/serve.png"))
    parser.add_argument("--query", default="a barking dog")
    args = parser.parse_args()
    server, base = start(args.demo)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            page = browser.new_page(viewport={"width": 960, "height": 600})
            page.goto(f"{base}/?q={args.query}&modality=image&k=8")
            page.wait_for_selector("#results .card")
            while not page.evaluate("() => [...document.images].every(i => i.complete && i.naturalWidth)"):
                time.sleep(0.05)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
        shrink(args.out)
    finally:
        server.should_exit = True
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
