"""X-Callback-Url: the SSRF policy on the anonymous paths (`/fn/` async, OpenFaaS `/async-function/`), and
OpenFaaS async calls through the durable queue: accepted calls survive `kill -9` of the server, and the
callback (OpenFaaS's shape) is retried until the receiver takes it."""

from __future__ import annotations

import http.server
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import error_code, start_server, wait_until

SLOW = "import time\ndef handle(req):\n    time.sleep(1.5)\n    return req[::-1]\n"
REVERSE = "def handle(req):\n    return req[::-1]\n"


class Receiver:
    """A callback receiver that answers 500 to the first `fail_first` POSTs, then 200."""

    def __init__(self, fail_first: int = 0) -> None:
        self.got: list[dict[str, Any]] = []
        self.refused = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if outer.refused < fail_first:
                    outer.refused += 1
                    self.send_response(500)
                else:
                    outer.got.append({"body": body, "headers": {k.lower(): v for k, v in self.headers.items()}})
                    self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.srv.shutdown()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    s = start_server(tmp_path_factory.mktemp("cb"), env={"POLYFN_CALLBACK_ALLOW": "localhost"})
    s.deploy("cb-echo", {"handler.py": REVERSE}, flavor="openfaas")
    yield s
    s.stop()


def test_anonymous_callback_to_a_host_not_allowed_is_refused(node: Any, receiver: Receiver) -> None:
    r = node.http.post("/fn/cb-echo", content=b"abc", headers={"x-polyfn-async": "true",
                                                                 "x-callback-url": receiver.url()})
    assert r.status_code == 400 and error_code(r) == "callback_not_allowed", r.text
    assert "POLYFN_CALLBACK_ALLOW" in r.json()["error"]["message"]
    r = node.http.post("/async-function/cb-echo", content=b"abc", headers={"x-callback-url": receiver.url()})
    assert r.status_code == 400 and "callback_not_allowed" in r.text
    bad_key = node.http.post("/fn/cb-echo", content=b"abc", headers={
        "x-polyfn-async": "true", "x-callback-url": receiver.url(), "authorization": "Bearer PFAKNONE:nope"})
    assert bad_key.status_code == 400
    read_key = node.api.post("/v1/keys", json={"scope": "read"}).json()
    r = node.http.post("/fn/cb-echo", content=b"abc", headers={
        "x-polyfn-async": "true", "x-callback-url": receiver.url(),
        "authorization": f"Bearer {read_key['access_key_id']}:{read_key['secret_access_key']}"})
    assert r.status_code == 400 and error_code(r) == "callback_not_allowed"
    time.sleep(0.5)  # nothing must arrive (a refused call is not queued); a short grace for a wrong one
    assert receiver.got == []
    # without a callback the anonymous async call is accepted as before
    assert node.http.post("/fn/cb-echo", content=b"x", headers={"x-polyfn-async": "true"}).status_code == 202


def test_invoke_key_or_allowed_host_may_set_a_callback(node: Any, receiver: Receiver) -> None:
    key = node.api.post("/v1/keys", json={"scope": "invoke", "function": "cb-echo"}).json()
    r = node.http.post("/fn/cb-echo", content=b"abc", headers={
        "x-polyfn-async": "true", "x-callback-url": receiver.url(),
        "authorization": f"Bearer {key['access_key_id']}:{key['secret_access_key']}"})
    assert r.status_code == 202, r.text
    r = node.http.post("/fn/cb-echo", content=b"def", headers={"x-polyfn-async": "true",
                                                                 "x-callback-url": receiver.url("localhost")})
    assert r.status_code == 202, r.text  # localhost is in POLYFN_CALLBACK_ALLOW
    r = node.http.post("/async-function/cb-echo", content=b"ghi", headers={"x-callback-url": receiver.url("localhost")})
    assert r.status_code == 202, r.text
    assert wait_until(lambda: len(receiver.got) == 3, 20)
    polyfn_shape = [json.loads(g["body"]) for g in receiver.got if g["body"].startswith(b"{")]
    assert sorted(p["result"] for p in polyfn_shape) == ["cba", "fed"]
    faas = next(g for g in receiver.got if not g["body"].startswith(b"{"))
    assert faas["body"] == b"ihg" and faas["headers"]["x-function-status"] == "200"


def test_openfaas_callback_names_a_namespaced_function_by_its_local_name(node: Any, receiver: Receiver) -> None:
    # OpenFaaS's queue-worker sends the function's name (X-Function-Name) and no namespace header
    assert node.api.post("/v1/namespaces", json={"name": "cb-ns"}).status_code == 201
    r = node.api.post("/v1/functions", params={"namespace": "cb-ns"},
                      json={"name": "cb-echo", "files": {"handler.py": REVERSE}, "flavor": "openfaas"})
    assert r.status_code == 201, r.text
    r = node.http.post("/async-function/cb-echo.cb-ns", content=b"xyz",
                       headers={"x-callback-url": receiver.url("localhost")})
    assert r.status_code == 202, r.text
    assert wait_until(lambda: len(receiver.got) == 1, 20)
    got = receiver.got[0]
    assert got["body"] == b"zyx" and got["headers"]["x-function-name"] == "cb-echo", got["headers"]


