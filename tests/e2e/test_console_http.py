"""The console's HTTP contract without a browser: auth, cookies, headers, origin checks, 404s, downloads."""

from __future__ import annotations

import re

import httpx
import pytest

from polyfn.console.app import CONSOLE

from .conftest import Server


@pytest.fixture
def client(server: Server) -> httpx.Client:
    c = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    r = c.post("/console/login", data={"key": server.key})
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    return c


def test_every_page_needs_a_session(server: Server) -> None:
    c = httpx.Client(base_url=server.url, follow_redirects=False)
    for path in ("/console/", "/console/functions", "/console/deploy", "/console/activations",
                 "/console/activations/abc", "/console/functions/x/logs/stream"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login"), path
    assert c.get("/console/functions/x").headers["location"] == "/console/login?next=/console/functions/x"
    r = c.post("/console/functions/x/invoke", data={"payload": "{}"}, headers={"hx-request": "true"})
    assert r.status_code == 401 and r.headers["hx-redirect"] == "/console/login"
    forged = httpx.Client(base_url=server.url, follow_redirects=False, cookies={"polyfn_console": "forged"})
    assert forged.get("/console/functions").status_code == 303
    # the API key itself is not a console session
    assert c.get("/console/functions", headers={"authorization": f"Bearer {server.key}"}).status_code == 303


def test_every_row_of_the_table_but_the_login_needs_a_session(server: Server) -> None:
    """Each page of the console's table (console/app.py), its parameters filled in: without a session, back to the
    login page — only the rows declared open (log in, log out) answer."""
    c = httpx.Client(base_url=server.url, follow_redirects=False)
    guarded = [r for r in CONSOLE if r.options.get("guard") != "none"]
    assert len(guarded) >= 20 and {r.path for r in CONSOLE if r not in guarded} == {"/login", "/logout"}
    for row in guarded:
        path = "/console" + re.sub(r"\{\w+\}", "x", row.path)
        r = c.request(row.method, path, data={"payload": "{}"} if row.method == "POST" else None)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login"), (row.method, path)


def test_login_cookie_and_security_headers(server: Server) -> None:
    c = httpx.Client(base_url=server.url, follow_redirects=False)
    r = c.post("/console/login", data={"key": "nope"})
    assert r.status_code == 401 and "set-cookie" not in r.headers
    r = c.post("/console/login", data={"key": server.key, "next": "/console/activations"})
    assert r.headers["location"] == "/console/activations"
    cookie = r.headers["set-cookie"].lower()
    for part in ("httponly", "samesite=strict", "path=/console", "max-age=43200"):
        assert part in cookie
    r = c.get("/console/functions")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    # logout ends the session on the server, not only in the browser
    token = c.cookies.get("polyfn_console")
    assert c.post("/console/logout").status_code == 303
    old = httpx.Client(base_url=server.url, follow_redirects=False, cookies={"polyfn_console": token})
    assert old.get("/console/functions").status_code == 303


def test_no_open_redirect_after_login(server: Server) -> None:
    c = httpx.Client(base_url=server.url, follow_redirects=False)
    for evil in ("https://evil.example/", "//evil.example/", "/v1/functions", "/console/\\evil"):
        r = c.post("/console/login", data={"key": server.key, "next": evil})
        assert r.headers["location"] == "/console/", evil


def test_cross_origin_posts_are_refused(client: httpx.Client, server: Server) -> None:
    server.deploy("origin-fn", {"handler.py": "def handler(e, c):\n    return 1\n"})
    r = client.post("/console/functions/origin-fn/invoke", data={"payload": "{}"},
                    headers={"origin": "https://evil.example"})
    assert r.status_code == 403
    r = client.post("/console/functions/origin-fn/invoke", data={"payload": "{}"}, headers={"origin": server.url})
    assert r.status_code == 200 and "HTTP 200" in r.text
    r = httpx.post(server.url + "/console/login", data={"key": server.key}, headers={"origin": "null"})
    assert r.status_code == 403


def test_escaping_and_404s(client: httpx.Client, server: Server) -> None:
    server.deploy("esc-fn", {"handler.py": "def handler(e, c):\n    print('<b>x</b>')\n    return '<script>1</script>'\n"})
    r = client.post("/console/functions/esc-fn/invoke", data={"payload": "{}"})
    assert "<script>1</script>" not in r.text and "&lt;script&gt;1&lt;/script&gt;" in r.text
    assert "&lt;b&gt;x&lt;/b&gt;" in r.text
    r = client.post("/console/functions/esc-fn/invoke", data={"payload": "{nope"})
    assert 'id="invoke-error"' in r.text and "Malformed JSON" in r.text
    for path in ("/console/activations/zzz", "/console/functions/nope", "/console/functions/nope/charts",
                 "/console/activations/zzz/result", "/console/whatever"):
        r = client.get(path)
        assert r.status_code == 404 and "Not found" in r.text, path
    r = client.get("/console/functions/%3Cscript%3E")
    assert r.status_code == 404 and "<script>" not in r.text


def test_download_is_an_attachment(client: httpx.Client, server: Server) -> None:
    server.deploy("dl-fn", {"handler.py": "def handler(e, c):\n    return '<h1>' + 'x' * 20000\n"})
    r = client.post("/console/functions/dl-fn/invoke", data={"payload": "{}"})
    assert 'id="invoke-truncated"' in r.text
    aid = r.text.split('/console/activations/')[1].split('"')[0]
    d = client.get(f"/console/activations/{aid}/result")
    assert d.status_code == 200 and d.headers["content-type"] == "application/octet-stream"
    assert d.headers["content-disposition"].startswith("attachment")
    assert len(d.content) == 20006
    page = client.get(f"/console/activations/{aid}")
    assert 'id="act-truncated"' in page.text and "download full" in page.text
