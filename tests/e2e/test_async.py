"""Async invocations end to end: 202 + activation id, idempotency key, retries, dead-letter queue and replay,
callbacks (delivered and down), max event age, and `kill -9` of the server with invocations queued.

The tests on the module's `server` run twice: with the node's own queue file, and with the cluster's queue
(a NATS JetStream stream; more of it in test_async_jetstream.py)."""

from __future__ import annotations

import asyncio
import http.server
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import (
    Server,
    error_code,
    free_port,
    start_server,
    wait_until,
)

HOST_FS = True  # functions write state files the test reads (conftest.HOST_FS)


@pytest.fixture(scope="module")
def server(server_on_each_queue: Server) -> Server:
    return server_on_each_queue

ECHO = '''
def handler(event, context):
    return {"event": event, "activation": context.activation_id}
'''

# Fails until it has been called FAIL_TIMES times for the same idempotency key (counter files in STATE).
FLAKY = '''
import os
def handler(event, context):
    path = os.path.join(os.environ["STATE"], context.activation_id)
    with open(path, "a") as f:
        f.write("x")
    n = len(open(path).read())
    if n <= int(event.get("fail", 0)):
        raise RuntimeError(f"attempt {n} fails")
    return {"attempts": n}
'''

RECORD = '''
import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    with open(os.path.join(os.environ["STATE"], "done.log"), "a") as f:
        f.write(context.activation_id + "\\n")
    return "ok"
'''


def final(server: Server, aid: str, timeout: float = 20) -> dict:
    out: dict = {}

    def done() -> bool:
        out.clear()  # (the record as it is now: a field of an earlier pending record must not linger)
        out.update(server.activation(aid))
        return out["status"] not in ("pending", "running")

    assert wait_until(done, timeout), out
    return out


def test_async_invoke_api_gateway_and_cli(server: Server) -> None:
    server.deploy("as-echo", {"handler.py": ECHO})
    r = server.api.post("/v1/functions/as-echo/invoke?mode=async", json={"n": 1})
    assert r.status_code == 202, r.text
    aid = r.json()["activation_id"]
    assert r.headers["x-polyfn-activation-id"] == aid
    act = final(server, aid)
    assert act["status"] == "success" and act["trigger"] == "async"
    assert json.loads(act["result"]) == {"event": {"n": 1}, "activation": aid}  # the id is the idempotency key

    r = server.http.post("/fn/as-echo/sub", content=b"hi", headers={"x-polyfn-async": "true"})
    assert r.status_code == 202
    assert final(server, r.json()["activation_id"])["status"] == "success"

    cli = server.cli("invoke", "as-echo", "--async", "-d", '{"k": 2}', check=True)
    aid = cli.stdout.strip()
    shown = server.cli("activation", aid, "--wait", "--json", check=True)
    assert json.loads(shown.stdout)["status"] == "success"


def test_async_bad_input(server: Server) -> None:
    r = server.api.post("/v1/functions/as-nope/invoke?mode=async", json={})
    assert r.status_code == 404 and error_code(r) == "function_not_found"
    server.deploy("as-echo2", {"handler.py": ECHO})
    r = server.api.post("/v1/functions/as-echo2/invoke?mode=async", json={},
                        headers={"x-callback-url": "ftp://nowhere"})
    assert r.status_code == 400 and error_code(r) == "invalid_callback_url"
    r = server.api.post("/v1/functions/as-echo2/invoke?mode=later", json={})
    assert r.status_code == 400


def test_retries_then_success(server: Server, tmp_path: Path) -> None:
    server.deploy("as-flaky", {"handler.py": FLAKY}, env={"STATE": str(tmp_path)}, retry_attempts=3,
                  retry_backoff=0.05)
    aid = server.api.post("/v1/functions/as-flaky/invoke?mode=async", json={"fail": 2}).json()["activation_id"]
    act = final(server, aid)
    assert act["status"] == "success", act
    assert json.loads(act["result"]) == {"attempts": 3}
    assert (tmp_path / aid).read_text() == "xxx"


