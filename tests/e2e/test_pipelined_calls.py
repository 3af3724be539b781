"""Calls written behind a running one (scheduler/pool.py `_behind`): a function with concurrency 1 whose instances
may not grow gets the next call written to an instance behind the one it runs (the Python runtime's blocking loop
reads it when that one has answered), not held in the pool's queue. What must hold, against a real node: the call
behind keeps its instance's one-at-a-time order, it is tried on another instance when its instance ends before it
started (a kill -9, the timeout of the call ahead), never lost nor run twice, its lines stay its own, and a cancel
of it does not stop the call ahead."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from typing import Any

from tests.e2e.conftest import Server, wait_until

# Each call says which process ran it, when it began and ended (the one-at-a-time check), and counts the calls
# its process ran (a call run twice would show twice).
SLOW = """\
import os, time
RAN = []
def handler(event, context):
    event = event or {}
    began = time.time()
    print(f"call {event.get('tag')} begins")
    time.sleep(float(event.get('sleep', 0)))
    RAN.append(event.get('tag'))
    print(f"call {event.get('tag')} ends")
    return {'pid': int(os.environ.get('POLYFN_HOST_PID') or 0), 'me': os.getpid(), 'tag': event.get('tag'),
            'began': began, 'ended': time.time(), 'ran': list(RAN)}
"""


def queued(s: Server, name: str) -> int:
    return s.api.get(f"/v1/functions/{name}").json()["instances"]["queued"]


def instances(s: Server, name: str) -> list[dict[str, Any]]:
    return s.api.get(f"/v1/functions/{name}/instances").json()["instances"]


def call(s: Server, name: str, out: dict[str, Any], tag: str, **event: Any) -> threading.Thread:
    t = threading.Thread(target=lambda: out.__setitem__(tag, s.api.post(f"/v1/functions/{name}/invoke",
                                                                         json={"tag": tag, **event})))
    t.start()
    return t


def busy(s: Server, name: str) -> bool:
    return any(i["state"] == "busy" for i in instances(s, name))


def one_ahead(s: Server, name: str, out: dict[str, Any], sleep: float, **deploy: Any) -> threading.Thread:
    """Deploy `name` (one instance), answer one short call (behind.py SHORT_MS), then start call `a` running."""
    s.deploy(name, {"handler.py": SLOW}, max_instances=1, **deploy)
    s.api.post(f"/v1/functions/{name}/invoke", json={"tag": "warm"})
    first = call(s, name, out, "a", sleep=sleep)
    assert wait_until(lambda: busy(s, name))
    return first


def one_behind(s: Server, name: str, out: dict[str, Any]) -> threading.Thread:
    """Call `b`, which must be written behind the running `a` (not queued)."""
    second = call(s, name, out, "b")
    time.sleep(0.3)
    assert queued(s, name) == 0  # written behind a
    return second


def test_calls_behind_a_running_one_run_in_order_one_at_a_time_with_their_own_lines(server: Server) -> None:
    server.deploy("behind", {"handler.py": SLOW}, max_instances=1)
    server.api.post("/v1/functions/behind/invoke", json={"tag": "warm"})  # (a short call: behind.py SHORT_MS)
    out: dict[str, Any] = {}
    first = call(server, "behind", out, "a", sleep=1.0)
    assert wait_until(lambda: busy(server, "behind"))
    rest = []
    for tag in "bcd":
        rest.append(call(server, "behind", out, tag))
        time.sleep(0.05)
    time.sleep(0.2)
    assert queued(server, "behind") == 2  # b written behind a; c and d in the queue
    for t in (first, *rest):
        t.join(30)
    got = {tag: r.json() for tag, r in out.items()}
    assert all(r.status_code == 200 for r in out.values()), {k: r.text for k, r in out.items()}
    assert len({g["me"] for g in got.values()}) == 1 and got["d"]["ran"] == ["warm", "a", "b", "c", "d"]
    spans = sorted((g["began"], g["ended"]) for g in got.values())
    assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(spans))  # never two at once
    for tag, r in out.items():
        act = server.activation(r.headers["x-polyfn-activation-id"])
        assert [ln[2] for ln in act["logs"]] == [f"call {tag} begins", f"call {tag} ends"], act["logs"]


def test_a_call_behind_one_whose_instance_is_killed_runs_once_on_another(server: Server) -> None:
    out: dict[str, Any] = {}
    first = one_ahead(server, "behindkill", out, 5.0)
    second = one_behind(server, "behindkill", out)
    (inst,) = instances(server, "behindkill")
    os.kill(inst["pid"], signal.SIGKILL)
    first.join(30)
    second.join(30)
    assert out["a"].status_code == 502 and out["a"].json()["error"]["code"] == "function_crashed", out["a"].text
    b = out["b"]
    assert b.status_code == 200 and b.json()["ran"] == ["b"], b.text  # on a new instance, once
    assert b.json()["pid"] != inst["pid"]
    act = server.activation(b.headers["x-polyfn-activation-id"])
    assert act["status"] == "success" and act["cold"], act


def test_a_call_behind_one_that_times_out_runs_once_on_another(server: Server) -> None:
    """The node stops the instance for the timeout of the call ahead; the call behind had not started (every frame
    the instance sent is read before its connection ends): it runs on another instance."""
    out: dict[str, Any] = {}
    first = one_ahead(server, "behindslow", out, 30, timeout=8)  # (room for the cold start of its retry under load)
    time.sleep(4)  # (b's deadline well after a's: its instance's end is known before b's own time is up, under load too)
    second = one_behind(server, "behindslow", out)
    first.join(30)
    second.join(30)
    assert out["a"].status_code == 504, out["a"].text
    b = out["b"]
    act = server.activation(b.headers["x-polyfn-activation-id"])
    assert b.status_code == 200 and b.json()["ran"] == ["b"] and act["cold"], (b.text, act)  # once, elsewhere  # on a new instance, once


def test_a_cancel_of_a_call_behind_another_stops_nothing(server: Server) -> None:
    out: dict[str, Any] = {}
    first = one_ahead(server, "behindcancel", out, 2)
    aid = server.api.post("/v1/functions/behindcancel/invoke", params={"mode": "async"},
                          json={"tag": "b"}).json()["activation_id"]
    assert wait_until(lambda: server.activation(aid)["status"] == "running", 10)
    time.sleep(0.3)
    assert queued(server, "behindcancel") == 0  # written behind a
    r = server.api.delete(f"/v1/activations/{aid}")
    assert r.status_code == 409, r.text  # not started: not stopped (as a call waiting in the queue)
    first.join(30)
    assert out["a"].status_code == 200, out["a"].text  # the call ahead ran on (stopping its instance: a 499)
    assert wait_until(lambda: server.activation(aid)["status"] == "success", 30), server.activation(aid)
    assert json.loads(server.activation(aid)["result"])["ran"] == ["warm", "a", "b"]  # after a, on its instance
