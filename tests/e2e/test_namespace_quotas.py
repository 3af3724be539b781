"""Namespace quotas and namespace deletion against a real node: every quota refuses with 429 `quota_exceeded` naming
itself, its limit and the use; a namespace at its memory quota cannot starve another namespace's cold starts
(the node's memory budget would otherwise be gone); deleting a namespace removes what it owns and waits for its
running invocations unless forced."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server, error_code, start_server, wait_until

SLEEPY = '''
import time
def handler(event, context):
    time.sleep((event or {}).get("s", 0))
    return {"ok": True}
'''


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # a node whose memory budget has room for 4 instances of 128 MB (and one function may take half of it)
    s = start_server(tmp_path_factory.mktemp("quotas") / "data", env={"POLYFN_MEMORY_BUDGET": "512"})
    yield s
    s.stop()


def _ns(node: Server, name: str, **quotas: Any) -> httpx.Client:
    r = node.api.post("/v1/namespaces", json={"name": name, "quotas": quotas})
    assert r.status_code == 201, r.text
    r = node.api.post("/v1/keys", json={"scope": "deploy", "namespace": name})
    key = f"{r.json()['access_key_id']}:{r.json()['secret_access_key']}"
    return httpx.Client(base_url=node.url, timeout=120, headers={"authorization": f"Bearer {key}"})


def _deploy(c: httpx.Client, name: str, **spec: Any) -> httpx.Response:
    return c.post("/v1/functions", json={"name": name, "files": {"handler.py": SLEEPY}, **spec})


def _quota_error(r: httpx.Response, quota: str, limit: float) -> dict[str, Any]:
    assert r.status_code == 429 and error_code(r) == "quota_exceeded", r.text
    err = r.json()["error"]
    assert err["quota"] == quota and err["limit"] == limit and isinstance(err["used"], int | float), err
    return err


def test_the_functions_quota_refuses_a_new_function_but_not_a_new_revision(node: Server) -> None:
    c = _ns(node, "q-fn", functions=1)
    assert _deploy(c, "one").status_code == 201
    err = _quota_error(_deploy(c, "two"), "functions", 1)
    assert err["used"] == 1 and err["namespace"] == "q-fn"
    assert _deploy(c, "one", memory=256).status_code in (200, 201)  # a new revision of what exists
    assert node.api.patch("/v1/namespaces/q-fn", json={"quotas": {"functions": None}}).status_code == 200
    assert _deploy(c, "two").status_code == 201
    r = node.api.patch("/v1/namespaces/q-fn", json={"quotas": {"functions": 1.5}})
    assert r.status_code == 400 and error_code(r) == "invalid_quota"


def test_a_namespace_at_its_memory_quota_cannot_starve_another_namespaces_cold_starts(node: Server) -> None:
    hog = _ns(node, "hog", memory_mb=256)
    victim = _ns(node, "victim")
    for name in ("hog-a", "hog-b"):  # two functions: the per-function share (half the budget) does not stop it
        assert _deploy(hog, name, memory=128).status_code == 201
    assert _deploy(victim, "cold", memory=128).status_code == 201

    def call(url: str, s: float) -> httpx.Response:
        return node.http.post(url, json={"s": s}, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        flood = [pool.submit(call, f"/fn/hog/{n}", 4) for n in ("hog-a", "hog-b") for _ in range(3)]
        assert wait_until(lambda: node.api.get("/v1/namespaces/hog").json()["usage"]["instances"]["used"] >= 2,
                          timeout=30)
        used = node.api.get("/v1/namespaces/hog").json()["usage"]
        assert used["memory_mb"] == {"limit": 256, "used": 256}, used
        # the hog's 6 callers would want 6 × 128 MB: more than the whole budget. It has 256 MB, and the victim's
        # cold start finds room while every hog instance is busy
        r = node.http.post("/fn/victim/cold", json={"s": 0})
        assert r.status_code == 200, r.text
        act = victim.get(f"/v1/activations/{r.headers['x-polyfn-activation-id']}").json()
        assert act["cold"] is True and act["namespace"] == "victim", act
        answers = [f.result() for f in flood]
    refused = [r for r in answers if r.status_code == 429]
    assert all(r.status_code in (200, 429) for r in answers), [r.text for r in answers]
    for r in refused:  # a hog function with no instance of its own is refused at once, naming the quota
        _quota_error(r, "memory_mb", 256)
        assert r.headers["retry-after"] == "1"
    assert sum(r.status_code == 200 for r in answers) >= 2


def test_the_instances_rate_and_backlog_quotas(node: Server) -> None:
    c = _ns(node, "q-rate", invocations_per_second=2, instances=1, async_backlog=1)
    assert _deploy(c, "fast").status_code == 201
    assert _deploy(c, "other").status_code == 201
    codes = [node.http.post("/fn/q-rate/fast", json={}) for _ in range(8)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and all(r.status_code == 200 for r in codes[:2]), [r.status_code for r in codes]
    err = _quota_error(limited[0], "invocations_per_second", 2)
    # `used`: calls admitted in the current second (quotas.rate_used): 1 when the two admitted calls straddled a
    # second's boundary (the bucket refused the third all the same)
    assert int(limited[0].headers["retry-after"]) >= 1 and err["used"] >= 1
    time.sleep(1.5)  # the bucket refills
    r = node.http.post("/fn/q-rate/other", json={})  # `fast`'s idle instance is evicted to make room
    assert r.status_code == 200, r.text
    time.sleep(1.5)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # while `other`'s one instance is busy, `fast` has none
        busy = pool.submit(node.http.post, "/fn/q-rate/other", json={"s": 3}, timeout=60)
        assert wait_until(lambda: node.api.get("/v1/functions/other", params={"namespace": "q-rate"}).json()[
            "instances"]["busy"] == 1, timeout=20)
        _quota_error(node.http.post("/fn/q-rate/fast", json={}), "instances", 1)
        assert node.api.get("/v1/namespaces/q-rate").json()["usage"]["instances"] == {"limit": 1, "used": 1}
        assert busy.result().status_code == 200
    # the async backlog: one accepted job at a time
    node.api.patch("/v1/namespaces/q-rate", json={"quotas": {"instances": None, "invocations_per_second": None}})
    time.sleep(2.5)  # (the namespaces' cache is re-read within 2 s)
    first = c.post("/v1/functions/fast/invoke", params={"mode": "async"}, json={"s": 3})
    assert first.status_code == 202, first.text
    second = c.post("/v1/functions/fast/invoke", params={"mode": "async"}, json={})
    _quota_error(second, "async_backlog", 1)


def test_deleting_a_namespace_removes_what_it_owns_and_waits_for_its_runs_unless_forced(fresh_server: Server) -> None:
    import boto3
    from botocore.config import Config

    node = fresh_server  # (its own node: the memory the other tests' functions hold is not in the way)
    c = _ns(node, "doomed")
    assert _deploy(c, "worker").status_code == 201
    r = c.post("/v1/functions/worker/triggers", json={"kind": "cron", "config": {"schedule": "0 0 1 1 *"}})
    assert r.status_code == 201, r.text
    key = c.headers["authorization"].split(" ", 1)[1]
    akid, _, secret = key.partition(":")
    cfg = dict(region_name="us-east-1", aws_access_key_id=akid, aws_secret_access_key=secret,
               config=Config(retries={"max_attempts": 1}))
    s3 = boto3.client("s3", endpoint_url=node.api.get("/v1/storage").json()["endpoint"], **cfg)
    s3.create_bucket(Bucket="doomed-files")
    s3.put_object(Bucket="doomed-files", Key="a", Body=b"a")
    ddb = boto3.client("dynamodb", endpoint_url=node.url, **cfg)
    ddb.create_table(TableName="doomed-table", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    r = node.api.put("/v1/secrets/DB_PASSWORD", params={"namespace": "doomed"}, json={"value": "hunter2"})
    assert r.status_code == 200, r.text
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(node.http.post, "/fn/doomed/worker", json={"s": 3}, timeout=60)
        assert wait_until(lambda: node.api.get("/v1/namespaces/doomed").json()["usage"]["instances"]["used"] >= 1
                          or running.done(), timeout=30)
        assert not running.done(), running.result().text
        time.sleep(0.5)
        r = node.api.delete("/v1/namespaces/doomed")
        assert r.status_code == 409 and error_code(r) == "namespace_busy", r.text
        r = node.cli("ns", "delete", "doomed", "--force")
        assert r.returncode == 0, r.stderr
        assert "1 functions" in r.stdout and "1 buckets" in r.stdout and "1 tables" in r.stdout, r.stdout
        assert "1 secrets" in r.stdout, r.stdout
        assert running.result().status_code == 200  # the forced delete let the running call finish
    r = node.api.get("/v1/namespaces/doomed")
    assert r.status_code == 404 and error_code(r) == "namespace_not_found"
    assert node.http.post("/fn/doomed/worker").status_code == 404
    assert c.get("/v1/functions").status_code == 401  # its keys are revoked
    assert "doomed-files" not in {b["Name"] for b in boto3.client(
        "s3", endpoint_url=node.api.get("/v1/storage").json()["endpoint"], region_name="us-east-1",
        aws_access_key_id="polyfn-admin", aws_secret_access_key=node.key).list_buckets()["Buckets"]}
    assert not [t for t in node.api.get("/v1/triggers").json()["triggers"] if "worker" in t["function"]]
    # the name can be used again, from nothing
    r = node.api.post("/v1/namespaces", json={"name": "doomed"})
    assert r.status_code == 201
    assert node.api.get("/v1/functions", params={"namespace": "doomed"}).json()["functions"] == []
    assert node.api.get("/v1/secrets", params={"namespace": "doomed"}).json()["secrets"] == []


def test_quota_names_and_values_are_validated(node: Server, tmp_path: Path) -> None:
    for quotas in ({"memory": 1}, {"instances": -1}, {"instances": "many"}, {"functions": True}):
        r = node.api.post("/v1/namespaces", json={"name": "bad-q", "quotas": quotas})
        assert r.status_code == 400 and error_code(r) == "invalid_quota", (quotas, r.text)
    r = node.cli("ns", "create", "bad-q", "--quota", "memory_mb")
    assert r.returncode == 2 and "NAME=VALUE" in r.stderr
