"""Revisions, scaling bounds, keep-alive, deletes with work in flight, shutdown without orphans."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time

import httpx

from .conftest import REPO, Server, pid_alive, start_server, wait_until

PID = "import os\ndef handler(event, context):\n    return {'pid': int(os.environ.get('POLYFN_HOST_PID') or os.getpid()), 'v': %d}\n"
SLOW = '''
import os, time
def handler(event, context):
    time.sleep(float(event.query.get("sleep", "0")) if hasattr(event, "query") else 0)
    return {"pid": int(os.environ.get('POLYFN_HOST_PID') or os.getpid())}
'''



def busy(s: Server, name: str) -> int:
    """How many of the function's instances are serving a call right now, as the node reports it."""
    return s.api.get(f"/v1/functions/{name}").json()["instances"]["busy"]

def test_every_deploy_makes_an_immutable_revision(server: Server) -> None:
    a = server.deploy("revs", {"handler.py": PID % 1})
    assert a["revision"] == 1
    assert server.http.get("/fn/revs").json()["v"] == 1
    b = server.deploy("revs", {"handler.py": PID % 2}, memory=128)
    assert b["revision"] == 2 and b["spec"]["memory"] == 128
    assert server.http.get("/fn/revs").json()["v"] == 2
    desc = server.api.get("/v1/functions/revs").json()
    assert [r["number"] for r in desc["revisions"]] == [1, 2]
    assert desc["revisions"][0]["code_sha256"] != desc["revisions"][1]["code_sha256"]
    r = server.api.put("/v1/functions/revs", json={"files": {"handler.py": PID % 3}})
    assert r.status_code == 200 and r.json()["revision"] == 3


def test_min_instances_prewarm_and_keepalive_reaping(server: Server) -> None:
    server.deploy("warm", {"handler.py": PID % 1}, min_instances=1, keepalive=1)
    assert wait_until(lambda: server.api.get("/v1/functions/warm").json()["instances"]["idle"] == 1)
    r = server.http.get("/fn/warm")
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert act["cold"] is False  # served by the pre-warmed instance
    server.deploy("cool", {"handler.py": PID % 1}, keepalive=1)
    pid = server.http.get("/fn/cool").json()["pid"]
    assert wait_until(lambda: server.api.get("/v1/functions/cool").json()["instances"]["idle"] == 0, timeout=10)
    assert wait_until(lambda: not pid_alive(pid))
    # min_instances keeps the floor even past the keep-alive.
    time.sleep(1.5)
    assert server.api.get("/v1/functions/warm").json()["instances"]["idle"] >= 1


def test_max_instances_and_queue(server: Server) -> None:
    server.deploy("capped", {"handler.py": SLOW}, max_instances=2)
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        futs = [ex.submit(httpx.get, f"{server.url}/fn/capped?sleep=0.3", timeout=30) for _ in range(6)]
        results = [f.result() for f in futs]
    assert all(r.status_code == 200 for r in results)
    assert len({r.json()["pid"] for r in results}) <= 2


def test_queue_overflow_is_429_with_retry_after(tmp_path) -> None:
    s = start_server(tmp_path / "d", env={"POLYFN_MAX_QUEUE": "1"})
    try:
        s.deploy("narrow", {"handler.py": SLOW}, max_instances=1)
        # Warm the one instance first, so the burst finds it idle: one call runs, one waits in the queue of 1,
        # the rest are refused (without the warm-up all five could arrive during the cold start).
        assert s.http.get("/fn/narrow").status_code == 200
        with concurrent.futures.ThreadPoolExecutor(5) as ex:
            futs = [ex.submit(httpx.get, f"{s.url}/fn/narrow?sleep=0.5", timeout=30) for _ in range(5)]
            codes = sorted(f.result().status_code for f in futs)
            throttled = [f.result() for f in futs if f.result().status_code == 429]
        assert codes.count(200) >= 2 and 429 in codes
        assert throttled[0].headers["retry-after"]
        assert throttled[0].json()["error"]["code"] == "too_many_requests"
        # shed before it cost anything: no activation record (before: one per 429), only counted
        assert "x-polyfn-activation-id" not in throttled[0].headers
        acts = s.api.get("/v1/activations", params={"function": "narrow"}).json()["activations"]
        assert len(acts) == 1 + codes.count(200) and all(a["status"] == "success" for a in acts)
        metrics = s.http.get("/metrics").text
        shed = [ln for ln in metrics.splitlines() if ln.startswith("polyfn_shed_total") and 'function="narrow"' in ln]
        assert shed and sum(float(ln.rsplit(" ", 1)[1]) for ln in shed) == codes.count(429), shed
    finally:
        s.stop()


def test_delete_with_invocations_in_flight(server: Server) -> None:
    server.deploy("inflight", {"handler.py": SLOW})
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        fut = ex.submit(httpx.get, f"{server.url}/fn/inflight?sleep=3", timeout=30)
        # in flight: the node reports the instance busy (an observed state, not a guessed delay)
        assert wait_until(lambda: busy(server, "inflight") == 1), server.api.get("/v1/functions/inflight").text
        assert server.api.delete("/v1/functions/inflight").status_code == 200
        r = fut.result()
    assert r.status_code == 200  # the in-flight invocation finished cleanly
    pid = r.json()["pid"]
    assert server.http.get("/fn/inflight").status_code == 404
    assert wait_until(lambda: not pid_alive(pid)), "the deleted function's instance must stop"


