"""`polyfn cancel ID` / `DELETE /v1/activations/ID` (issue #18, item 5): a running invocation, sync or async,
is stopped and recorded as cancelled with what it printed; an async one that has not started, or is waiting
for a retry, goes to the dead-letter queue instead of running — on the node's queue file and on the cluster's
JetStream queue alike."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server, error_code, start_server, wait_until
from .storage_helpers import s3_client

SLEEPER = '''import time
import boto3

def handler(event, context):
    print("started", context.activation_id, flush=True)
    boto3.client("s3").put_object(Bucket="cancel-runs", Key=context.activation_id, Body=b"")
    time.sleep(120)
    return "finished"
'''

FAILER = '''def handler(event, context):
    raise RuntimeError("always")
'''


@pytest.fixture(scope="module")
def server(server_on_each_queue: Server) -> Server:
    return server_on_each_queue


def _running(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket="cancel-runs").get("Contents", [])]


def test_cancel_a_running_sync_invocation(server: Server) -> None:
    s3 = s3_client(server)
    s3.create_bucket(Bucket="cancel-runs")
    server.deploy("cx-sleep", {"handler.py": SLEEPER}, timeout=300)
    got: dict[str, httpx.Response] = {}
    caller = threading.Thread(target=lambda: got.setdefault("r", server.http.post("/fn/cx-sleep", json={})))
    caller.start()
    assert wait_until(lambda: _running(s3), timeout=60)
    aid = _running(s3)[0]
    r = server.cli("cancel", aid)
    assert r.returncode == 0 and "stopped while it ran" in r.stdout, r.stderr
    caller.join(60)
    resp = got["r"]
    assert resp.status_code == 499 and error_code(resp) == "function_cancelled", resp.text
    act = server.activation(aid)
    assert act["status"] == "cancelled" and act["status_code"] == 499
    again = server.api.delete(f"/v1/activations/{aid}")
    assert again.status_code == 409 and error_code(again) == "not_cancellable"
    assert server.api.delete("/v1/activations/nope").status_code == 404
    assert server.http.get("/healthz").status_code == 200


def test_cancel_a_running_async_attempt_is_not_retried(server: Server) -> None:
    s3 = s3_client(server)
    s3.create_bucket(Bucket="cancel-runs")
    server.deploy("cx-async", {"handler.py": SLEEPER}, timeout=300)
    before = set(_running(s3))
    r = server.api.post("/v1/functions/cx-async/invoke", params={"mode": "async"}, json={})
    assert r.status_code == 202, r.text
    aid = r.json()["activation_id"]
    assert wait_until(lambda: aid in set(_running(s3)) - before, timeout=60)
    assert server.api.delete(f"/v1/activations/{aid}").json()["was"] == "running"
    assert wait_until(lambda: server.activation(aid)["status"] == "cancelled", timeout=30), server.activation(aid)
    # a cancel is final: the attempt was settled as done (a result), not rescheduled nor dead-lettered
    assert server.activation(aid)["status_code"] == 499
    assert server.api.get("/v1/dlq", params={"function": "cx-async"}).json()["dead_letters"] == []


def test_cancel_an_async_invocation_waiting_for_its_retry(server: Server) -> None:
    server.deploy("cx-fail", {"handler.py": FAILER}, retry_attempts=3, retry_backoff=300)
    aid = server.api.post("/v1/functions/cx-fail/invoke", params={"mode": "async"}, json={}).json()["activation_id"]
    assert wait_until(lambda: server.activation(aid).get("next_attempt_at"), timeout=60), server.activation(aid)
    r = server.api.delete(f"/v1/activations/{aid}")
    assert r.status_code == 200 and r.json()["was"] == "pending", r.text
    act = server.activation(aid)
    assert act["status"] == "dead_letter" and act["dead_letter_reason"] == "cancelled", act
    dead = server.api.get("/v1/dlq", params={"function": "cx-fail"}).json()["dead_letters"]
    assert [d["id"] for d in dead] == [aid] and dead[0]["reason"] == "cancelled"


def test_cancel_an_async_invocation_that_has_not_started(server: Server) -> None:
    """One instance, one at a time: of five async calls one runs, the node holds the next (waiting for the
    instance: on the JetStream queue its prefetch is one), the others wait in the queue. The second (held) and
    the fourth (in the queue file's prefetch, or still in the stream) are cancelled: they go to the dead-letter
    queue and never run; the others run in order, so once the fifth has run the fourth would have."""
    s3 = s3_client(server)
    s3.create_bucket(Bucket="cancel-runs")
    server.deploy("cx-one", {"handler.py": SLEEPER}, timeout=300, max_instances=1, concurrency=1)
    ids = [server.api.post("/v1/functions/cx-one/invoke", params={"mode": "async"}, json={}).json()["activation_id"]
           for _ in range(5)]
    assert wait_until(lambda: ids[0] in _running(s3), timeout=60)
    for aid in (ids[1], ids[3]):
        r = server.cli("cancel", aid)
        assert r.returncode == 0, r.stdout + r.stderr
        act = server.activation(aid)
        assert act["status"] == "dead_letter" and act["dead_letter_reason"] == "cancelled", act
    dead = server.api.get("/v1/dlq", params={"function": "cx-one"}).json()["dead_letters"]
    assert sorted(d["id"] for d in dead) == sorted([ids[1], ids[3]])
    for aid in (ids[0], ids[2], ids[4]):  # the others run, one after the other (each cancelled once it started)
        assert wait_until(lambda aid=aid: aid in _running(s3), timeout=60), (aid, server.activation(aid))
        assert server.api.delete(f"/v1/activations/{aid}").json()["was"] == "running"
        assert wait_until(lambda aid=aid: server.activation(aid)["status"] == "cancelled", timeout=30)
    for aid in (ids[1], ids[3]):
        assert aid not in _running(s3) and server.activation(aid)["status"] == "dead_letter"
        again = server.api.delete(f"/v1/activations/{aid}")
        assert again.status_code == 409 and error_code(again) == "not_cancellable", again.text
        assert "is dead" in again.text, again.text


def test_cancel_through_any_node_of_a_cluster(tmp_path: Path, jetstream_queue: dict[str, str]) -> None:
    """Two nodes on one JetStream queue; only node A serves the function. Through node B: a job still in the
    stream is taken out by B itself, one A holds waiting for its instance and the attempt A runs are
    cancelled by A when B asks (core NATS request/reply); so is a sync call running on A. None of the
    cancelled jobs runs; the queue moves on."""
    a = start_server(tmp_path / "a", env=jetstream_queue)
    b = start_server(tmp_path / "b", env=jetstream_queue)
    try:
        s3 = s3_client(a)
        s3.create_bucket(Bucket="cancel-runs")
        a.deploy("cx-cluster", {"handler.py": SLEEPER}, timeout=300, max_instances=1, concurrency=1)
        ids = [a.api.post("/v1/functions/cx-cluster/invoke", params={"mode": "async"}, json={}).json()["activation_id"]
               for _ in range(3)]
        assert wait_until(lambda: ids[0] in _running(s3), timeout=60)
        for aid in (ids[2], ids[1]):  # in the stream (or held by A), held by A waiting for the instance
            r = b.api.delete(f"/v1/activations/{aid}")
            assert r.status_code == 200 and r.json()["was"] == "pending", r.text
        r = b.api.delete(f"/v1/activations/{ids[0]}")
        assert r.status_code == 200 and r.json()["was"] == "running", r.text
        assert wait_until(lambda: a.activation(ids[0])["status"] == "cancelled", timeout=30), a.activation(ids[0])

        got: dict[str, httpx.Response] = {}
        caller = threading.Thread(target=lambda: got.setdefault("r", a.http.post("/fn/cx-cluster", json={})))
        caller.start()
        assert wait_until(lambda: len(_running(s3)) == 2, timeout=60), _running(s3)
        sync_id = next(k for k in _running(s3) if k != ids[0])
        r = b.cli("cancel", sync_id)
        assert r.returncode == 0 and "stopped while it ran" in r.stdout, r.stdout + r.stderr
        caller.join(60)
        assert got["r"].status_code == 499 and error_code(got["r"]) == "function_cancelled", got["r"].text

        assert set(_running(s3)) == {ids[0], sync_id}  # the two cancelled before they ran never did
        dead = {d["id"] for node in (a, b) for d in node.api.get("/v1/dlq").json()["dead_letters"]}
        assert {ids[1], ids[2]} <= dead, dead
        assert b.api.delete("/v1/activations/nope").status_code == 404
    finally:
        a.stop()
        b.stop()
