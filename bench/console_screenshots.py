"""Screenshots of the console for the docs, after a few minutes of realistic traffic (not a benchmark).

Starts a node, deploys three functions, sends varying traffic (with some errors and cold starts) for
`--seconds`, then saves PNGs of the main pages to docs/img/ with headless Chromium (Playwright).

    .venv/bin/python bench/console_screenshots.py --seconds 150
"""

from __future__ import annotations

import argparse
import math
import random
import threading
import time
import urllib.request
from pathlib import Path

from _common import REPO, PolyfnServer

HELLO = '''
def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    print("greeting", name)
    return {"hello": name}
'''
RESIZE = '''
import random, time
def handler(event, context):
    time.sleep(random.random() * 0.02)
    if random.random() < 0.08:
        raise ValueError("image too large: 12000x9000")
    print("resized", event.get("key", "photo.jpg") if isinstance(event, dict) else "photo.jpg")
    return {"ok": True}
'''
REVERSE = "def handle(req):\n    return req[::-1]\n"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def traffic(srv: PolyfnServer, seconds: float) -> None:
    stop = time.monotonic() + seconds
    t0 = time.monotonic()

    def worker(name: str, path: str, body: bytes, base_rate: float) -> None:
        while time.monotonic() < stop:
            phase = (time.monotonic() - t0) / 40
            rate = base_rate * (1.2 + math.sin(phase))
            req = urllib.request.Request(srv.url(path), data=body, method="POST",
                                         headers={"content-type": "application/json",
                                                  "authorization": f"Bearer {srv.key}"})
            try:
                urllib.request.urlopen(req, timeout=10).read()
            except Exception:
                pass
            time.sleep(random.expovariate(max(rate, 0.1)))

    threads = [threading.Thread(target=worker, args=a, daemon=True) for a in (
        ("hello", "/v1/functions/hello/invoke", b'{"name": "docs"}', 12),
        ("resize", "/v1/functions/resize/invoke", b'{"key": "cat.jpg"}', 5),
        ("reverse", "/fn/reverse", b"hello", 3),
    )]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=150)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with PolyfnServer(log_level="WARNING") as srv:
        srv.deploy("hello", {"handler.py": HELLO})
        srv.deploy("resize", {"handler.py": RESIZE}, concurrency=4)
        srv.deploy("reverse", {"handler.py": REVERSE}, keepalive=20)
        traffic(srv, args.seconds)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=args.chromium, args=ARGS)
            page = b.new_page(base_url=srv.url(""), viewport={"width": 1280, "height": 900})
            page.goto("/console/login")
            page.fill("#key", srv.key)
            page.click("#login-form button[type=submit]")
            page.wait_for_url("**/console/functions")
            page.screenshot(path=str(args.out / "console-functions.png"), full_page=True)
            page.goto("/console/functions/resize")
            page.fill("#payload", '{"key": "dog.jpg"}')
            page.click("#invoke-button")
            page.wait_for_selector("#invoke-status")
            page.wait_for_selector("#charts svg polyline")
            page.screenshot(path=str(args.out / "console-function.png"), full_page=True)
            page.goto("/console/activations?function=resize")
            page.screenshot(path=str(args.out / "console-activations.png"), full_page=False)
            page.goto("/console/activations?function=resize&status=error")
            page.locator("#activation-rows a").first.click()
            page.wait_for_selector("#act-status")
            page.screenshot(path=str(args.out / "console-activation.png"), full_page=True)
            page.goto("/console/deploy")
            page.fill("#name", "thumbnail")
            page.fill("#code", HELLO.strip())
            page.screenshot(path=str(args.out / "console-deploy.png"), full_page=True)
            phone = b.new_page(base_url=srv.url(""), viewport={"width": 375, "height": 740}, is_mobile=True)
            phone.context.add_cookies(page.context.cookies())
            phone.goto("/console/functions/hello")
            phone.wait_for_selector("#charts svg polyline")
            phone.screenshot(path=str(args.out / "console-phone.png"), full_page=False)
            b.close()
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