def test_concurrent_async_handler_keeps_logs_apart(server: Server) -> None:
    server.deploy("conc", {"handler.py": '''
import asyncio, os
async def handler(event, context):
    n = event["n"]
    for i in range(3):
        print(f"call {n} step {i}")
        await asyncio.sleep(0.05)
    return {"n": n, "pid": int(os.environ.get('POLYFN_HOST_PID') or os.getpid())}
'''}, concurrency=8, max_instances=1)
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(server.api.post, "/v1/functions/conc/invoke", json={"n": n}) for n in range(8)]
        results = [f.result() for f in futs]
    assert all(r.status_code == 200 for r in results)
    assert len({r.json()["pid"] for r in results}) == 1  # one instance served all eight at once
    for r in results:
        n = r.json()["n"]
        act = server.activation(r.headers["x-polyfn-activation-id"])
        assert [ln[2] for ln in act["logs"] if "call" in ln[2]] == [f"call {n} step {i}" for i in range(3)]


def test_requirements_installed_per_revision(server: Server, tmp_path) -> None:
    fn = tmp_path / "withdeps"
    fn.mkdir()
    (fn / "handler.py").write_text("import six\ndef handler(event, context):\n    return six.__version__\n")
    (fn / "requirements.txt").write_text("six==1.16.0\n")
    r = server.cli("deploy", str(fn), check=True, timeout=300)
    assert "six" in (r.stdout + r.stderr)
    assert server.http.get("/fn/withdeps").text == "1.16.0"

    (fn / "requirements.txt").write_text("polyfn-no-such-package-xyz==9.9.9\n")
    (fn / "handler.py").write_text("def handler(event, context):\n    return 'new'\n")
    r = server.cli("deploy", str(fn), timeout=300)
    assert r.returncode != 0
    assert "dependency_install_failed" in r.stderr or "pip" in r.stderr
    assert server.http.get("/fn/withdeps").text == "1.16.0"  # the old revision keeps serving


def test_cli_deploy_single_file_with_options(server: Server, tmp_path) -> None:
    f = tmp_path / "my_func.py"
    f.write_text("import os\ndef handler(event, context):\n    return {'greeting': os.environ['GREETING']}\n")
    server.cli("deploy", str(f), "--env", "GREETING=hi", "--memory", "128", "--timeout", "5", check=True)
    r = server.cli("invoke", "my-func", check=True)
    assert json.loads(r.stdout) == {"greeting": "hi"}
    desc = server.api.get("/v1/functions/my-func").json()
    assert desc["spec"]["memory"] == 128 and desc["spec"]["timeout"] == 5


def test_graceful_shutdown_finishes_in_flight_and_leaves_no_orphans(fresh_server: Server) -> None:
    s = fresh_server
    s.deploy("slow", {"handler.py": SLOW})
    s.deploy("other", {"handler.py": PID % 1}, min_instances=2)
    other_pids = set()
    assert wait_until(lambda: s.api.get("/v1/functions/other").json()["instances"]["idle"] == 2)
    for _ in range(2):
        other_pids.add(s.http.get("/fn/other").json()["pid"])
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(httpx.get, f"{s.url}/fn/slow?sleep=3", timeout=30)
        assert wait_until(lambda: busy(s, "slow") == 1), s.api.get("/v1/functions/slow").text
        s.proc.send_signal(signal.SIGTERM)
        r = fut.result()
    assert r.status_code == 200
    assert s.proc.wait(30) == 0
    pids = other_pids | {r.json()["pid"]}
    assert wait_until(lambda: not any(pid_alive(p) for p in pids)), "instances outlived the server"
    assert not (s.data_dir / "server.json").exists()


def test_kill_9_of_server_leaves_no_orphans(fresh_server: Server) -> None:
    s = fresh_server
    s.deploy("orphan", {"handler.py": PID % 1}, min_instances=2)
    pids = {s.http.get("/fn/orphan").json()["pid"]}
    s.proc.kill()
    s.proc.wait()
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10)


def test_restart_keeps_functions(tmp_path) -> None:
    s = start_server(tmp_path / "d")
    try:
        s.deploy("persist", {"handler.py": PID % 7})
        r = s.http.get("/fn/persist")
        assert r.json()["v"] == 7
        first_id = r.headers["x-polyfn-activation-id"]
    finally:
        s.stop()
    s = start_server(tmp_path / "d")
    try:
        assert s.http.get("/fn/persist").json()["v"] == 7
        assert s.activation(first_id)["status"] == "success"  # recorded before the first server stopped
    finally:
        s.stop()


def test_examples_flag_deploys_examples(tmp_path) -> None:
    s = start_server(tmp_path / "d", "--examples", ready_within=300)  # the Go example builds before the port opens
    try:
        # examples deploy in the background once the node serves (a Go build must not hold up /healthz)
        assert wait_until(lambda: {f["name"] for f in s.api.get("/v1/functions").json()["functions"]} >= set(("reverse", "hello")),
                          timeout=120), s.log.read_text()[-3000:]
        assert s.http.post("/fn/reverse", content=b"hello").text == "olleh"
        assert s.http.get("/fn/hello?name=ann").json()["message"] == "hello ann"
    finally:
        s.stop()
    assert (REPO / "examples/seed/openfaas-reverse/handler.py").exists()
