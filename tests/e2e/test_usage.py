"""Usage metering against a real node: the metered GB·s of a run equals the sum over its activation records exactly,
`GET /v1/usage` refuses bad queries with stable codes, the counters move, and every block of docs/usage.md runs."""

from __future__ import annotations

import math
from pathlib import Path

from .conftest import REPO, Server
from .docblocks import doc_env, run_page

DOC = REPO / "docs" / "usage.md"

SLEEPY = '''
import time
def handler(event, context):
    time.sleep((event or {}).get("ms", 0) / 1000)
    return {"size": len(str(event))}
'''


def _metric(text: str, name: str, function: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'function="{function}"' in line:
            return float(line.rpartition(" ")[2])
    raise AssertionError(f"no {name} for {function}")


def test_metered_gb_seconds_equal_the_sum_over_activation_records(server: Server) -> None:
    server.deploy("meter-me", {"handler.py": SLEEPY}, memory=192)
    for i in range(30):
        r = server.http.post("/fn/meter-me", json={"ms": i % 4, "pad": "x" * i})
        assert r.status_code == 200, r.text
    r = server.api.get("/v1/usage", params={"function": "meter-me", "by": "hour"})
    assert r.status_code == 200, r.text
    total = r.json()["total"]
    acts = server.api.get("/v1/activations", params={"function": "meter-me", "limit": 1000}).json()["activations"]
    assert len(acts) == 30 == total["invocations"]
    assert all(a["memory_mb"] == 192 and a["instance"] for a in acts)
    expected = sum(math.ceil(a["duration_ms"] - a["wait_ms"]) * a["memory_mb"] for a in acts)
    assert total["mb_ms"] == expected  # exact: within 0.1 % is the target
    assert total["gb_seconds"] == round(expected / 1024 / 1000, 6)
    assert total["req_bytes"] == sum(a["req_bytes"] for a in acts) > 30 * 10
    assert total["resp_bytes"] == sum(a["resp_bytes"] for a in acts) > 0
    assert total["billed_ms"] >= 30 * 1 + sum(i % 4 for i in range(30))  # each slept its ms at least
    metrics = server.http.get("/metrics").text
    assert abs(_metric(metrics, "polyfn_billed_gb_seconds_total", "meter-me") - expected / 1024 / 1000) < 1e-9
    assert _metric(metrics, "polyfn_request_bytes_total", "meter-me") == total["req_bytes"]
    priced = server.api.get("/v1/usage", params={"function": "meter-me", "prices": "lambda"}).json()
    assert priced["prices"]["sample"] is True
    assert abs(priced["total"]["cost"] - (expected / 1024 / 1000 * 0.0000166667 + 30 / 1e6 * 0.20)) < 1e-6


STREAMER = '''
def handler(event, context):
    def chunks():
        for i in range(5):
            yield "x" * 1000
    return chunks()
'''


def test_a_streamed_response_bills_its_bytes_and_its_time_to_the_end(server: Server) -> None:
    server.deploy("meter-stream", {"handler.py": STREAMER})
    r = server.http.get("/fn/meter-stream")
    assert r.status_code == 200 and len(r.content) == 5000, r.text
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert act["resp_bytes"] == 5000 and act["stream"]["bytes"] == 5000
    total = server.api.get("/v1/usage", params={"function": "meter-stream"}).json()["total"]
    assert total["resp_bytes"] == 5000 and total["invocations"] == 1
    assert total["mb_ms"] == math.ceil(act["duration_ms"] - act["wait_ms"]) * act["memory_mb"]


def test_bad_usage_queries_get_stable_codes(server: Server) -> None:
    for params, code in (({"by": "week"}, "invalid_request"), ({"prices": "nosuch"}, "unknown_price_table"),
                         ({"prices": "/etc/passwd"}, "unknown_price_table"),
                         # (before: 500s or a reset connection, from the store's integer hours)
                         ({"since": "nan"}, "invalid_request"), ({"since": "1e400"}, "invalid_request"),
                         ({"since": "inf"}, "invalid_request"), ({"since": "99999999999999999999999"}, "invalid_request")):
        r = server.api.get("/v1/usage", params=params)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == code
    assert server.http.get("/v1/usage").status_code == 401
    r = server.cli("usage", "--prices", "/nonexistent.toml")
    assert r.returncode != 0 and "neither a price table" in r.stderr


def test_every_block_of_the_usage_docs_runs(server: Server, tmp_path: Path) -> None:
    ran = 0
    for block, r in run_page(DOC, tmp_path, doc_env(server.url, key=server.key)):
        ran += 1
        if "--prices lambda" in block.code:
            assert "SAMPLE prices" in r.stderr and "metered" in r.stdout
    assert ran >= 3