def test_poison_goes_to_dlq_and_replays(server: Server, tmp_path: Path) -> None:
    server.deploy("as-poison", {"handler.py": FLAKY}, env={"STATE": str(tmp_path)}, retry_attempts=2,
                  retry_backoff=0.05)
    aid = server.api.post("/v1/functions/as-poison/invoke?mode=async", json={"fail": 3}).json()["activation_id"]
    act = final(server, aid)
    assert act["status"] == "dead_letter" and act["attempts"] == 2, act
    assert "retries exhausted" in act["dead_letter_reason"]
    assert act["last_status"] == "error"

    listed = server.cli("dlq", "list", "as-poison", "--json", check=True)
    assert [e["id"] for e in json.loads(listed.stdout)] == [aid]
    shown = json.loads(server.cli("dlq", "show", aid, check=True).stdout)
    assert json.loads(shown["body"]) == {"fail": 3}
    assert shown["last_error"]["code"] == "function_error"

    server.cli("dlq", "replay", aid, check=True)  # third call succeeds (counter is at 2)
    act = final(server, aid)
    assert act["status"] == "success", act
    assert json.loads(server.cli("dlq", "list", "as-poison", "--json", check=True).stdout) == []
    r = server.cli("dlq", "show", "nope")
    assert r.returncode == 3 and "dead_letter_not_found" in r.stderr


@pytest.mark.parametrize(("code", "error_type"), [
    ("import no_such_module_xyz\ndef handler(e, c):\n    return 1\n", "Runtime.ImportModuleError"),
    ("import importlib\nimportlib.import_module('boto3_typo')\ndef handler(e, c):\n    return 1\n",
     "Runtime.ImportModuleError"),
])
def test_permanent_init_error_is_dead_lettered_at_once(server: Server, code: str, error_type: str) -> None:
    """A module that cannot import fails the same way on every start: one attempt, then the DLQ (issue 18:
    a missing boto3 went through three retries of the same import error)."""
    name = "as-broken-" + str(len(code))
    server.deploy(name, {"handler.py": code}, retry_attempts=5, retry_backoff=0.05)
    aid = server.api.post(f"/v1/functions/{name}/invoke?mode=async", json={}).json()["activation_id"]
    act = final(server, aid)
    assert act["status"] == "dead_letter" and act["attempts"] == 1, act
    assert "permanent init error" in act["dead_letter_reason"], act
    shown = json.loads(server.cli("dlq", "show", aid, check=True).stdout)
    assert shown["last_error"]["code"] == "function_init_failed", shown
    assert shown["last_error"]["errorType"] == error_type, shown


def test_max_event_age(server: Server, tmp_path: Path) -> None:
    server.deploy("as-old", {"handler.py": FLAKY}, env={"STATE": str(tmp_path)}, retry_attempts=10,
                  retry_backoff=5, max_event_age=2)
    aid = server.api.post("/v1/functions/as-old/invoke?mode=async", json={"fail": 99}).json()["activation_id"]
    act = final(server, aid)
    assert act["status"] == "dead_letter" and "max_event_age" in act["dead_letter_reason"], act


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    got: list[dict] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", got
    srv.shutdown()


def test_callbacks_delivered_and_down(tmp_path: Path, receiver: tuple[str, list[dict]]) -> None:
    url, got = receiver
    s = start_server(tmp_path / "data", env={"POLYFN_CALLBACK_BACKOFF": "0.05", "POLYFN_CALLBACK_ATTEMPTS": "3"}, host_fs=True)
    try:
        s.deploy("cb", {"handler.py": ECHO})
        aid = s.api.post("/v1/functions/cb/invoke?mode=async", json={"a": 1},
                         headers={"x-callback-url": url}).json()["activation_id"]
        assert wait_until(lambda: len(got) == 1, 20)
        assert got[0]["activation_id"] == aid and got[0]["status"] == "success"
        assert got[0]["result"]["event"] == {"a": 1}
        assert wait_until(lambda: s.activation(aid).get("callback", {}).get("state") == "delivered")

        down = f"http://127.0.0.1:{free_port()}/nobody-listens"
        aid = s.api.post("/v1/functions/cb/invoke?mode=async", json={},
                         headers={"x-callback-url": down}).json()["activation_id"]
        assert wait_until(lambda: s.activation(aid).get("callback", {}).get("state") == "failed", 20)
        cb = s.activation(aid)["callback"]
        assert cb["attempt"] == 3 and "Connect" in cb["last_error"]
        assert s.activation(aid)["status"] == "success"  # the invocation itself succeeded
    finally:
        s.stop()


