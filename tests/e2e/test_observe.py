"""Metrics, stats (`polyfn top`), tracing and logs (grep, since, activation, truncation) against a real node."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .conftest import Server, wait_until

TRACER = '''
import os
def handler(event, context):
    print("trace", context.trace_id, os.environ.get("POLYFN_TRACE_ID"), os.environ.get("TRACEPARENT"))
    return {"trace_id": context.trace_id, "traceparent": context.traceparent,
            "env": os.environ.get("POLYFN_TRACE_ID")}
'''

CHATTY = '''
def handler(event, context):
    n = int(event.get("n", 1)) if isinstance(event, dict) else 1
    for i in range(n):
        print(f"line {i} level={'ERROR' if i % 2 else 'info'}")
    if isinstance(event, dict) and event.get("long"):
        print("x" * event["long"])
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("boom")
    return "ok"
'''


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


def test_traceparent_from_caller_reaches_function_and_activation(server: Server) -> None:
    server.deploy("tracer", {"handler.py": TRACER})
    trace_id = "4bf92f3577b34a0ea0f902b7b0d5c8e1"
    parent = "00f067aa0ba902b7"
    r = server.http.get("/fn/tracer", headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    assert r.status_code == 200, r.text
    body = r.json()
    aid = r.headers["x-polyfn-activation-id"]
    assert body["trace_id"] == trace_id
    assert body["env"] == trace_id
    assert body["traceparent"] == f"00-{trace_id}-{aid[:16]}-01"
    act = server.activation(aid)
    assert act["trace_id"] == trace_id
    assert act["parent_id"] == parent
    assert any(f"00-{trace_id}-{aid[:16]}-01" in ln[2] for ln in act["logs"])

    # the invoke API accepts it too
    r = server.api.post("/v1/functions/tracer/invoke", json={},
                        headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    assert r.json()["trace_id"] == trace_id


def test_without_or_with_invalid_traceparent_a_new_trace_starts(server: Server) -> None:
    server.deploy("tracer2", {"handler.py": TRACER})
    for headers in ({}, {"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
                    {"traceparent": "garbage"}):
        r = server.http.get("/fn/tracer2", headers=headers)
        aid = r.headers["x-polyfn-activation-id"]
        assert r.json()["trace_id"] == aid  # a fresh trace: the activation id is the trace id
        assert server.activation(aid)["parent_id"] == ""


def test_metrics_endpoint_counts_invocations_cold_starts_and_instances(server: Server) -> None:
    server.deploy("metered", {"handler.py": CHATTY})
    for _ in range(3):
        assert server.http.get("/fn/metered").status_code == 200
    assert server.api.post("/v1/functions/metered/invoke", json={"fail": True}).status_code == 500
    r = server.http.get("/metrics")  # public by default, like most exporters
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    text = r.text
    assert _metric(text, "polyfn_invocations_total", function="metered", status="success", trigger="http") == 3
    assert _metric(text, "polyfn_invocations_total", function="metered", status="error", trigger="invoke") == 1
    assert _metric(text, "polyfn_invocation_duration_seconds_count", function="metered") == 4
    assert _metric(text, "polyfn_invocation_duration_seconds_bucket", function="metered", le="+Inf") == 4
    assert _metric(text, "polyfn_cold_starts_total", function="metered") == 1
    assert _metric(text, "polyfn_init_duration_seconds_count", function="metered") == 1
    assert _metric(text, "polyfn_queue_wait_seconds_count", function="metered") == 4
    assert _metric(text, "polyfn_instances", function="metered", state="idle") == 1
    assert _metric(text, "polyfn_queue_depth", function="metered") == 0
    assert _metric(text, "polyfn_instance_starts_total", function="metered") == 1
    assert (_metric(text, "polyfn_memory_reserved_bytes") or 0) >= 256 * 1024 * 1024
    for family in ("polyfn_trigger_errors_total", "polyfn_instance_stops_total", "polyfn_log_floods_total"):
        assert f"# TYPE {family} counter" in text or f"# TYPE {family.removesuffix('_total')} counter" in text


def test_stats_api_and_top_once(server: Server) -> None:
    server.deploy("topped", {"handler.py": CHATTY})
    for _ in range(5):
        server.http.get("/fn/topped")
    stats = server.api.get("/v1/stats").json()
    row = next(f for f in stats["functions"] if f["name"] == "topped")
    assert row["invocations"] == 5 and row["errors"] == 0 and row["cold_starts"] == 1
    assert row["rps"] > 0 and row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"]
    assert row["instances"]["idle"] == 1 and row["deployed"] and row["revision"] == 1
    series = server.api.get("/v1/functions/topped/stats", params={"window": 600}).json()
    assert len(series["points"]) == 60 and series["step_s"] == 10
    assert sum(p["invocations"] for p in series["points"]) == 5
    assert server.api.get("/v1/functions/nope-nope/stats").status_code == 404
    assert server.http.get("/v1/stats").status_code == 401

    r = server.cli("top", "--once", check=True)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("topped"))
    assert line.split()[:2] == ["topped", "1"] and " 5 " in line
    r = server.cli("top", "--once", "--json", check=True)
    assert any(f["name"] == "topped" for f in json.loads(r.stdout)["functions"])


def test_logs_grep_since_activation(server: Server) -> None:
    server.deploy("greppy", {"handler.py": CHATTY})
    r1 = server.api.post("/v1/functions/greppy/invoke", json={"n": 4})
    t_mid = time.time()
    time.sleep(0.05)
    r2 = server.api.post("/v1/functions/greppy/invoke", json={"n": 2})
    a1, a2 = r1.headers["x-polyfn-activation-id"], r2.headers["x-polyfn-activation-id"]

    lines = server.api.get("/v1/functions/greppy/logs", params={"grep": "level=ERROR"}).json()["logs"]
    assert [(ln["activation"], ln["line"]) for ln in lines] == [
        (a1, "line 1 level=ERROR"), (a1, "line 3 level=ERROR"), (a2, "line 1 level=ERROR")]
    lines = server.api.get("/v1/functions/greppy/logs", params={"grep": "(?i)LEVEL=info", "since": t_mid}).json()["logs"]
    assert [ln["line"] for ln in lines] == ["line 0 level=info"]
    lines = server.api.get("/v1/functions/greppy/logs", params={"activation": a2}).json()["logs"]
    assert [ln["line"] for ln in lines] == ["line 0 level=info", "line 1 level=ERROR"]
    bad = server.api.get("/v1/functions/greppy/logs", params={"grep": "("})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_grep"

    r = server.cli("logs", "greppy", "--grep", "ERROR", "--activation", a1, check=True)
    assert [ln.split()[-2:] for ln in r.stdout.splitlines()] == [["1", "level=ERROR"], ["3", "level=ERROR"]]


def test_follow_with_grep_streams_only_matching_lines(server: Server) -> None:
    import threading

    import httpx

    server.deploy("followed", {"handler.py": CHATTY})
    got: list[dict] = []

    def reader() -> None:
        with httpx.Client(base_url=server.url, headers=server.api.headers, timeout=30) as c, c.stream(
                "GET", "/v1/functions/followed/logs", params={"follow": "true", "grep": "ERROR"}) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))
                    if len(got) >= 2:
                        return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.5)
    server.api.post("/v1/functions/followed/invoke", json={"n": 4})
    t.join(20)
    assert [g["line"] for g in got] == ["line 1 level=ERROR", "line 3 level=ERROR"]


def test_floods_and_long_lines_are_truncated_but_the_activation_is_kept(server: Server) -> None:
    server.deploy("flood", {"handler.py": CHATTY})
    r = server.api.post("/v1/functions/flood/invoke", json={"n": 3000, "long": 100_000})
    assert r.status_code == 200 and r.text == '"ok"'
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert act["status"] == "success"
    logs = act["logs"]
    assert len(logs) == 1001  # the per-activation limit (1000) plus the marker
    assert logs[-1][2] == "[polyfn: 2001 more lines dropped]"
    r = server.api.post("/v1/functions/flood/invoke", json={"n": 0, "long": 100_000})
    act = server.activation(r.headers["x-polyfn-activation-id"])
    (line,) = [ln[2] for ln in act["logs"]]
    assert line.endswith("… [truncated 83616 chars]") and len(line) < 16500
    text = server.http.get("/metrics").text
    assert _metric(text, "polyfn_log_floods_total", function="flood") == 1


THREADED = '''
import threading, time
def handler(event, context):
    if isinstance(event, dict) and event.get("start"):
        def later():
            time.sleep(0.05)
            print("from a thread, between invocations")
        threading.Thread(target=later, daemon=True).start()
        return "started"
    return "next"
'''


@pytest.mark.parametrize("concurrency", [1, 4])
def test_lines_a_thread_prints_between_invocations_come_with_the_next_one(server: Server, concurrency: int) -> None:
    """A thread of the function does not inherit an invocation's context: its lines went to the init
    buffer, which was sent once, and were lost after the first invocation. They come with the next result
    (one instance serving one invocation at a time, or several at once)."""
    name = f"threaded{concurrency}"
    server.deploy(name, {"handler.py": THREADED}, concurrency=concurrency)
    assert server.api.post(f"/v1/functions/{name}/invoke", json={}).text == '"next"'  # the first: init lines sent
    assert server.api.post(f"/v1/functions/{name}/invoke", json={"start": True}).text == '"started"'
    time.sleep(0.3)
    r = server.api.post(f"/v1/functions/{name}/invoke", json={})
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert [ln[2] for ln in act["logs"]] == ["from a thread, between invocations"]


def test_server_logs_are_json_lines_when_not_a_tty(server: Server) -> None:
    assert wait_until(lambda: "ready" in server.log.read_text(), 10)
    records = [json.loads(ln) for ln in server.log.read_text().splitlines() if ln.startswith("{")]
    ready = [r for r in records if "ready" in r["msg"]]
    assert ready and {"ts", "level", "logger", "msg"} <= set(ready[0])


def test_instance_stops_are_counted_with_their_reason(server: Server) -> None:
    server.deploy("shortlived", {"handler.py": CHATTY}, keepalive=0)
    assert server.http.get("/fn/shortlived").status_code == 200

    def stops() -> float | None:
        return _metric(server.http.get("/metrics").text, "polyfn_instance_stops_total", function="shortlived",
                       reason="keepalive")

    assert wait_until(lambda: stops() == 1, 10)
    assert _metric(server.http.get("/metrics").text, "polyfn_instances", function="shortlived", state="idle") in (None, 0)


def test_a_call_chain_is_one_trace(server: Server) -> None:
    """Function A calls B with its own TRACEPARENT: B's activation joins A's trace as A's child span."""
    server.deploy("chain-b", {"handler.py": TRACER})
    server.deploy("chain-a", {"handler.py": '''
import json, os, urllib.request
def handler(event, context):
    req = urllib.request.Request(os.environ["B_URL"], headers={"traceparent": os.environ["TRACEPARENT"]})
    with urllib.request.urlopen(req, timeout=10) as r:
        return {"b": json.loads(r.read()), "b_activation": r.headers["x-polyfn-activation-id"]}
'''}, env={"B_URL": server.url + "/fn/chain-b"})
    caller_trace = "0af7651916cd43dd8448eb211c80319c"
    r = server.http.get("/fn/chain-a", headers={"traceparent": f"00-{caller_trace}-b7ad6b7169203331-01"})
    assert r.status_code == 200, r.text
    a_id = r.headers["x-polyfn-activation-id"]
    b = server.activation(r.json()["b_activation"])
    assert b["trace_id"] == caller_trace == server.activation(a_id)["trace_id"]
    assert b["parent_id"] == a_id[:16]  # B's parent span is A's activation span


