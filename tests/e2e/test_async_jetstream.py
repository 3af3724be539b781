"""The cluster's async queue: nodes whose accepted async invocations wait in one NATS JetStream stream.

Any node with room runs a job, whichever node accepted it; a node killed with jobs in hand loses none (they
run on another node once their ack wait is over); NATS going away makes new async calls fail clearly (503)
while what was accepted waits in the stream. The nodes here do not share a database (each deploys the
function itself): the queue is what is under test. Needs the machine's NATS with JetStream (skipped without
it, a failure under CI=true); the NATS restart test starts a nats-server of its own.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .brokers import nats_broker
from .conftest import (
    REPO,
    Server,
    error_code,
    free_port,
    jetstream_queue_env,
    start_server,
    wait_until,
)
from .test_async import RECORD, final

HOST_FS = True


def done(state: Path) -> list[str]:
    log = state / "done.log"
    return log.read_text().split() if log.exists() else []


def ran_on(node: Server, function: str) -> set[str]:
    r = node.api.get("/v1/activations", params={"function": function, "limit": 1000})
    assert r.status_code == 200, r.text
    return {a["id"] for a in r.json()["activations"] if a["status"] == "success"}


def submit(node: Server, function: str, event: dict) -> str:
    r = node.api.post(f"/v1/functions/{function}/invoke?mode=async", json=event)
    assert r.status_code == 202, r.text
    return r.json()["activation_id"]


def test_jobs_of_a_killed_node_run_on_another_and_nodes_share_the_backlog(
        tmp_path: Path, jetstream_queue: dict[str, str]) -> None:
    state = tmp_path / "state"
    state.mkdir()
    spec = {"env": {"STATE": str(state)}, "max_instances": 1}
    a = start_server(tmp_path / "a", env=jetstream_queue, host_fs=True)
    b = None
    try:
        a.deploy("slow", {"handler.py": RECORD}, **spec)
        ids = [submit(a, "slow", {"sleep": 0.4}) for _ in range(8)]
        assert wait_until(lambda: len(done(state)) >= 1, 20)
        a.stop(signal.SIGKILL)  # holding the running job and one more; the rest wait in the stream
        finished_by_a = set(done(state))
        assert len(finished_by_a) < len(ids)

        b = start_server(tmp_path / "b", env=jetstream_queue, host_fs=True)
        b.deploy("slow", {"handler.py": RECORD}, **spec)
        assert wait_until(lambda: set(ids) <= set(done(state)), 40), f"lost: {set(ids) - set(done(state))}"
        assert set(ids) - finished_by_a <= ran_on(b, "slow")  # the dead node's jobs included (after its ack wait)

        # Both nodes up: a backlog accepted by one node is run by both.
        a = start_server(tmp_path / "a", env=jetstream_queue, host_fs=True)
        more = [submit(a, "slow", {"sleep": 0.3}) for _ in range(12)]
        assert wait_until(lambda: set(more) <= set(done(state)), 40)
        on_a, on_b = ran_on(a, "slow") & set(more), ran_on(b, "slow") & set(more)
        assert on_a and on_b and on_a | on_b == set(more), (len(on_a), len(on_b))
        assert all(done(state).count(i) == 1 for i in more)  # each ran once
        assert a.api.get("/v1/queue").json()["pending"] == 0
    finally:
        a.stop()
        if b is not None:
            b.stop()


def test_a_job_longer_than_the_ack_wait_runs_once(tmp_path: Path, jetstream_queue: dict[str, str]) -> None:
    """The node running a job heartbeats it: another node does not take it when the ack wait (2 s) is over."""
    state = tmp_path / "state"
    state.mkdir()
    nodes = [start_server(tmp_path / n, env=jetstream_queue, host_fs=True) for n in ("a", "b")]
    try:
        for n in nodes:
            n.deploy("long", {"handler.py": RECORD}, env={"STATE": str(state)}, timeout=30)
        aid = submit(nodes[0], "long", {"sleep": 5})
        assert wait_until(lambda: aid in done(state), 30)
        time.sleep(5)  # a second run, had it started at the ack wait's end, would have finished by now
        assert done(state) == [aid]
        assert sum(aid in ran_on(n, "long") for n in nodes) == 1
    finally:
        for n in nodes:
            n.stop()


@pytest.fixture
def node(tmp_path: Path, jetstream_queue: dict[str, str]) -> Iterator[tuple[Server, Path]]:
    """One node on a stream of the test's own, and the directory its functions write to."""
    state = tmp_path / "state"
    state.mkdir()
    s = start_server(tmp_path / "data", env=jetstream_queue, host_fs=True)
    yield s, state
    s.stop()


