"""Embedded topics end to end: `polyfn publish` → topic trigger → batches (TYPE_QUEUE_BATCH), SQS-style partial
batch failure (only the failed items are retried), a poison message (retries, then the dead-letter queue, and
the trigger keeps going)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import Server, error_code, wait_until

HOST_FS = True  # functions write state files the test reads (conftest.HOST_FS)


@pytest.fixture(scope="module")
def server(server_on_each_queue: Server) -> Server:
    """Every test here runs with the queue file and with the cluster's JetStream topics stream."""
    return server_on_each_queue

CONSUMER = '''
import json, os
def handler(event, context):
    assert event["type"] == "io.polyfn.queue.batch", event["type"]
    msgs = event["data"]["messages"]
    failures = []
    for m in msgs:
        body = json.loads(m["body"])
        path = os.path.join(os.environ["STATE"], m["id"])
        with open(path, "a") as f:
            f.write("x")
        n = len(open(path).read())
        with open(os.path.join(os.environ["STATE"], "log"), "a") as f:
            f.write(json.dumps({"n": body["n"], "try": n, "batch": len(msgs), "attr": m["attributes"]}) + "\\n")
        if body.get("fail", 0) >= n:
            failures.append({"itemIdentifier": m["id"]})
    return {"batchItemFailures": failures}
'''


def log(state: Path) -> list[dict]:
    f = state / "log"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


def test_publish_batches_partial_failure_and_poison(server: Server, tmp_path: Path) -> None:
    server.deploy("tp-consumer", {"handler.py": CONSUMER}, env={"STATE": str(tmp_path)}, retry_attempts=2,
                  retry_backoff=0.05)
    r = server.cli("trigger", "add", "tp-consumer", "topic", "orders", "-o", "batch_size=10", "--id", "tp-orders",
                   check=True)
    assert "added trigger tp-orders" in r.stdout

    r = server.cli("publish", "orders", "-d", '{"n": 0}', "--attr", "region=cn", check=True)
    assert "1 subscriber" in r.stdout
    assert wait_until(lambda: len(log(tmp_path)) == 1)
    assert log(tmp_path)[0]["attr"]["region"] == "cn"

    # one message fails once (retried alone), one always fails (dead-lettered), the rest succeed once
    bodies = [{"n": i} for i in range(1, 21)]
    bodies[4]["fail"] = 1
    bodies[9]["fail"] = 99
    for b in bodies:
        assert server.api.post("/v1/topics/orders/messages", json=b).status_code == 201
    server.api.post("/v1/topics/orders/messages", json={"n": 21})  # after the poison message

    def tries() -> dict[int, int]:
        out: dict[int, int] = {}
        for e in log(tmp_path):
            out[e["n"]] = out.get(e["n"], 0) + 1
        return out

    assert wait_until(lambda: len(tries()) == 22 and tries()[5] == 2 and tries()[10] == 2, 20), tries()
    assert wait_until(lambda: server.api.get("/v1/triggers/tp-orders").json()["dead_lettered"] == 1)
    t = tries()
    assert all(t[n] == 1 for n in t if n not in (5, 10)), t
    assert max(e["batch"] for e in log(tmp_path)) <= 10

    dead = json.loads(server.cli("dlq", "list", "tp-consumer", "--json", check=True).stdout)
    assert len(dead) == 1 and dead[0]["trigger"] == "topic"
    shown = server.api.get(f"/v1/dlq/{dead[0]['id']}").json()
    assert json.loads(json.loads(shown["body"])["data"]["body"]) == {"n": 10, "fail": 99}

    trig = server.api.get("/v1/triggers/tp-orders").json()
    assert trig["health"]["state"] == "connected" and trig["delivered"] == 21


def test_publish_bad_input(server: Server) -> None:
    r = server.api.post("/v1/topics/bad topic!/messages", content=b"x")
    assert r.status_code == 400 and error_code(r) == "invalid_topic"
    r = server.api.post("/v1/topics/nobody/messages", content=b"x")
    assert r.status_code == 201 and r.json()["subscribers"] == 0
