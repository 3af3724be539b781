"""The web console in a real headless Chromium (Debian's `chromium`, driven by Playwright for Python).

Skips with a reason when Chromium or Playwright is missing (`make test` installs both as root), fails
under CI=true. Set POLYFN_SCREENSHOTS=docs/img to refresh the README's screenshots.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails under CI) with the reason
    expect = None  # type: ignore[assignment]

from .conftest import REPO, Server

CHROMIUM = os.environ.get("POLYFN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

HELLO = '''
def handler(event, context):
    print("hello from", context.function_name, "name=" + str(event.get("name")))
    return {"hello": event.get("name", "world")}
'''

EVIL = '''
def handler(event, context):
    print("<script>window.__pwned = 'log'</script>")
    print("<img src=x onerror=\\"window.__pwned='img-log'\\">")
    if event.get("fail"):
        raise ValueError("<script>window.__pwned = 'error'</script>")
    return "<script>window.__pwned = 'result'</script><img src=x onerror=\\"window.__pwned='img'\\">"
'''

HUGE = '''
def handler(event, context):
    return "0123456789" * 20000
'''


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        _unavailable(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        except Exception as e:  # e.g. missing shared libraries
            _unavailable(f"chromium does not start: {e}")
        yield b
        b.close()


def shots_dir(tmp_path: Path) -> Path:
    target = os.environ.get("POLYFN_SCREENSHOTS")
    d = (REPO / target) if target else tmp_path
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def page(browser: Any, server: Server, request: pytest.FixtureRequest) -> Iterator[Any]:
    # The XSS test bypasses the console's Content-Security-Policy: escaping must hold on its own.
    bypass = request.node.get_closest_marker("bypass_csp") is not None
    ctx = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900}, accept_downloads=True,
                              bypass_csp=bypass)
    pg = ctx.new_page()
    pg.set_default_timeout(20_000)
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs  # type: ignore[attr-defined]
    yield pg
    ctx.close()


def login(page: Any, server: Server) -> None:
    page.goto("/console/login")
    page.fill("#key", server.key)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/console/functions")


def test_login_wrong_key_then_right_key(page: Any, server: Server) -> None:
    page.goto("/console/functions")
    assert "/console/login" in page.url  # no session: the login page
    page.fill("#key", "pfk_wrong")
    page.click("#login-form button[type=submit]")
    assert "not this node's API key" in page.inner_text("#login-error")
    page.fill("#key", server.key)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/console/functions")
    cookie = next(c for c in page.context.cookies() if c["name"] == "polyfn_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert page.evaluate("document.cookie") == ""  # invisible to scripts


def test_deploy_paste_invoke_and_see_result_logs_timings(page: Any, server: Server, tmp_path: Path) -> None:
    login(page, server)
    page.goto("/console/deploy")
    page.fill("#name", "hello-ui")
    page.fill("#code", HELLO)
    shots = shots_dir(tmp_path)
    page.screenshot(path=str(shots / "console-deploy.png"), full_page=True)
    page.click("#deploy-button")
    page.wait_for_url("**/console/functions/hello-ui")
    assert page.inner_text("#fn-name") == "hello-ui"
    expect(page.locator("#live-state")).to_have_text("live")

    # malformed JSON: an inline error, and nothing is sent
    page.fill("#payload", '{"name": ')
    page.click("#invoke-button")
    assert page.is_visible("#payload-error")
    assert "Malformed JSON" in page.inner_text("#payload-error")
    assert page.inner_text("#invoke-result") == ""

    page.fill("#payload", '{"name": "browser"}')
    page.click("#invoke-button")
    page.wait_for_selector("#invoke-status")
    assert page.is_hidden("#payload-error")
    assert page.inner_text("#invoke-status") == "HTTP 200"
    assert '"hello": "browser"' in page.inner_text("#invoke-body")
    assert "hello from hello-ui name=browser" in page.inner_text("#invoke-logs")
    assert "total" in page.inner_text("#invoke-timings") and "init" in page.inner_text("#invoke-timings")
    # the same line arrived over the live log stream
    expect(page.locator("#live-logs")).to_contain_text("name=browser")
    for _ in range(3):
        page.click("#invoke-button")
        page.wait_for_selector("#invoke-status")
    page.goto("/console/functions/hello-ui")
    page.wait_for_selector("#charts svg polyline")
    assert page.locator("#charts figure").count() == 5
    page.screenshot(path=str(shots / "console-function.png"), full_page=True)

    page.goto("/console/functions")
    row = page.locator("#functions tr", has_text="hello-ui")
    assert "healthy" in row.inner_text()
    page.screenshot(path=str(shots / "console-functions.png"), full_page=True)

    # the activation page shows the record
    page.goto("/console/activations?function=hello-ui")
    page.screenshot(path=str(shots / "console-activations.png"), full_page=True)
    page.locator("#activation-rows a").first.click()
    page.wait_for_selector("#act-status")
    assert page.inner_text("#act-status") == "success"
    assert "hello from hello-ui" in page.inner_text("#act-logs")
    page.screenshot(path=str(shots / "console-activation.png"), full_page=True)


@pytest.mark.bypass_csp
def test_function_output_cannot_run_script(page: Any, server: Server) -> None:
    server.deploy("evil-ui", {"handler.py": EVIL})
    login(page, server)
    page.goto("/console/functions/evil-ui")
    expect(page.locator("#live-state")).to_have_text("live")
    page.fill("#payload", "{}")
    page.click("#invoke-button")
    page.wait_for_selector("#invoke-body")
    assert "<script>window.__pwned = 'result'</script>" in page.inner_text("#invoke-body")
    assert "<script>window.__pwned = 'log'</script>" in page.inner_text("#invoke-logs")
    expect(page.locator("#live-logs")).to_contain_text("<img src=x")
    page.fill("#payload", '{"fail": true}')
    page.click("#invoke-button")
    page.wait_for_selector("#invoke-status >> text=HTTP 500")
    page.wait_for_timeout(300)  # give any injected handler (onerror) a chance to fire
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#invoke-result script, #live-logs script, #live-logs img, #invoke-result img").count() == 0

    aid = page.get_attribute("#invoke-activation", "href").rsplit("/", 1)[1]
    page.goto(f"/console/activations/{aid}")
    assert "<script>window.__pwned = 'error'</script>" in page.inner_text("#act-error")
    page.goto("/console/activations?function=evil-ui")
    page.goto("/console/functions")
    page.wait_for_timeout(200)
    assert page.evaluate("window.__pwned") is None
    assert page.dialogs == []  # type: ignore[attr-defined]


@pytest.mark.bypass_csp
def test_add_and_remove_a_cron_trigger(page: Any, server: Server, tmp_path: Path) -> None:
    """The triggers panel: malformed options and bad input are flagged inline (escaped, even without the CSP),
    a cron trigger is added and listed with its health and next fire time, then removed."""
    server.deploy("cron-ui", {"handler.py": HELLO})
    login(page, server)
    page.goto("/console/functions/cron-ui")
    expect(page.locator("#trigger-table")).to_contain_text("/fn/cron-ui")
    assert page.locator(".trigger-row").count() == 0

    page.select_option("#trigger-kind", "cron")
    page.fill("#trigger-options", '{"schedule": "*/5 * * *')
    page.click("#trigger-add")
    expect(page.locator("#trigger-error")).to_contain_text("Malformed JSON")
    page.fill("#trigger-options", '{"schedule": "<img src=x onerror=\\"window.__pwned=1\\">"}')
    page.click("#trigger-add")
    expect(page.locator("#trigger-error")).to_contain_text("<img src=x")
    assert page.locator("#trigger-panel img").count() == 0

    page.fill("#trigger-options", '{"schedule": "0 3 * * *", "timezone": "Asia/Shanghai", "data": {"job": "nightly"}}')
    page.fill("#trigger-id", "nightly-ui")
    page.click("#trigger-add")
    expect(page.locator("#trigger-notice")).to_have_text("added trigger nightly-ui")
    row = page.locator('.trigger-row[data-trigger-id="nightly-ui"]')
    expect(row.locator(".trigger-health")).to_have_text("scheduled")
    expect(row.locator(".trigger-next")).to_contain_text("03:00:00+08:00")
    expect(row.locator(".trigger-config")).to_contain_text('"schedule": "0 3 * * *"')
    assert server.api.get("/v1/triggers/nightly-ui").json()["kind"] == "cron"
    page.reload()  # rendered on the server as well, not only after the htmx swap
    expect(page.locator('.trigger-row[data-trigger-id="nightly-ui"] .trigger-health')).to_have_text("scheduled")
    page.locator("#triggers").screenshot(path=str(shots_dir(tmp_path) / "console-triggers.png"))

    page.locator('.trigger-row[data-trigger-id="nightly-ui"] .trigger-remove').click()
    expect(page.locator("#trigger-notice")).to_have_text("removed trigger nightly-ui")
    assert page.locator(".trigger-row").count() == 0
    assert server.api.get("/v1/triggers/nightly-ui").status_code == 404
    assert page.evaluate("window.__pwned") is None


def test_unknown_ids_get_a_404_page(page: Any, server: Server) -> None:
    login(page, server)
    for path, text in (("/console/activations/0123456789abcdef", "There is no activation"),
                       ("/console/functions/no-such-fn", "There is no function"),
                       ("/console/nowhere", "There is no page")):
        resp = page.goto(path)
        assert resp.status == 404
        assert text in page.inner_text("#not-found")


def test_expired_or_wrong_session_goes_back_to_login(page: Any, server: Server) -> None:
    server.deploy("session-ui", {"handler.py": HELLO})
    login(page, server)
    page.goto("/console/functions/session-ui")
    page.context.clear_cookies()
    page.context.add_cookies([{"name": "polyfn_console", "value": "forged-or-expired", "url": server.url + "/console"}])
    page.fill("#payload", "{}")
    page.click("#invoke-button")  # an htmx request with a dead session: the whole page goes to the login
    page.wait_for_url("**/console/login**")
    page.goto("/console/activations")
    assert "/console/login" in page.url


def test_huge_output_is_truncated_with_a_download_link(page: Any, server: Server) -> None:
    server.deploy("huge-ui", {"handler.py": HUGE})
    login(page, server)
    page.goto("/console/functions/huge-ui")
    page.fill("#payload", "{}")
    page.click("#invoke-button")
    page.wait_for_selector("#invoke-truncated")
    shown = page.inner_text("#invoke-body")
    assert len(shown) == 16 * 1024
    with page.expect_download() as dl:
        page.click("#download-full")
    data = Path(dl.value.path()).read_bytes()
    assert data == b'"' + b"0123456789" * 20000 + b'"'  # events answer JSON


def test_deploy_a_zip_and_see_errors_inline(page: Any, server: Server, tmp_path: Path) -> None:
    login(page, server)
    page.goto("/console/deploy")
    page.fill("#name", "broken-ui")
    page.fill("#code", "def handler(event, context):\n    return (\n")
    page.click("#deploy-button")
    assert "syntax_error" in page.inner_text("#deploy-error")

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handle(req):\n    return req[::-1]\n")
    archive = tmp_path / "code.zip"
    archive.write_bytes(buf.getvalue())
    page.goto("/console/deploy")
    page.fill("#name", "zipped-ui")
    page.set_input_files("#archive", str(archive))
    page.click("#deploy-button")
    page.wait_for_url("**/console/functions/zipped-ui")
    assert "flavor openfaas" in page.inner_text("main")  # detected from the code


def test_activation_filters(page: Any, server: Server) -> None:
    server.deploy("filter-a", {"handler.py": HELLO})
    server.deploy("filter-b", {"handler.py": EVIL})
    server.api.post("/v1/functions/filter-a/invoke", json={"name": "a"})
    server.api.post("/v1/functions/filter-b/invoke", json={"fail": True})
    login(page, server)
    page.goto("/console/activations")
    page.select_option("#f-function", "filter-b")
    expect(page.locator("#activation-rows tr", has_text="filter-a")).to_have_count(0)
    expect(page.locator("#activation-rows tr", has_text="filter-b")).to_have_count(1)
    assert "error" in page.inner_text("#activation-rows")
    page.select_option("#f-status", "success")
    page.wait_for_selector("#no-activations")
    page.select_option("#f-function", "filter-a")
    expect(page.locator("#activation-rows")).to_contain_text("filter-a")


def test_usable_at_phone_width(browser: Any, server: Server, tmp_path: Path) -> None:
    server.deploy("phone-ui", {"handler.py": HELLO})
    ctx = browser.new_context(base_url=server.url, viewport={"width": 375, "height": 740}, is_mobile=True)
    page = ctx.new_page()
    try:
        login(page, server)
        for path in ("/console/functions", "/console/functions/phone-ui", "/console/activations", "/console/deploy"):
            page.goto(path)
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= 375, f"{path} is {wide}px wide at a 375px viewport"
        page.goto("/console/functions/phone-ui")
        page.fill("#payload", '{"name": "phone"}')
        page.click("#invoke-button")
        page.wait_for_selector("#invoke-status")
        page.screenshot(path=str(shots_dir(tmp_path) / "console-phone.png"), full_page=False)
    finally:
        ctx.close()
