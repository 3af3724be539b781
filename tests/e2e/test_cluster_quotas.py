"""A namespace's quotas hold across the nodes of a cluster (two real nodes sharing PostgreSQL and a NATS JetStream
queue; docs/tenancy.md "In a cluster"): an instance busy on one node is counted by the other, which refuses a start
with 429 naming the `instances` quota and gets the instance once the first node lets its idle one go; functions,
database items and the async backlog made through both nodes add up; each node serving a namespace's calls
admits its share of the rate.
Needs PostgreSQL and NATS (skipped without them, a failure under CI=true)."""

from __future__ import annotations

import concurrent.futures
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server, error_code, start_server, wait_until
from .test_namespace_storage import _aws, _refused

SLEEPY = '''
import time
def handler(event, context):
    time.sleep((event or {}).get("s", 0))
    return {"ok": True}
'''


def _start(tmp_path: Path, name: str, env: dict[str, str]) -> Server:
    """Nodes on one host read each other's data dirs (no artifact bucket); they share the node key."""
    (tmp_path / name).mkdir(exist_ok=True)
    first = tmp_path / "a" / "node.key"
    if name != "a" and first.exists():
        shutil.copy2(first, tmp_path / name / "node.key")
    return start_server(tmp_path / name, env=env)


def _client(node: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=node.url, timeout=120, headers={"authorization": f"Bearer {key}"})


def _quota_error(r: httpx.Response, quota: str, limit: float, used: float) -> httpx.Response:
    assert r.status_code == 429 and error_code(r) == "quota_exceeded", r.text
    err = r.json()["error"]
    assert (err["quota"], err["limit"], err["used"]) == (quota, limit, used), err
    return r


def _used(node: Server, ns: str, quota: str) -> Any:
    return node.api.get(f"/v1/namespaces/{ns}").json()["usage"][quota]["used"]


@pytest.mark.timeout(300)
def test_quotas_hold_across_two_nodes(tmp_path: Path, pg_url: str, jetstream_queue: dict[str, str]) -> None:
    env = {"POLYFN_DATABASE_URL": pg_url, "POLYFN_SYNC_INTERVAL": "0.3", "POLYFN_DRAIN_TIMEOUT": "1",
           **jetstream_queue}
    nodes: list[Server] = []
    try:
        a = _start(tmp_path, "a", env)
        nodes.append(a)
        keys = {}
        for ns, quotas in (("team", {"instances": 1, "functions": 2, "db_items": 2}),
                           ("queued", {"async_backlog": 1}), ("rated", {"invocations_per_second": 0.002})):
            assert a.api.post("/v1/namespaces", json={"name": ns, "quotas": quotas}).status_code == 201
            r = a.api.post("/v1/keys", json={"scope": "deploy", "namespace": ns})
            keys[ns] = f"{r.json()['access_key_id']}:{r.json()['secret_access_key']}"
        b = _start(tmp_path, "b", env)
        nodes.append(b)
        ta, tb = _client(a, keys["team"]), _client(b, keys["team"])

        # functions: one deployed through each node; a third through either is over
        assert ta.post("/v1/functions", json={"name": "sleepy", "files": {"handler.py": SLEEPY}}).status_code == 201
        assert tb.post("/v1/functions", json={"name": "other", "files": {"handler.py": SLEEPY}}).status_code == 201
        _quota_error(ta.post("/v1/functions", json={"name": "third", "files": {"handler.py": SLEEPY}}),
                     "functions", 2, 2)
        assert wait_until(lambda: tb.get("/v1/functions/sleepy").status_code == 200, 20)

        # instances: a holds the one instance busy; b counts it and refuses a start, naming the quota
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            busy = pool.submit(a.http.post, "/fn/team/sleepy", json={"s": 6}, timeout=120)
            assert wait_until(lambda: _used(b, "team", "instances") == 1, 30), _used(b, "team", "instances")
            r = _quota_error(b.http.post("/fn/team/sleepy", json={}), "instances", 1, 1)
            assert r.headers["retry-after"] == "1"
            assert busy.result().status_code == 200
        # a's instance is idle now: b's refused start asked a for it, a lets it go, and b's call gets its start
        assert wait_until(lambda: b.http.post("/fn/team/sleepy", json={}).status_code == 200, 60)
        assert wait_until(lambda: _used(a, "team", "instances") == 1, 30)  # (b's instance, counted on a)

        # database items: written through both nodes into the shared tables, counted once
        da, db = _aws(a, "dynamodb", keys["team"]), _aws(b, "dynamodb", keys["team"])
        da.create_table(TableName="notes", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
        da.put_item(TableName="notes", Item={"id": {"S": "1"}})
        db.put_item(TableName="notes", Item={"id": {"S": "2"}})
        for ddb in (da, db):
            msg = _refused(lambda d=ddb: d.put_item(TableName="notes", Item={"id": {"S": "3"}}),
                           "LimitExceededException", 400)
            assert "db_items" in msg and "2 used of 2" in msg

        # the async backlog: a job accepted through a (running on either node) fills it for b too
        qa, qb = _client(a, keys["queued"]), _client(b, keys["queued"])
        assert qa.post("/v1/functions", json={"name": "job", "files": {"handler.py": SLEEPY}}).status_code == 201
        assert wait_until(lambda: qb.get("/v1/functions/job").status_code == 200, 20)
        assert qa.post("/v1/functions/job/invoke", params={"mode": "async"}, json={"s": 20}).status_code == 202
        assert wait_until(lambda: _used(b, "queued", "async_backlog") == 1, 10), _used(b, "queued", "async_backlog")
        _quota_error(qb.post("/v1/functions/job/invoke", params={"mode": "async"}, json={}), "async_backlog", 1, 1)

        # the rate: each node serving the namespace's calls admits its share, 0.002 ÷ 2 a second: once both
        # serve it, a drained bucket's next token is ~1,000 s away (a node alone: ~500 s)
        ra, rb = _client(a, keys["rated"]), _client(b, keys["rated"])
        assert ra.post("/v1/functions", json={"name": "tick", "files": {"handler.py": SLEEPY}}).status_code == 201
        assert wait_until(lambda: rb.get("/v1/functions/tick").status_code == 200, 20)
        for node in (b, a):  # (404 until the node serves it: refused before the rate's admission)
            first: list[httpx.Response] = []
            assert wait_until(lambda n=node, f=first: f.append(n.http.post("/fn/rated/tick", json={})) or
                              f[-1].status_code != 404, 20)
            assert first[-1].status_code == 200, first[-1].text
        last: dict[int, httpx.Response] = {}

        def shared() -> bool:  # (each refused call keeps its node serving the namespace)
            for node in (a, b):
                r = last[node.port] = node.http.post("/fn/rated/tick", json={})
                assert r.status_code == 429 and r.json()["error"]["quota"] == "invocations_per_second", r.text
            return all("share: 0.001/s of 2 nodes" in r.json()["error"]["message"] for r in last.values())

        assert wait_until(shared, 30, 0.2), [r.text for r in last.values()]
        assert all(int(r.headers["retry-after"]) > 600 for r in last.values()), [r.headers for r in last.values()]
    finally:
        for node in nodes:
            node.stop()
