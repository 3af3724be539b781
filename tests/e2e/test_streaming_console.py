"""The console's invoke panel shows a streamed response live (issue #22): with "stream" ticked, the first piece
is on the page while the function still runs, the rest follows, then "done"."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from .conftest import Server
from .test_console_browser import browser, login, page  # noqa: F401 (fixtures)

HOST_FS = True  # the function waits for a file the test writes in the host's /tmp

WAITER = '''import os, time

def handler(event, context):
    def chunks():
        yield "first piece\\n"
        while not os.path.exists(event["go"]):
            time.sleep(0.01)
        yield "second piece\\n"
    return chunks()
'''


def test_the_invoke_panel_shows_a_stream_as_it_comes(page: Any, server: Server) -> None:  # noqa: F811
    from playwright.sync_api import expect

    server.deploy("console-stream", {"handler.py": WAITER})
    go = f"/tmp/polyfn-stream-go-{uuid.uuid4().hex}"
    try:
        login(page, server)
        page.goto("/console/functions/console-stream")
        page.fill("#payload", f'{{"go": "{go}"}}')
        page.check("#invoke-stream")
        page.click("#invoke-button")
        expect(page.locator("#invoke-stream-body")).to_have_text("first piece\n")  # the function still waits
        expect(page.locator("#invoke-stream-status")).to_contain_text("streaming")
        Path(go).touch()
        expect(page.locator("#invoke-stream-status")).to_have_attribute("data-state", "done")
        assert page.inner_text("#invoke-stream-body") == "first piece\nsecond piece\n"
        assert "HTTP 200 · activation" in page.inner_text("#invoke-stream-status")
    finally:
        if os.path.exists(go):
            os.unlink(go)