def test_sdk_client_sends_traceparent(server: Server) -> None:
    from polyfn.sdk.client import Client

    server.deploy("sdk-traced", {"handler.py": TRACER})
    tid = "1af7651916cd43dd8448eb211c80319c"
    with Client(server.url, server.key, traceparent=f"00-{tid}-c7ad6b7169203331-01") as c:
        assert c.invoke("sdk-traced", b"{}").json()["trace_id"] == tid


FAILING = '''
def handler(event, context):
    raise RuntimeError("cannot handle " + event.get("type", "?"))
'''


def test_trigger_errors_counted_on_metrics(server: Server, tmp_path: Path) -> None:
    """polyfn_trigger_errors_total{function, kind, reason}: a topic delivery that fails, a real Redis broker's
    message whose delivery fails, and the same trigger's connection error once the broker is gone."""
    from .brokers import redis_broker
    from .test_brokers import redis_add

    server.deploy("te-fail", {"handler.py": FAILING}, retry_attempts=1, retry_backoff=0.05)
    r = server.api.post("/v1/functions/te-fail/triggers",
                        json={"kind": "topic", "config": {"topic": "te-orders"}, "id": "te-topic"})
    assert r.status_code == 201, r.text
    assert server.api.post("/v1/topics/te-orders/messages", json={"n": 1}).status_code == 201

    def metric(**labels: str) -> float:
        text = server.api.get("/metrics").text
        return _metric(text, "polyfn_trigger_errors_total", function="te-fail", **labels) or 0

    assert wait_until(lambda: metric(kind="topic", reason="function_error") >= 1)
    view = server.api.get("/v1/triggers/te-topic").json()
    assert view["errors"] >= 1 and view["last_error"]["reason"] == "function_error"
    assert "cannot handle" in view["last_error"]["message"]
    # retried once, then dead-lettered: the async queue's gauges show it
    assert wait_until(lambda: (_metric(server.api.get("/metrics").text, "polyfn_async_dlq_size",
                                       function="te-fail") or 0) >= 1)
    assert "# TYPE polyfn_async_backlog gauge" in server.api.get("/metrics").text

    broker = redis_broker(tmp_path).start()
    url = f"redis://127.0.0.1:{broker.port}/0"
    try:
        r = server.api.post("/v1/functions/te-fail/triggers",
                            json={"kind": "redis", "config": {"url": url, "stream": "te"}, "id": "te-redis"})
        assert r.status_code == 201, r.text
        assert wait_until(lambda: server.api.get("/v1/triggers/te-redis").json()["health"]["state"] == "connected")
        redis_add(url, "te", ["x"])
        assert wait_until(lambda: metric(kind="redis", reason="function_error") >= 1)
        assert metric(kind="redis", reason="connection") == 0
    finally:
        broker.stop()
    assert wait_until(lambda: metric(kind="redis", reason="connection") >= 1, 20)
    server.api.delete("/v1/triggers/te-redis")