def test_backlog_is_visible_in_the_queue_api_metrics_and_activation(node: tuple[Server, Path]) -> None:
    s, state = node
    s.deploy("busy", {"handler.py": RECORD}, env={"STATE": str(state)}, max_instances=1)
    ids = [submit(s, "busy", {"sleep": 1.0}) for _ in range(5)]
    q = s.api.get("/v1/queue").json()
    assert q["pending"] + q["running"] >= 4, q
    metrics = s.http.get("/metrics").text
    line = next(ln for ln in metrics.splitlines() if ln.startswith('polyfn_async_backlog{function="busy"}'))
    assert float(line.split()[-1]) >= 4, line
    last = s.activation(ids[-1])
    assert last["status"] == "pending" and last["function"] == "busy", last
    assert final(s, ids[-1], 30)["status"] == "success"
    assert s.api.get("/v1/queue").json()["pending"] == 0


def test_a_deleted_function_s_queued_jobs_are_dead_lettered(node: tuple[Server, Path]) -> None:
    """As with the queue file: jobs of a function that is gone go to the dead-letter queue (function_not_found)
    instead of waiting in the stream for a node that serves the name."""
    s, state = node
    s.deploy("gone", {"handler.py": RECORD}, env={"STATE": str(state)}, max_instances=1)
    ids = [submit(s, "gone", {"sleep": 1.0}) for _ in range(5)]
    assert wait_until(lambda: s.activation(ids[0])["status"] == "running", 10)
    assert s.api.delete("/v1/functions/gone").status_code == 200

    def dead() -> set[str]:
        return {e["id"] for e in s.api.get("/v1/dlq", params={"function": "gone"}).json()["dead_letters"]}

    # each job either ran (the one running at the delete, maybe the next one held here) or is dead-lettered
    assert wait_until(lambda: dead() | set(done(state)) == set(ids), 20), (dead(), done(state))
    assert len(dead()) >= 3 and not dead() & set(done(state))
    shown = s.api.get(f"/v1/dlq/{sorted(dead())[0]}").json()
    assert shown["reason"] == "function_not_found", shown
    assert wait_until(lambda: s.api.get("/v1/queue").json()["pending"] == 0, 10)


TOPIC_SINK = """
import json, os, time
def handler(event, context):
    time.sleep(0.1)
    with open(os.path.join(os.environ["STATE"], "topic.log"), "a") as f:
        for m in event["data"]["messages"]:
            f.write(str(json.loads(m["body"])["n"]) + "\\n")
    return {}
"""