def test_openfaas_async_survives_kill_9_and_callback_is_retried(tmp_path: Path) -> None:
    rec = Receiver(fail_first=2)
    env = {"POLYFN_CALLBACK_ALLOW": "127.0.0.1", "POLYFN_CALLBACK_BACKOFF": "0.05"}
    s = start_server(tmp_path / "data", env=env)
    try:
        s.deploy("cb-slow", {"handler.py": SLOW}, flavor="openfaas", max_instances=1)
        call_ids = []
        for body in (b"one", b"two", b"three"):
            r = s.http.post("/async-function/cb-slow", content=body, headers={"x-callback-url": rec.url()})
            assert r.status_code == 202, r.text
            call_ids.append(r.headers["x-call-id"])
    finally:
        s.stop(signal.SIGKILL)  # the first is running, the others queued: none has finished
    assert rec.got == []
    s = start_server(tmp_path / "data", env=env)
    try:
        assert wait_until(lambda: len(rec.got) == 3, 60), rec.got
        by_id = {g["headers"]["x-call-id"]: g for g in rec.got}
        assert set(by_id) == set(call_ids)
        assert sorted(g["body"] for g in rec.got) == [b"eerht", b"eno", b"owt"]
        assert all(g["headers"]["x-function-name"] == "cb-slow" and g["headers"]["x-function-status"] == "200"
                   for g in rec.got)
        assert rec.refused == 2  # the first two POSTs were answered 500 and retried
        act = httpx.get(f"{s.url}/v1/activations/{call_ids[0].replace('-', '')}",
                        headers={"authorization": f"Bearer {s.key}"}).json()
        assert act["trigger"] == "openfaas-async" and act["callback"]["state"] == "delivered"
    finally:
        s.stop()
        rec.srv.shutdown()


BAD_URLS = ["http://[::1", "http://", "http://x:99999/", "http://a b/", "http:///path", "ftp://x/",
            "http://x/" + "a" * 3000]


def test_a_callback_url_that_does_not_parse_is_a_400_everywhere(node: Any) -> None:
    """Parsed once at the edge: the anonymous paths (before the SSRF policy, which used to wave an
    unparsable URL through) and the authenticated invoke API all answer 400 invalid_callback_url."""
    for url in BAD_URLS:
        r = node.http.post("/fn/cb-echo", content=b"abc", headers={"x-polyfn-async": "true", "x-callback-url": url})
        assert r.status_code == 400 and error_code(r) == "invalid_callback_url", (url, r.text)
        r = node.http.post("/async-function/cb-echo", content=b"abc", headers={"x-callback-url": url})
        assert r.status_code == 400 and "invalid_callback_url" in r.text, (url, r.text)
        r = node.api.post("/v1/functions/cb-echo/invoke?mode=async", json={}, headers={"x-callback-url": url})
        assert r.status_code == 400 and error_code(r) == "invalid_callback_url", (url, r.text)
    assert node.api.get("/v1/queue").json().get("pending", 0) == 0


def test_a_callback_that_can_never_be_delivered_is_settled_and_stops_nothing(tmp_path: Path) -> None:
    """A callback row with a URL the HTTP client cannot use (queued before URLs were checked at the edge) is
    marked failed with the reason at once, and the callbacks after it are still delivered: before, the
    client's InvalidURL ended the delivery loop for every function, also after a restart."""
    import sqlite3

    rec = Receiver()
    env = {"POLYFN_CALLBACK_ALLOW": "127.0.0.1"}
    s = start_server(tmp_path / "data", env=env)
    s.deploy("cb-poison", {"handler.py": REVERSE}, flavor="openfaas")
    s.stop()
    with sqlite3.connect(tmp_path / "data" / "queue.db") as db:  # the poison row, read first after a restart
        db.execute("INSERT INTO callbacks (id, url, payload, attempt, not_before, state, updated_at) "
                   "VALUES ('poison', 'http://[::1', X'7B7D', 0, 0, 'pending', 0)")
    s = start_server(tmp_path / "data", env=env)
    try:
        for body in (b"one", b"two"):
            r = s.http.post("/fn/cb-poison", content=body, headers={"x-polyfn-async": "true",
                                                                     "x-callback-url": rec.url()})
            assert r.status_code == 202, r.text
        assert wait_until(lambda: len(rec.got) == 2, 30), rec.got
        with sqlite3.connect(tmp_path / "data" / "queue.db") as db:
            state, error = db.execute("SELECT state, last_error FROM callbacks WHERE id='poison'").fetchone()
        assert state == "failed" and "invalid_callback_url" in error, (state, error)
        assert s.proc.poll() is None
    finally:
        s.stop()
        rec.srv.shutdown()
