"""CloudEvents in and out: binary, structured and batch HTTP modes into `POST /v1/events`, routing by type and
source filters, a function's reply event routed on, and invalid events refused."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import Server, error_code, wait_until

HOST_FS = True  # functions write state files the test reads (conftest.HOST_FS)

ORDER = '''
import json, os
def handler(event, context):
    with open(os.path.join(os.environ["STATE"], "orders"), "a") as f:
        f.write(json.dumps(event) + "\\n")
    return {"specversion": "1.0", "type": "com.example.order.shipped", "source": "/orders",
            "data": {"order": event["data"]["order"]}}
'''

SHIP = '''
import json, os
def handler(event, context):
    with open(os.path.join(os.environ["STATE"], "shipped"), "a") as f:
        f.write(json.dumps(event) + "\\n")
    return "ok"
'''


def lines(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def test_route_binary_structured_and_reply(server: Server, tmp_path: Path) -> None:
    server.deploy("ce-order", {"handler.py": ORDER}, env={"STATE": str(tmp_path)})
    server.deploy("ce-ship", {"handler.py": SHIP}, env={"STATE": str(tmp_path)})
    server.cli("trigger", "add", "ce-order", "events", "com.example.order.created", "-o", "source=/shop/*",
               "--id", "ce-orders", check=True)
    server.cli("trigger", "add", "ce-ship", "events", "com.example.order.shipped", check=True)

    r = server.api.post("/v1/events", json={"order": 1}, headers={
        "ce-specversion": "1.0", "ce-id": "e1", "ce-source": "/shop/eu", "ce-type": "com.example.order.created"})
    assert r.status_code == 202, r.text
    (ev,) = r.json()["events"]
    assert ev["id"] == "e1" and [d["trigger"] for d in ev["deliveries"]] == ["ce-orders"]

    structured = {"specversion": "1.0", "id": "e2", "source": "/shop/cn", "type": "com.example.order.created",
                  "datacontenttype": "application/json", "data": {"order": 2}}
    r = server.api.post("/v1/events", content=json.dumps(structured),
                        headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 202 and len(r.json()["events"][0]["deliveries"]) == 1

    batch = [dict(structured, id="e3", data={"order": 3}), dict(structured, id="e4", source="/elsewhere")]
    r = server.api.post("/v1/events", content=json.dumps(batch),
                        headers={"content-type": "application/cloudevents-batch+json"})
    assert [len(e["deliveries"]) for e in r.json()["events"]] == [1, 0]  # source filter is a prefix

    assert wait_until(lambda: len(lines(tmp_path / "orders")) == 3, 10)
    got = {e["id"]: e for e in lines(tmp_path / "orders")}
    assert got["e1"]["data"] == {"order": 1} and got["e1"]["source"] == "/shop/eu"
    assert got["e2"]["data"] == {"order": 2}
    # every order function's reply event went on to ce-ship
    assert wait_until(lambda: len(lines(tmp_path / "shipped")) == 3, 10)
    assert sorted(e["data"]["order"] for e in lines(tmp_path / "shipped")) == [1, 2, 3]


def test_invalid_events(server: Server) -> None:
    r = server.api.post("/v1/events", content=b'{"specversion": "1.0", "id": "x", "source": "/s"}',
                        headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 400 and error_code(r) == "invalid_cloudevent" and "'type'" in r.text
    r = server.api.post("/v1/events", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 400 and error_code(r) == "invalid_cloudevent"
    r = server.api.post("/v1/events", content=b"{}", headers={
        "ce-specversion": "0.3", "ce-id": "1", "ce-source": "/s", "ce-type": "t", "content-type": "application/json"})
    assert r.status_code == 400 and "specversion" in r.text
    r = server.api.post("/v1/events", json={}, headers={
        "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "nobody.listens"})
    assert r.status_code == 202 and r.json()["events"][0]["deliveries"] == []


def test_failed_event_deliveries_count_as_trigger_errors(server: Server) -> None:
    """Routed events run as async-queue jobs: each failed attempt is a trigger error of kind `events`."""
    server.deploy("ce-broken", {"handler.py": "def handler(e, c):\n    raise ValueError('no')\n"},
                  retry_attempts=2, retry_backoff=0.05)
    server.cli("trigger", "add", "ce-broken", "events", "com.example.broken", check=True)
    r = server.api.post("/v1/events", json={"x": 1}, headers={
        "ce-specversion": "1.0", "ce-id": "b1", "ce-source": "/t", "ce-type": "com.example.broken"})
    assert r.status_code == 202, r.text
    line = 'polyfn_trigger_errors_total{function="ce-broken",kind="events",reason="function_error"} 2'

    def counted() -> bool:
        return any(m.startswith(line) for m in server.http.get("/metrics").text.splitlines())

    assert wait_until(counted, 20), [m for m in server.http.get("/metrics").text.splitlines()
                                     if m.startswith("polyfn_trigger_errors_total")]