def test_topic_messages_are_shared_by_the_nodes_running_the_trigger(tmp_path: Path,
                                                                     jetstream_queue: dict[str, str]) -> None:
    """An embedded-topic trigger runs on every node (as triggers do in a cluster); its messages wait in the
    cluster's topics stream, so a message published on one node is delivered once, by whichever node."""
    state = tmp_path / "state"
    state.mkdir()
    nodes = [start_server(tmp_path / n, env=jetstream_queue, host_fs=True) for n in ("a", "b")]
    try:
        for n in nodes:
            n.deploy("sink", {"handler.py": TOPIC_SINK}, env={"STATE": str(state)})
            r = n.api.post("/v1/functions/sink/triggers",
                           json={"kind": "topic", "id": "shared-orders", "config": {"topic": "orders", "batch_size": 1}})
            assert r.status_code == 201, r.text
        for i in range(20):
            assert nodes[0].api.post("/v1/topics/orders/messages", json={"n": i}).status_code == 201

        def got() -> list[str]:
            f = state / "topic.log"
            return f.read_text().split() if f.exists() else []

        assert wait_until(lambda: len(got()) >= 20, 30), got()
        time.sleep(1)
        assert sorted(got(), key=int) == [str(i) for i in range(20)]  # each once
        per_node = [sum(a["trigger"] == "topic" for a in n.api.get("/v1/activations",
                        params={"function": "sink", "limit": 100}).json()["activations"]) for n in nodes]
        assert sum(per_node) == 20 and all(per_node), per_node  # both nodes took some
    finally:
        for n in nodes:
            n.stop()


def test_nats_down_refuses_new_async_calls_and_keeps_accepted_ones(tmp_path: Path) -> None:
    broker = nats_broker(tmp_path / "nats").start()
    env = jetstream_queue_env(f"nats://127.0.0.1:{broker.port}")
    state = tmp_path / "state"
    state.mkdir()
    s = start_server(tmp_path / "data", env=env, host_fs=True)
    try:
        s.deploy("later", {"handler.py": RECORD}, env={"STATE": str(state)}, max_instances=1)
        first = submit(s, "later", {"sleep": 2.0})  # holds the only instance
        queued = submit(s, "later", {"sleep": 0})
        assert wait_until(lambda: s.activation(first)["status"] == "running", 10)
        assert s.http.get("/healthz").json()["queue"]["connected"] is True
        broker.stop()
        assert wait_until(lambda: s.http.get("/healthz").json()["status"] == "degraded", 10)
        assert s.http.get("/healthz").json()["queue"] == {"backend": "nats-jetstream", "connected": False,
                                                          "stream": env["POLYFN_QUEUE_STREAM"]}
        r = s.api.post("/v1/functions/later/invoke?mode=async", json={}, timeout=30)
        assert r.status_code == 503 and error_code(r) == "queue_unavailable", r.text
        assert "NATS" in r.json()["error"]["message"]
        from botocore.exceptions import ClientError

        from .test_lambda_versions import client as lambda_client

        try:  # a Lambda `Event` invoke: a retryable service error, not a bad parameter
            lambda_client(s).invoke(FunctionName="later", InvocationType="Event", Payload=b"{}")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ServiceException", e.response
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        else:
            raise AssertionError("the Event invoke was accepted with NATS down")
        broker.start()  # the same store directory: the accepted job is still in the stream
        assert wait_until(lambda: {first, queued} <= set(done(state)), 40), done(state)
        assert final(s, queued)["status"] == "success"
        assert s.http.get("/healthz").json()["status"] == "ok"
    finally:
        s.stop()
        broker.stop()


def test_queue_settings_are_checked_at_start(tmp_path: Path) -> None:
    port = free_port()  # nobody listens there
    try:
        start_server(tmp_path / "a", env={"POLYFN_QUEUE_URL": f"nats://127.0.0.1:{port}"})
    except RuntimeError as e:
        assert f"cannot reach NATS at nats://127.0.0.1:{port}" in str(e)
    else:
        raise AssertionError("the node started without its queue")
    r = subprocess.run([sys.executable, "-m", "polyfn", "serve", "--data-dir", str(tmp_path / "b")],
                       capture_output=True, text=True, timeout=60, cwd=REPO,
                       env={"PATH": "/usr/bin:/bin", "POLYFN_QUEUE_URL": "http://127.0.0.1:4222"})
    assert r.returncode != 0 and "queue_url" in (r.stdout + r.stderr), r.stdout + r.stderr