def test_async_invocation_joins_the_callers_trace(server: Server) -> None:
    server.deploy("traced-async", {"handler.py": TRACER})
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = server.api.post("/v1/functions/traced-async/invoke", params={"mode": "async"}, json={},
                        headers={"traceparent": parent})
    assert r.status_code == 202, r.text
    aid = r.json()["activation_id"]

    def done() -> dict | None:
        got = server.api.get(f"/v1/activations/{aid}")
        return got.json() if got.status_code == 200 and got.json().get("status") == "success" else None

    assert wait_until(lambda: done() is not None, 20)
    act = done()
    assert act is not None
    assert act["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736" and act["parent_id"] == "00f067aa0ba902b7"


LOUD = '''
def handler(event, context):
    for _ in range(int(event.get("lines", 1))):
        print(event.get("char", "x") * int(event.get("size", 100)))
    return "ok"
'''


def test_log_bytes_are_bounded_per_activation_and_per_function_a_second(tmp_path: Path) -> None:
    """A function printing long lines fast: each activation keeps at most its byte budget, the function at
    most its bytes a second, each cut ends with one "N bytes of logs dropped" line naming the setting, and the
    metric counts the bytes. (Before: 1,000 lines of 16 KB per activation, and nothing per second.)"""
    from .conftest import start_server

    s = start_server(tmp_path / "data", env={"POLYFN_LOG_BYTES_PER_ACTIVATION": "65536",
                                             "POLYFN_LOG_BYTES_PER_SECOND": "200000"})
    try:
        s.deploy("loud", {"handler.py": LOUD})
        r = s.api.post("/v1/functions/loud/invoke", json={"lines": 100, "size": 10000, "char": "é"})
        logs = s.activation(r.headers["x-polyfn-activation-id"])["logs"]
        kept = sum(len(ln[2].encode()) for ln in logs[:-1])
        assert 60000 < kept <= 65536 and "bytes of logs dropped" in logs[-1][2], (kept, logs[-1])
        assert "POLYFN_LOG_BYTES_PER_ACTIVATION" in logs[-1][2]
        markers = []
        for _ in range(8):  # 8 × 60 KB at once: over 200 KB a second
            r = s.api.post("/v1/functions/loud/invoke", json={"lines": 6, "size": 10000})
            markers += [ln[2] for ln in s.activation(r.headers["x-polyfn-activation-id"])["logs"]
                        if ln[2].startswith("[polyfn:")]
        assert any("POLYFN_LOG_BYTES_PER_SECOND" in m for m in markers), markers
        dropped = _metric(s.http.get("/metrics").text, "polyfn_log_bytes_dropped_total", function="loud")
        assert dropped is not None and dropped > 100_000
    finally:
        s.stop()


def test_a_deleted_functions_series_leave_the_metrics(server: Server) -> None:
    server.deploy("gone-soon", {"handler.py": CHATTY})
    server.deploy("stays", {"handler.py": CHATTY})
    for name in ("gone-soon", "stays"):
        assert server.api.post(f"/v1/functions/{name}/invoke", json={"fail": True}).status_code == 500
    text = server.http.get("/metrics").text
    assert _metric(text, "polyfn_invocations_total", function="gone-soon") is not None
    assert _metric(text, "polyfn_instance_starts_total", function="gone-soon") is not None
    server.api.delete("/v1/functions/gone-soon").raise_for_status()
    # the series go once the pool has drained (its instances' exits counted as stops): up to 30 s under load
    assert wait_until(lambda: 'function="gone-soon"' not in server.http.get("/metrics").text, 40), \
        [ln for ln in server.http.get("/metrics").text.splitlines() if "gone-soon" in ln]
    text = server.http.get("/metrics").text
    assert _metric(text, "polyfn_invocations_total", function="stays") is not None  # the others' series stay
    assert _metric(text, "polyfn_instance_starts_total", function="stays") is not None
