"""Scaling on a real node: prewarm (CLI and API), describe's scaling block with RSS/PSS, the memory budget
(LRU eviction, then a clear refusal), bad limits, and a crashing function that does not make the
autoscaler spin."""

from __future__ import annotations

import json
import re
import time

import pytest

from .conftest import Server, pid_alive, start_server, wait_until

PID = "import os\ndef handler(event, context):\n    return {'pid': int(os.environ.get('POLYFN_HOST_PID') or os.getpid())}\n"
CRASH = "raise RuntimeError('broken at import')\ndef handler(event, context):\n    return 1\n"


def test_prewarm_cli_and_describe_scaling_block(server: Server) -> None:
    server.deploy("pw", {"handler.py": PID}, max_instances=3)
    r = server.cli("prewarm", "pw", "5", "--json", check=True)
    res = json.loads(r.stdout)
    assert res["started"] == 3 and "max_instances=3" in res["note"]
    assert wait_until(lambda: server.api.get("/v1/functions/pw").json()["instances"]["idle"] == 3, timeout=30)
    act = server.activation(server.http.get("/fn/pw").headers["x-polyfn-activation-id"])
    assert act["cold"] is False  # a pre-warmed instance gives no caller a cold start
    desc = server.api.get("/v1/functions/pw").json()
    sc = desc["scaling"]
    assert sc["keepalive_policy"] == "fixed" and len(sc["instances"]) == 3
    assert all(i["pss_kb"] and i["rss_kb"] >= i["pss_kb"] for i in sc["instances"])
    assert sc["node_memory"]["reserved_mb"] >= 3 * 256
    text = server.cli("describe", "pw", check=True).stdout
    assert "scaling" in text and re.search(r"3 idle|2 idle, 1 busy", text) and "PSS" in text
    r = server.api.post("/v1/functions/nope/prewarm", json={"instances": 1})
    assert r.status_code == 404 and r.json()["error"]["code"] == "function_not_found"
    r = server.api.post("/v1/functions/pw/prewarm", json={"instances": 0})
    assert r.status_code == 400


@pytest.mark.parametrize(("limit", "value"), [("max_instances", 0), ("max_instances", -1), ("min_instances", -2)])
def test_bad_limits_are_rejected(server: Server, limit: str, value: int) -> None:
    r = server.api.post("/v1/functions", json={"name": "badlim", "files": {"handler.py": PID}, limit: value})
    assert r.status_code == 400, r.text
    assert f"{limit}={value}" in r.json()["error"]["message"]


def test_deploy_cli_keepalive_policy(server: Server, tmp_path) -> None:
    f = tmp_path / "hyb.py"
    f.write_text(PID.replace("handler(", "main("))
    server.cli("deploy", str(f), "--name", "hyb", "--handler", "hyb.main", "--keepalive-policy", "hybrid", check=True)
    desc = server.api.get("/v1/functions/hyb").json()
    assert desc["spec"]["keepalive_policy"] == "hybrid" and desc["scaling"]["keepalive_policy"] == "hybrid"
    assert server.http.get("/fn/hyb").status_code == 200
    bad = server.cli("deploy", str(f), "--name", "hyb", "--handler", "hyb.main", "--keepalive-policy", "lru")
    assert bad.returncode != 0 and "fixed, hybrid or adaptive" in (bad.stdout + bad.stderr)
    server.cli("deploy", str(f), "--name", "ada", "--handler", "hyb.main", "--keepalive-policy", "adaptive",
               check=True)
    window = lambda: server.api.get("/v1/functions/ada").json()["scaling"]["keepalive_window"]  # noqa: E731
    assert window() == {"prewarm_s": 0.0, "keepalive_s": 600.0}  # nothing seen yet: as `fixed`
    for _ in range(3):  # calls in a row: idle times under a minute
        assert server.http.get("/fn/ada").status_code == 200
    assert server.api.get("/v1/functions/ada").json()["scaling"]["keepalive_policy"] == "adaptive"
    assert window() == {"prewarm_s": 0.0, "keepalive_s": 60.0}  # worth keeping one minute, not ten


def test_crash_at_import_backs_off_under_the_autoscaler(server: Server) -> None:
    server.deploy("crashy", {"handler.py": CRASH})
    for _ in range(5):
        r = server.http.get("/fn/crashy")
        assert r.status_code == 502 and r.json()["error"]["code"] == "function_init_failed"
        assert "broken at import" in r.text
    time.sleep(5)  # a few autoscaler ticks with the failed burst in its window
    metrics = server.http.get("/metrics").text
    m = re.search(r'polyfn_instance_starts_total\{function="crashy"\} (\S+)', metrics)
    assert m is None  # no instance ever became ready
    log = server.log.read_text()
    attempts = log.count("crashy@1: instance failed to start")
    assert 1 <= attempts <= 4  # back-off: not one attempt per tick or per request


def test_memory_budget_evicts_lru_then_refuses(tmp_path) -> None:
    # Function zygotes off: their memory would change which instance is least recently used to evict
    # (tests/e2e/test_function_zygote.py covers zygote eviction).
    s = start_server(tmp_path / "d", env={"POLYFN_MEMORY_BUDGET": "256", "POLYFN_FUNCTION_ZYGOTES": "false"})
    try:
        s.deploy("m-a", {"handler.py": PID}, memory=128)
        s.deploy("m-b", {"handler.py": PID}, memory=128)
        s.deploy("m-c", {"handler.py": PID}, memory=128)
        pa = s.http.get("/fn/m-a").json()["pid"]
        time.sleep(0.05)
        pb = s.http.get("/fn/m-b").json()["pid"]
        r = s.http.get("/fn/m-c")  # needs 128 MB more: evicts m-a (least recently used)
        assert r.status_code == 200
        assert wait_until(lambda: not pid_alive(pa))
        assert pid_alive(pb)
        desc = s.api.get("/v1/functions/m-a").json()
        assert desc["scaling"]["evictions"] == 1
        assert 'reason="evicted"' in s.http.get("/metrics").text
        s.deploy("m-big", {"handler.py": PID}, memory=512)  # larger than the whole budget
        r = s.http.get("/fn/m-big")
        assert r.status_code == 503 and r.json()["error"]["code"] == "node_memory_exhausted"
        assert r.headers["x-polyfn-error"] == "node_memory_exhausted" and r.headers["retry-after"]
    finally:
        s.stop()