def test_kill_9_with_queued_invocations(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    s = start_server(tmp_path / "data", host_fs=True)
    try:
        s.deploy("slow", {"handler.py": RECORD}, env={"STATE": str(state)}, max_instances=1)
        ids = [s.api.post("/v1/functions/slow/invoke?mode=async", json={"sleep": 0.2}).json()["activation_id"]
               for _ in range(15)]
    finally:
        s.stop(signal.SIGKILL)  # most are still queued (one at a time, 0.2 s each)
    done_log = state / "done.log"

    def done() -> set[str]:
        return set(done_log.read_text().split()) if done_log.exists() else set()

    assert len(done()) < len(ids)

    s = start_server(tmp_path / "data", host_fs=True)
    try:
        assert wait_until(lambda: set(ids) <= done(), 30), f"missing after restart: {set(ids) - done()}"
        assert all(s.activation(i)["status"] == "success" for i in ids)
    finally:
        s.stop()


# Counts its runs per job (a file per activation id), sleeps, then fails: every run is an attempt that failed.
COUNT_THEN_FAIL = '''
import os, time
def handler(event, context):
    with open(os.path.join(os.environ["STATE"], context.activation_id), "a") as f:
        f.write("x")
    time.sleep(event.get("sleep", 0))
    raise RuntimeError("fails every time")
'''


@pytest.mark.parametrize("queue", ["queue-file", "jetstream"])
def test_kill_9_spends_no_attempt_of_jobs_that_had_not_started(tmp_path: Path, queue: str,
                                                               request: pytest.FixtureRequest) -> None:
    """A node killed with jobs held in memory waiting for the function's one instance: after the restart each of
    them still gets all its attempts (an attempt counts when its invocation starts, not when the node takes the
    job). The one that was running when the node died: its attempt counted in the queue file (written at its
    start); on the cluster's stream not (the message keeps the count it was published with; JetStream's
    redelivery count cannot tell a started job from one held unstarted), so it runs once more there."""
    env = request.getfixturevalue("jetstream_queue") if queue == "jetstream" else {}
    state = tmp_path / "state"
    state.mkdir()
    s = start_server(tmp_path / "data", host_fs=True, env=env)
    try:
        s.deploy("count", {"handler.py": COUNT_THEN_FAIL}, env={"STATE": str(state)}, max_instances=1,
                 retry_attempts=2, retry_backoff=0.05)
        ids = [s.api.post("/v1/functions/count/invoke?mode=async", json={"sleep": 1.0}).json()["activation_id"]
               for _ in range(5)]
        assert wait_until(lambda: any((state / i).exists() for i in ids), 20)  # one started; the rest wait
        time.sleep(0.2)
    finally:
        s.stop(signal.SIGKILL)
    (started,) = [i for i in ids if (state / i).exists()]

    def runs(i: str) -> int:
        return len((state / i).read_text()) if (state / i).exists() else 0

    s = start_server(tmp_path / "data", host_fs=True, env=env)
    try:
        def dead() -> set[str]:
            r = s.api.get("/v1/dlq", params={"function": "count"})
            return {e["id"] for e in r.json()["dead_letters"]}

        assert wait_until(lambda: dead() >= set(ids), 60), f"not dead-lettered: {set(ids) - dead()}"
        # two attempts each: none of the waiting ones' was spent by the kill
        want = {i: 2 for i in ids}
        want[started] = 2 if queue == "queue-file" else 3
        assert {i: runs(i) for i in ids} == want
    finally:
        s.stop()


def test_kill_9_after_group_committed_burst(tmp_path: Path) -> None:
    """Many concurrent async requests share group commits (fewer commits than requests); every one that was
    answered 202 runs after a `kill -9` right after the burst and a restart (no loss, at least once)."""
    state = tmp_path / "state"
    state.mkdir()
    s = start_server(tmp_path / "data", host_fs=True)
    n = 120
    try:
        s.deploy("burst", {"handler.py": RECORD}, env={"STATE": str(state)}, max_instances=1)
        before = s.api.get("/v1/queue").json()

        async def burst() -> list[str]:
            async with httpx.AsyncClient(base_url=s.url, timeout=60, headers={"authorization": f"Bearer {s.key}"},
                                         limits=httpx.Limits(max_connections=n)) as client:
                rs = await asyncio.gather(*(client.post("/v1/functions/burst/invoke?mode=async",
                                                        json={"sleep": 0.05}) for _ in range(n)))
            assert [r.status_code for r in rs] == [202] * n
            return [r.json()["activation_id"] for r in rs]

        ids = asyncio.run(burst())
        after = s.api.get("/v1/queue").json()
    finally:
        s.stop(signal.SIGKILL)
    assert len(set(ids)) == n
    assert after["writes"] - before["writes"] >= n
    assert after["commits"] - before["commits"] < n  # some commits carried several accepted invocations
    done_log = state / "done.log"

    def done() -> set[str]:
        return set(done_log.read_text().split()) if done_log.exists() else set()

    assert len(done()) < n  # most were still queued when the server died

    s = start_server(tmp_path / "data", host_fs=True)
    try:
        assert wait_until(lambda: set(ids) <= done(), 60), f"lost after restart: {len(set(ids) - done())}"
        assert wait_until(lambda: s.api.get("/v1/queue").json()["pending"] == 0, 30)
        assert all(s.activation(i)["status"] == "success" for i in ids)
    finally:
        s.stop()


def test_async_respects_function_capacity(server: Server, tmp_path: Path) -> None:
    """10 async invocations of a one-instance function whose timeout is shorter than the backlog: the queue
    feeds it one at a time, so none waits in the pool until it is throttled; every one runs once."""
    server.deploy("as-narrow", {"handler.py": RECORD}, env={"STATE": str(tmp_path)}, max_instances=1, timeout=1)
    ids = [server.api.post("/v1/functions/as-narrow/invoke?mode=async", json={"sleep": 0.3}).json()["activation_id"]
           for _ in range(10)]
    acts = [final(server, i, 30) for i in ids]
    assert [a["status"] for a in acts] == ["success"] * 10
    assert [a["attempts"] if "attempts" in a else 1 for a in acts] == [1] * 10
    assert sorted((tmp_path / "done.log").read_text().split()) == sorted(ids)  # each ran exactly once


INTERNAL = '''
REV = {rev}
def handler(event, context):
    raw = event.headers.raw if hasattr(event, "headers") else []
    return {{"rev": REV, "internal": [[k.lower(), v] for k, v in raw if k.lower().startswith("x-polyfn-")]}}
'''


def test_outside_requests_cannot_set_internal_headers(server: Server) -> None:
    """X-Polyfn-* are the node's own: an anonymous caller could pin an old revision with X-Polyfn-Revision (or
    queue a job that could never run with a junk value) and forge the idempotency key functions rely on."""
    server.deploy("hd-rev", {"handler.py": INTERNAL.format(rev=1)})
    server.deploy("hd-rev", {"handler.py": INTERNAL.format(rev=2)})
    forged = {"x-polyfn-revision": "1", "x-polyfn-idempotency-key": "forged", "x-polyfn-attempt": "9",
              "x-polyfn-event-hops": "1"}
    ids = []
    for path, extra in [("/fn/hd-rev", {"x-polyfn-async": "true"}), ("/async-function/hd-rev", {})]:
        for rev in ("1", "junk"):
            r = server.http.post(path, content=b"{}", headers={**forged, **extra, "x-polyfn-revision": rev})
            assert r.status_code == 202, r.text
            ids.append(r.headers.get("x-polyfn-activation-id") or r.headers["x-call-id"].replace("-", ""))
    for aid in ids:
        act = final(server, aid)
        assert act["status"] == "success" and act["revision"] == 2, act
        assert json.loads(act["result"]) == {"rev": 2, "internal": [["x-polyfn-idempotency-key", aid],
                                                                    ["x-polyfn-attempt", "1"]]}, act
    r = server.api.post("/v1/functions/hd-rev/invoke?mode=async", json={}, headers=forged)
    act = final(server, r.json()["activation_id"])  # (an event: the function sees no headers)
    assert act["status"] == "success" and act["revision"] == 2, act
    r = server.http.post("/fn/hd-rev", content=b"{}", headers=forged)  # and the synchronous paths
    assert r.status_code == 200 and r.json() == {"rev": 2, "internal": []}, r.text
    r = server.api.post("/v1/functions/hd-rev/invoke", json={}, headers=forged)
    assert r.status_code == 200 and r.json()["internal"] == [], r.text
