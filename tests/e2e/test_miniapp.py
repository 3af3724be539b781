"""The photo-notes demo (examples/miniapp) in headless Chromium with a phone's viewport: deployed with its own
deploy.sh, the page signs in anonymously, takes a photo from the file picker, saves the note in the `notes`
collection and uploads the photo, the storage trigger makes the thumbnail and marks the note, and the list
(a `watch()`) shows it, in this tab and live in another tab of the same user. A second user sees none of it.
POLYFN_SCREENSHOTS=docs/img refreshes the screenshots in docs/apps.md."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, Server, start_server

DEMO = REPO / "examples" / "miniapp"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True,
         "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
                       "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.40"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-miniapp"))
    env = {**os.environ, "POLYFN_DATA_DIR": str(s.data_dir), "NO_COLOR": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("POLYFN_URL", None)
    env.pop("POLYFN_API_KEY", None)
    r = subprocess.run([str(DEMO / "deploy.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path("/usr/bin/chromium").exists():
        _unavailable("no /usr/bin/chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        yield b
        b.close()


def photo() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (1200, 900), (30, 140, 220))
    draw = ImageDraw.Draw(img)
    draw.ellipse((350, 200, 850, 700), fill=(255, 200, 40))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def shoot(page: Any, name: str) -> None:
    where = os.environ.get("POLYFN_SCREENSHOTS")
    if where:
        page.screenshot(path=str(REPO / where / f"miniapp-{name}.png"))


@pytest.mark.timeout(600)  # many real clients and processes in one test: slow on a loaded machine
def test_photo_notes_on_a_phone(node: Server, browser: Any) -> None:
    ctx = browser.new_context(**PHONE)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{node.url}/sites/photo-notes/")
    page.wait_for_function("document.getElementById('who').textContent.startsWith('signed in anonymously')",
                           timeout=60_000)
    uid_prefix = page.text_content("#who").split(" as ")[1].rstrip("…")
    shoot(page, "1-signed-in")
    # the same user in a second tab (the session is shared through localStorage): it only watches
    tab = ctx.new_page()
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(f"{node.url}/sites/photo-notes/")
    tab.wait_for_function(f"document.getElementById('who').textContent.includes('{uid_prefix}')", timeout=60_000)
    page.set_input_files("#photo", files=[{"name": "sunrise.png", "mimeType": "image/png", "buffer": photo()}])
    page.fill("#text", "sunrise over the lake")
    shoot(page, "2-compose")
    page.click("#save")
    page.wait_for_selector("#notes li", timeout=60_000)
    assert "sunrise over the lake" in page.text_content("#notes li")
    # the storage trigger makes the thumbnail; the list picks it up by itself
    page.wait_for_selector("#notes li[data-ready=true] img", timeout=90_000)
    natural = page.eval_on_selector("#notes li img", "img => [img.naturalWidth, img.naturalHeight]")
    assert max(natural) == 200 and natural[0] > 0  # 1200×900 → 200×150
    shoot(page, "3-note-with-thumbnail")
    # the other tab never reloaded or polled: the note and its thumbnail arrived through watch()
    tab.wait_for_selector("#notes li[data-ready=true] img", timeout=60_000)
    assert "sunrise over the lake" in tab.text_content("#notes li")
    assert errors == [], errors
    assert not page.is_visible("#error")

    # another phone, another anonymous user: none of the first user's notes
    other = browser.new_context(**PHONE).new_page()
    other.goto(f"{node.url}/sites/photo-notes/")
    other.wait_for_function("document.getElementById('who').textContent.startsWith('signed in anonymously')",
                            timeout=60_000)
    assert uid_prefix not in other.text_content("#who")
    # its own note shows up (so its watch is live), the first user's never do
    other.set_input_files("#photo", files=[{"name": "mine.png", "mimeType": "image/png", "buffer": photo()}])
    other.fill("#text", "the other user's note")
    other.click("#save")
    other.wait_for_selector("#notes li", timeout=60_000)
    assert other.locator("#notes li").count() == 1
    assert "the other user's note" in other.text_content("#notes li")
    ctx.close()
