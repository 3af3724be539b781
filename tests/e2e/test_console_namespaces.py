"""The console per namespace, over HTTP and in a real Chromium: a namespace's key signs in to its namespace only
(another's function, activation or table is absent; it cannot pick another), the node's admin key picks any
namespace; the usage page charts GB·s, invocations, storage and database use per day."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import Server, start_server
from .test_console_browser import browser  # noqa: F401  (the module's Chromium fixture)

WHO = 'def handler(event, context):\n    return {"who": "%s"}\n'


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("consolens") / "data")
    for ns in ("con-a", "con-b"):
        assert s.api.post("/v1/namespaces", json={"name": ns}).status_code == 201
        s.api.put("/v1/functions/hello", json={"files": {"handler.py": WHO % ns}},
                  headers={"x-polyfn-namespace": ns}).raise_for_status()
    s.deploy("hello", {"handler.py": WHO % "default"})
    s.deploy("only-default", {"handler.py": WHO % "only"})
    yield s
    s.stop()


def _key(node: Server, ns: str, scope: str = "deploy") -> str:
    r = node.api.post("/v1/keys", json={"scope": scope, "namespace": ns})
    return f"{r.json()['access_key_id']}:{r.json()['secret_access_key']}"


def _login(node: Server, key: str) -> httpx.Client:
    c = httpx.Client(base_url=node.url, follow_redirects=False, timeout=60)
    r = c.post("/console/login", data={"key": key})
    assert r.status_code == 303, r.text
    return c


def test_a_namespaces_key_sees_only_its_namespace(node: Server) -> None:
    c = _login(node, _key(node, "con-a"))
    page = c.get("/console/functions").text
    assert 'href="/console/functions/hello"' in page and "only-default" not in page
    assert 'id="ns-name"' in page and "<strong>con-a</strong>" in page and 'id="ns-picker"' not in page
    assert c.get("/console/functions/only-default").status_code == 404
    assert c.get("/console/functions/con-b~hello").status_code == 404
    r = c.post("/console/functions/hello/invoke", data={"payload": "{}"}, headers={"origin": node.url})
    assert r.status_code == 200 and "con-a" in r.text and "default" not in r.text.split("who")[1][:20]
    page = c.get("/console/functions/hello").text
    assert "/fn/con-a/hello" in page
    # the default namespace's activations are not listed, nor reachable by id
    r = node.http.post("/fn/only-default")
    aid = r.headers["x-polyfn-activation-id"]
    acts = c.get("/console/activations").text
    assert aid not in acts and "only-default" not in acts
    assert c.get(f"/console/activations/{aid}").status_code == 404
    assert c.get(f"/console/activations/{aid}/result").status_code == 404
    r = c.post("/console/namespace", data={"namespace": "con-b"}, headers={"origin": node.url})
    assert r.status_code == 404  # a namespace's session cannot pick another
    assert "only-default" not in c.get("/console/functions").text
    assert c.get("/console/workflows").status_code == 404  # (not namespaced yet: default's only)


def test_keys_that_cannot_sign_in(node: Server) -> None:
    c = httpx.Client(base_url=node.url, follow_redirects=False, timeout=60)
    r = c.post("/console/login", data={"key": _key(node, "con-a", "read")})
    assert r.status_code == 403 and "deploy or admin" in r.text
    r = c.post("/console/login", data={"key": "PFAKNOPE:nope"})
    assert r.status_code == 401


def test_the_admin_picks_a_namespace(node: Server) -> None:
    c = _login(node, node.key)
    page = c.get("/console/functions").text
    assert 'id="ns-picker"' in page and "only-default" in page
    assert '<option value="con-a"' in page and '<option value="con-b"' in page
    r = c.post("/console/namespace", data={"namespace": "con-b", "next": "/console/usage"},
               headers={"origin": node.url})
    assert r.status_code == 303 and r.headers["location"] == "/console/usage"
    page = c.get("/console/functions").text
    assert "only-default" not in page and 'href="/console/functions/hello"' in page
    r = c.post("/console/functions/hello/invoke", data={"payload": "{}"}, headers={"origin": node.url})
    assert "con-b" in r.text
    r = c.post("/console/namespace", data={"namespace": "nosuch"}, headers={"origin": node.url})
    assert r.status_code == 404


def test_the_usage_page(node: Server) -> None:
    for _ in range(3):
        node.http.post("/fn/con-a/hello")
    c = _login(node, _key(node, "con-a"))
    page = c.get("/console/usage", params={"prices": "lambda", "days": "7"}).text
    assert page.count("<svg") == 4 and "GB-seconds per day" in page and "Storage held" in page
    assert 'id="usage"' in page and 'id="price-note"' in page and "SAMPLE prices" in page
    total = node.api.get("/v1/usage", headers={"x-polyfn-namespace": "con-a"}).json()["total"]["invocations"]
    assert total >= 3
    assert f'<td>total</td><td class="num">{total}</td>' in page
    page = c.get("/console/usage", params={"days": "bad"}).text  # a bad value is the default
    assert "<svg" in page and 'id="price-note"' not in page


def test_the_usage_page_in_a_browser(node: Server, browser: Any) -> None:  # noqa: F811
    key = _key(node, "con-a")
    page = browser.new_page()
    try:
        page.goto(f"{node.url}/console/login")
        page.fill("#key", key)
        page.click("#login-form button[type=submit]")
        page.wait_for_url("**/console/functions")
        page.click("text=Usage")
        page.wait_for_url("**/console/usage")
        assert page.locator("#usage-charts svg").count() == 4
        assert page.locator("#usage-charts polyline").count() == 5  # (reads and writes share a chart)
        page.select_option("#prices", "lambda")
        page.click("#usage-form button[type=submit]")
        page.wait_for_url("**/console/usage?*prices=lambda*")
        assert "SAMPLE prices" in page.locator("#price-note").inner_text()
        assert page.locator("#ns-name").inner_text() == "namespace con-a"
    finally:
        page.close()
