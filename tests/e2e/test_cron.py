"""Cron triggers end to end through the CLI: ticks run the function with a timer CloudEvent, the next fire time
shows in `describe`, and bad input (malformed cron, unknown time zone, missing function) is refused."""

from __future__ import annotations

import json

from .conftest import Server, wait_until

TICK = '''
def handler(event, context):
    return event
'''


def test_cron_trigger_runs_and_is_described(server: Server) -> None:
    server.deploy("cr-tick", {"handler.py": TICK})
    r = server.cli("trigger", "add", "cr-tick", "cron", "* * * * * *", "--tz", "Asia/Shanghai", "--data",
                   '{"job": "cleanup"}', "--id", "cr-every-second", check=True)
    assert "added trigger cr-every-second" in r.stdout and "next fire: " in r.stdout and "+08:00" in r.stdout

    def ticks() -> list[dict]:
        acts = server.api.get("/v1/activations", params={"function": "cr-tick"}).json()["activations"]
        return [a for a in acts if a["trigger"] == "cron"]

    assert wait_until(lambda: len(ticks()) >= 2, 15)
    event = json.loads(ticks()[0]["result"])
    assert event["type"] == "io.polyfn.timer.fired" and event["specversion"] == "1.0"
    assert event["data"]["payload"] == {"job": "cleanup"}
    assert event["data"]["timezone"] == "Asia/Shanghai" and event["data"]["scheduled_time"].endswith("+08:00")

    described = server.cli("describe", "cr-tick", check=True).stdout
    assert "triggers" in described and "cr-every-second" in described and "+08:00" in described
    listed = json.loads(server.cli("trigger", "list", "--json", check=True).stdout)
    (t,) = [t for t in listed if t["id"] == "cr-every-second"]
    assert t["health"]["state"] == "scheduled" and t["delivered"] >= 2 and t["next_fire"] > 0

    server.cli("trigger", "delete", "cr-every-second", check=True)
    n = len(ticks())
    assert server.cli("trigger", "list", "cr-tick", "--json", check=True).stdout.strip() == "[]"
    assert server.cli("trigger", "delete", "cr-every-second").returncode == 3
    # no more ticks after the delete (give a possible in-flight one time to land first)
    wait_until(lambda: False, 1.5)
    assert len(ticks()) <= n + 1


def test_cron_bad_input(server: Server) -> None:
    server.deploy("cr-bad", {"handler.py": TICK})
    r = server.cli("trigger", "add", "cr-bad", "cron", "61 * * *")
    assert r.returncode == 1 and "invalid_cron" in r.stderr and "5 fields" in r.stderr
    for schedule, names in (("*/61 * * * *", "minute field"), ("* * * * * * *", "7 field(s)"),
                            ("0 0 30 2 *", "day 30 never occurs in February")):
        r = server.api.post("/v1/functions/cr-bad/triggers", json={"kind": "cron", "config": {"schedule": schedule}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_cron", r.text
        assert names in r.json()["error"]["message"], r.text
    r = server.cli("trigger", "add", "cr-bad", "cron", "*/5 * * * *", "--tz", "Mars/Olympus")
    assert r.returncode == 1 and "invalid_timezone" in r.stderr
    r = server.cli("trigger", "add", "cr-missing", "cron", "*/5 * * * *")
    assert r.returncode == 3 and "function_not_found" in r.stderr
    r = server.cli("trigger", "add", "cr-bad", "teleport", "x")
    assert r.returncode == 1 and "invalid_trigger_kind" in r.stderr
    r = server.api.post("/v1/functions/cr-bad/triggers", json={"kind": "cron", "config": {"schedule": "* * * * *",
                                                                                           "missed": "burst"}})
    assert r.status_code == 400 and "missed" in r.json()["error"]["message"]
    assert server.api.get("/v1/functions/cr-bad/triggers").json() == {"triggers": []}  # nothing half-created

    server.cli("trigger", "add", "cr-bad", "cron", "0 0 1 1 *", "--id", "cr-bad-yearly", check=True)
    assert server.api.delete("/v1/functions/cr-bad").status_code == 200
    assert server.api.get("/v1/triggers/cr-bad-yearly").status_code == 404  # went with its function


def test_cron_survives_restart(fresh_server: Server) -> None:
    s = fresh_server
    s.deploy("cr-persist", {"handler.py": TICK})
    s.cli("trigger", "add", "cr-persist", "cron", "*/10 * * * *", "--id", "cr-p", "--missed", "run_once", check=True)
    s.stop()
    from .conftest import start_server

    s2 = start_server(s.data_dir)
    try:
        (t,) = json.loads(s2.cli("trigger", "list", "--json", check=True).stdout)
        assert t["id"] == "cr-p" and t["config"]["missed"] == "run_once" and t["health"]["state"] == "scheduled"
    finally:
        s2.stop()


def _ticks(s: Server, fn: str) -> list[str]:
    acts = s.api.get("/v1/activations", params={"function": fn, "limit": 1000}).json()["activations"]
    return sorted(json.loads(a["result"])["data"]["scheduled_time"] for a in acts if a["trigger"] == "cron")


def test_missed_ticks_run_once_never_a_burst(tmp_path) -> None:
    """Down for ~4 ticks of an every-second schedule: `run_once` runs one catch-up tick, `skip` none."""
    import datetime as dt
    import time

    from .conftest import start_server

    s = start_server(tmp_path / "data")
    try:
        s.deploy("cr-once", {"handler.py": TICK})
        s.deploy("cr-skip", {"handler.py": TICK})
        s.cli("trigger", "add", "cr-once", "cron", "* * * * * *", "--missed", "run_once", check=True)
        s.cli("trigger", "add", "cr-skip", "cron", "* * * * * *", check=True)
        assert wait_until(lambda: _ticks(s, "cr-once") and _ticks(s, "cr-skip"), 15)
    finally:
        s.stop()
    down_from = time.time()
    time.sleep(4)
    s = start_server(tmp_path / "data")
    try:
        def trig(fn: str) -> dict:
            (t,) = s.api.get(f"/v1/functions/{fn}/triggers").json()["triggers"]
            return t

        caught_up = trig("cr-once")["caught_up"]
        assert caught_up is not None and caught_up > down_from + 2  # the latest missed tick, run at start
        assert trig("cr-skip")["caught_up"] is None
        assert wait_until(lambda: any(dt.datetime.fromisoformat(t).timestamp() > caught_up + 1
                                      for t in _ticks(s, "cr-once")), 20)

        def between(fn: str, lo: float, hi: float) -> list[str]:
            return [t for t in _ticks(s, fn) if lo < dt.datetime.fromisoformat(t).timestamp() <= hi]

        # run_once: of the ~4 ticks missed while down, only the latest ran (no burst)
        assert between("cr-once", down_from + 1, caught_up) == [
            dt.datetime.fromtimestamp(caught_up, dt.UTC).isoformat()], _ticks(s, "cr-once")
        # skip: none of them ran
        assert between("cr-skip", down_from + 1, caught_up) == [], _ticks(s, "cr-skip")
    finally:
        s.stop()
