"""Log triggers: lines POSTed to a stream, and another function's own output, arrive in batches as
`io.polyfn.log.batch` CloudEvents; a function cannot subscribe to its own logs."""

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

ANALYZER = '''
import json, os
def handler(event, context):
    assert event["type"] == "io.polyfn.log.batch"
    d = event["data"]
    with open(os.path.join(os.environ["STATE"], "log"), "a") as f:
        f.write(json.dumps({"stream": d["stream"], "group": d["group"], "lines": [l["message"] for l in d["lines"]],
                            "ts": [l["timestamp"] for l in d["lines"]]}) + "\\n")
    return {"ok": True}
'''

CHATTY = '''
def handler(event, context):
    print("processing", event.get("order"))
    print("ERROR payment declined")
    return "done"
'''


def batches(state: Path) -> list[dict]:
    f = state / "log"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def test_log_stream_ingest(server: Server, tmp_path: Path) -> None:
    server.deploy("lg-analyzer", {"handler.py": ANALYZER}, env={"STATE": str(tmp_path)})
    server.cli("trigger", "add", "lg-analyzer", "log", "nginx", "-o", "batch_size=50", check=True)
    r = server.api.post("/v1/logs/nginx", json=[{"message": "GET / 200", "timestamp": 1764200000123}, "GET /x 404"])
    assert r.status_code == 202 and r.json() == {"stream": "nginx", "accepted": 2, "subscribers": 1}
    r = server.api.post("/v1/logs/nginx", content=b"POST /a 500\n\nPOST /b 201\n", headers={"content-type": "text/plain"})
    assert r.json()["accepted"] == 2

    def lines() -> list[str]:
        return [ln for b in batches(tmp_path) for ln in b["lines"]]

    assert wait_until(lambda: len(lines()) == 4, 10), batches(tmp_path)
    assert lines() == ["GET / 200", "GET /x 404", "POST /a 500", "POST /b 201"]
    first = batches(tmp_path)[0]
    assert first["stream"] == "nginx" and first["group"] == "/polyfn/nginx" and first["ts"][0] == 1764200000123

    r = server.api.post("/v1/logs/nginx", content=b"[oops", headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_code(r) == "invalid_json"


def test_follow_another_functions_output(server: Server, tmp_path: Path) -> None:
    server.deploy("lg-watcher", {"handler.py": ANALYZER}, env={"STATE": str(tmp_path)})
    server.deploy("lg-chatty", {"handler.py": CHATTY})
    server.cli("trigger", "add", "lg-watcher", "log", "fn:lg-chatty", check=True)
    assert server.api.post("/v1/functions/lg-chatty/invoke", json={"order": 7}).status_code == 200
    assert wait_until(lambda: any("ERROR payment declined" in b["lines"] for b in batches(tmp_path)), 10)
    assert any("processing 7" in b["lines"] for b in batches(tmp_path))

    r = server.api.post("/v1/functions/lg-chatty/triggers", json={"kind": "log", "config": {"stream": "fn:lg-chatty"}})
    assert r.status_code == 400 and "its own logs" in r.json()["error"]["message"]
