"""The console's charts and health, and `polyfn top`, read the recorded activations after a restart instead of
starting at "no traffic" (issue #18, item 11)."""

from __future__ import annotations

from pathlib import Path

from .conftest import start_server, wait_until

FN = "def handler(event, context):\n    if event.get('fail'):\n        raise ValueError('asked to')\n    return 'ok'\n"


def _summary(s, window: int = 3600) -> dict:  # type: ignore[no-untyped-def]
    got = s.api.get("/v1/stats", params={"window": window}).json()["functions"]
    return next((f for f in got if f["name"] == "hist"), {})


def test_charts_and_health_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "d"
    s = start_server(data)
    try:
        s.deploy("hist", {"handler.py": FN})
        for body in ({}, {}, {"fail": True}):
            s.api.post("/v1/functions/hist/invoke", json=body)
        assert wait_until(lambda: _summary(s).get("invocations") == 3, timeout=30)
    finally:
        s.stop()
    s = start_server(data)
    try:
        assert wait_until(lambda: _summary(s).get("invocations") == 3, timeout=60), _summary(s)
        summary = _summary(s)
        assert summary["errors"] == 1 and summary["cold_starts"] == 1 and summary["p50_ms"] is not None
        points = s.api.get("/v1/functions/hist/stats").json()["points"]
        assert sum(p["invocations"] for p in points) == 3
        page = s.http.get("/console/functions", headers={"authorization": f"Bearer {s.key}"})
        if page.status_code == 200:  # the console's function list shows the health from the same ring
            assert "no traffic" not in page.text.split("hist", 1)[-1][:2000]
    finally:
        s.stop()
