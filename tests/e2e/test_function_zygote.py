"""Per-function zygotes (import cache) against a real node: the second cold start of a revision forks from
a sandboxed process that already imported its module; unsafe modules fall back to clean starts; zygotes
die with their revision, are rebuilt when they die, and leave no process behind."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from tests import needs
from tests.e2e.conftest import Server, pid_alive, start_server, wait_until

# The module counts its imports in a file only the function can see (its own /tmp): a fork from the
# zygote does not import it again.
SLOW = """\
import os, time
IMPORTED_IN = os.getpid()
def handler(event, context):
    if (event or {}).get('sleep'):
        time.sleep(float(event['sleep']))
    seen = None
    if (event or {}).get('probe'):
        try:
            seen = open(event['probe']).read()
        except OSError as e:
            seen = type(e).__name__
    return {'uid': os.getuid(), 'seen': seen, 'pid': int(os.environ.get('POLYFN_HOST_PID') or 0), 'imported_in': IMPORTED_IN,
            'me': os.getpid(), 'instance': os.environ['POLYFN_INSTANCE_ID']}
"""

THREADED = """\
import threading, time
threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
def handler(event, context):
    return 'ok'
"""


def zygote(s: Server, name: str) -> dict[str, Any]:
    return s.api.get(f"/v1/functions/{name}").json()["scaling"]["zygote"]


def scale_out(s: Server, name: str, body: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hold every live instance busy (1.5 s) and send one more invocation meanwhile: a cold start.
    Returns (its response JSON, its activation)."""
    def instances() -> list[dict[str, Any]]:
        return s.api.get(f"/v1/functions/{name}/instances").json()["instances"]

    n = len(instances())
    busy = [threading.Thread(target=lambda: s.api.post(f"/v1/functions/{name}/invoke", json={"sleep": 1.5}))
            for _ in range(n)]
    for t in busy:
        t.start()
    try:
        assert wait_until(lambda: sum(i["state"] == "busy" for i in instances()) == n)
        r = s.api.post(f"/v1/functions/{name}/invoke", json=body or {})
        assert r.status_code == 200, r.text
    finally:
        for t in busy:
            t.join()
    act = s.activation(r.headers["x-polyfn-activation-id"])
    return r.json(), act


def test_scale_out_forks_from_the_function_zygote(server: Server) -> None:
    server.deploy("fzy", {"handler.py": SLOW}, max_instances=4)
    r = server.api.post("/v1/functions/fzy/invoke", json={})
    first = server.activation(r.headers["x-polyfn-activation-id"])
    assert first["cold"] and "zygote: runtime" in first["init_info"], first["init_info"]
    assert wait_until(lambda: zygote(server, "fzy")["state"] == "ready", 30), zygote(server, "fzy")
    z = zygote(server, "fzy")
    assert z["rss_kb"] and z["pss_kb"] and z["pid"] > 0
    out, act = scale_out(server, "fzy", {"probe": str(server.data_dir / "admin.key")})
    assert act["cold"] is True
    assert "zygote: function" in act["init_info"], act["init_info"]
    assert "rlimits" in act["init_info"], act["init_info"]  # the zygote's sandbox is reported …
    if not needs.kernel_lacks("seccomp"):  # … with its seccomp list wherever the kernel has seccomp
        assert "seccomp (python allow-list)" in act["init_info"], act["init_info"]
    assert out["imported_in"] != out["me"]  # imported in the zygote, running in a fork of it
    # the fork is as sandboxed as a clean start: the node's data dir is hidden (as root: another uid too)
    assert out["seen"] in ("FileNotFoundError", "PermissionError"), out
    if os.geteuid() == 0:
        assert out["uid"] != 0
    # POLYFN_HOST_PID is the instance's pid as the node sees it, and the instances API lists its memory
    insts = server.api.get("/v1/functions/fzy/instances").json()["instances"]
    mine = [i for i in insts if i["id"] == out["instance"]]
    assert mine and mine[0]["pid"] == out["pid"] and mine[0]["rss_kb"] and mine[0]["pss_kb"]
    assert pid_alive(out["pid"])
    assert zygote(server, "fzy")["instances"] >= 1


def test_module_starting_a_thread_falls_back_to_clean_starts(server: Server) -> None:
    server.deploy("fzthread", {"handler.py": THREADED}, max_instances=4)
    assert server.http.get("/fn/fzthread").status_code == 200
    assert wait_until(lambda: zygote(server, "fzthread")["state"].startswith("none ("), 30)
    assert "thread" in zygote(server, "fzthread")["state"]
    # a second cold start: kill the warm instance first
    insts = server.api.get("/v1/functions/fzthread/instances").json()["instances"]
    os.kill(insts[0]["pid"], signal.SIGKILL)
    assert wait_until(lambda: not server.api.get("/v1/functions/fzthread/instances").json()["instances"])
    r = server.http.get("/fn/fzthread")
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert act["cold"] and "zygote: none (the module started 1 thread at import)" in act["init_info"], act


def test_a_served_functions_new_revision_starts_from_a_zygote_built_at_deploy(server: Server) -> None:
    server.deploy("fzrev", {"handler.py": SLOW}, max_instances=4)
    r = server.api.post("/v1/functions/fzrev/invoke", json={})
    assert r.status_code == 200, r.text
    server.deploy("fzrev", {"handler.py": SLOW + "# revision 2\n"}, max_instances=4)
    # the deploy returned once the new revision's zygote was built (POLYFN_DEPLOY_ZYGOTE_WAIT): its first call
    # takes the zygote's offered child, it does not wait for the module's import
    assert zygote(server, "fzrev")["state"] == "ready"
    r = server.api.post("/v1/functions/fzrev/invoke", json={})
    assert r.status_code == 200, r.text
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert act["cold"] and "zygote: function" in act["init_info"] and "offered" in act["init_info"], act
    out = r.json()
    assert out["imported_in"] != out["me"]
    insts = server.api.get("/v1/functions/fzrev/instances").json()["instances"]
    assert [i["pid"] for i in insts if i["id"] == out["instance"]] == [out["pid"]]  # POLYFN_HOST_PID from `Take`
    z = zygote(server, "fzrev")
    assert z["state"] == "ready" and z["instances"] == 1


REVISION = """\
import time
time.sleep({sleep})  # a slow import: the new revision's zygote takes this long to build

def handler(event, context):
    return "{name}"
"""


def test_callers_reach_the_old_revision_until_the_new_ones_zygote_is_ready(server: Server) -> None:
    server.deploy("fzswitch", {"handler.py": REVISION.format(sleep=0, name="one")})
    assert server.api.post("/v1/functions/fzswitch/invoke", json={}).json() == "one"  # served: redeploys wait
    done = threading.Event()
    seen: list[tuple[float, str]] = []

    def redeploy() -> None:
        server.deploy("fzswitch", {"handler.py": REVISION.format(sleep=1.5, name="two")})
        done.set()

    t = threading.Thread(target=redeploy)
    start = time.monotonic()
    t.start()
    while not done.is_set():  # during the build (1.5 s of import) callers are answered by revision one
        r = server.api.post("/v1/functions/fzswitch/invoke", json={})
        assert r.status_code == 200, r.text
        seen.append((time.monotonic() - start, r.json()))
    t.join()
    answers = [a for _, a in seen]
    assert answers == sorted(answers, key=["one", "two"].index), answers  # switched once, never back
    assert any(a == "one" and at > 1.0 for at, a in seen), seen  # still served a second into the build
    assert all(a == "one" for at, a in seen if at < 1.2), seen  # not the new one before its zygote is built
    r = server.api.post("/v1/functions/fzswitch/invoke", json={})
    assert r.json() == "two"
    assert zygote(server, "fzswitch")["state"] == "ready"


def test_dead_zygote_is_rebuilt_and_delete_leaves_no_process(server: Server) -> None:
    server.deploy("fzdie", {"handler.py": SLOW}, max_instances=4)
    server.api.post("/v1/functions/fzdie/invoke", json={})
    assert wait_until(lambda: zygote(server, "fzdie")["state"] == "ready", 30)
    z1 = zygote(server, "fzdie")
    os.kill(z1["pid"], signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(z1["supervisor_pid"]))
    assert wait_until(lambda: zygote(server, "fzdie")["state"] != "ready" or zygote(server, "fzdie")["pid"] != z1["pid"])
    _, act = scale_out(server, "fzdie")  # a clean start (no zygote): it rebuilds the zygote
    assert act["cold"] and "zygote: runtime" in act["init_info"]
    assert wait_until(lambda: zygote(server, "fzdie")["state"] == "ready", 30)
    z2 = zygote(server, "fzdie")
    assert z2["pid"] != z1["pid"]
    _, act = scale_out(server, "fzdie")
    assert "zygote: function" in act["init_info"]
    pids = [i["pid"] for i in server.api.get("/v1/functions/fzdie/instances").json()["instances"]]
    pids += [z2["pid"], z2["supervisor_pid"]]
    assert all(pid_alive(p) for p in pids)
    assert server.api.delete("/v1/functions/fzdie").status_code in (200, 204)
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), 15), [p for p in pids if pid_alive(p)]
    # the zygote's offered child, dropped unused with it: its handle's loss is nobody's error
    time.sleep(0.5)
    assert "never retrieved" not in server.log.read_text()


def test_shutdown_leaves_no_zygote_or_instance(tmp_path) -> None:
    s = start_server(tmp_path / "d")
    try:
        s.deploy("fzshut", {"handler.py": SLOW}, max_instances=4)
        s.api.post("/v1/functions/fzshut/invoke", json={})
        assert wait_until(lambda: zygote(s, "fzshut")["state"] == "ready", 30)
        out, _ = scale_out(s, "fzshut")
        z = zygote(s, "fzshut")
        pids = [z["pid"], z["supervisor_pid"], out["pid"]]
        assert all(pid_alive(p) for p in pids)
    finally:
        assert s.stop() == 0
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), 10), [p for p in pids if pid_alive(p)]


def test_idle_zygote_is_evicted_for_memory(tmp_path) -> None:
    s = start_server(tmp_path / "d", env={"POLYFN_MEMORY_BUDGET": "400"})
    try:
        s.deploy("fzev-a", {"handler.py": SLOW}, memory=128)
        s.deploy("fzev-c", {"handler.py": SLOW}, memory=384)
        s.api.post("/v1/functions/fzev-a/invoke", json={})
        assert wait_until(lambda: zygote(s, "fzev-a")["state"] == "ready", 30)
        za = zygote(s, "fzev-a")
        assert s.api.get("/v1/functions/fzev-a").json()["scaling"]["node_memory"]["reserved_mb"] == 128 + za["reserved_mb"]
        # c needs 384 of 400 MB: a's idle instance is evicted first, then a's idle zygote
        r = s.api.post("/v1/functions/fzev-c/invoke", json={})
        assert r.status_code == 200, r.text
        assert wait_until(lambda: not pid_alive(za["pid"]))
        assert zygote(s, "fzev-a")["state"] == "none"
    finally:
        s.stop()


SECRET_ENV = """\
import os
def handler(event, context):
    import time
    if (event or {}).get('sleep'):
        time.sleep(float(event['sleep']))
    return {'token': os.environ.get('ROTATED'), 'instance': os.environ['POLYFN_INSTANCE_ID']}
"""


def test_a_changed_secret_reaches_instances_forked_after_it(server: Server) -> None:
    """The zygote's environment holds the secret it was built with: setting the secret drops the zygote,
    so the next instance (a clean start, then forks of a new zygote) gets the new value."""
    server.cli("secret", "set", "ROTATED", input="one", check=True)
    server.deploy("fzsecret", {"handler.py": SECRET_ENV}, secrets=["ROTATED:env"], max_instances=4)
    assert server.api.post("/v1/functions/fzsecret/invoke", json={}).json()["token"] == "one"
    assert wait_until(lambda: zygote(server, "fzsecret")["state"] == "ready", 30), zygote(server, "fzsecret")
    out, act = scale_out(server, "fzsecret")
    assert out["token"] == "one" and "zygote: function" in act["init_info"]
    server.cli("secret", "set", "ROTATED", input="two", check=True)
    assert zygote(server, "fzsecret")["state"] != "ready"  # dropped at once
    out, act = scale_out(server, "fzsecret")
    assert out["token"] == "two", (out, act["init_info"])


# Each call of the handler is a line in the function's own /tmp (one mount namespace per function zygote:
# its instances share it), and the response says how many there are.
COUNTING = """\
def handler(event, context):
    with open('/tmp/calls', 'a+') as f:
        f.write('x\\n')
        f.seek(0)
        return {'calls': len(f.read().splitlines())}
"""


def test_an_offered_child_takes_the_first_call_pipelined_and_its_rehearsal_never_runs_the_handler(server: Server) -> None:
    """The offered child rehearses a start and an HTTP invocation while it waits, with the handler replaced by
    a stand-in: the function's code runs once per call, never for a rehearsal (theirs happen in every
    offered child, before each start). Its start is pipelined: the first call is written behind `Take`."""
    server.deploy("fzcount", {"handler.py": COUNTING}, max_instances=2)
    assert server.http.get("/fn/fzcount").json() == {"calls": 1}  # the clean start (not the zygote's tree)
    assert wait_until(lambda: zygote(server, "fzcount")["state"] == "ready", 30)
    for expected in (1, 2, 3):  # the zygote's instances share its /tmp, not the clean start's
        for inst in server.api.get("/v1/functions/fzcount/instances").json()["instances"]:
            os.kill(inst["pid"], signal.SIGKILL)
        assert wait_until(lambda: not server.api.get("/v1/functions/fzcount/instances").json()["instances"])
        time.sleep(0.1)  # (the next offer is made and has rehearsed)
        r = server.http.get("/fn/fzcount")
        assert r.status_code == 200 and r.json() == {"calls": expected}, r.text
        act = server.activation(r.headers["x-polyfn-activation-id"])
        assert act["cold"] and "zygote: function" in act["init_info"] and "offered" in act["init_info"], act


def offered_child(s: Server, name: str) -> int:
    """The host pid of the function zygote's offered child (its only child while the revision has no instance)."""
    pid = zygote(s, name)["pid"]
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        kids = [int(p) for p in f.read().split()]
    assert len(kids) == 1, kids
    return kids[0]


def test_a_call_to_an_offered_child_that_ends_before_it_started_goes_to_another_instance(server: Server) -> None:
    """A start from the function zygote writes the call behind `Take` without waiting for the child's `Ready`.
    A child that ends in between ran none of the function's code: the call is run on another instance (as a
    start lost before it was ready is tried again), not answered as a crash. (The zygote's first offer is made
    before the zygote is ready, so the server cannot give it its identity ahead: the start writes `Take`.)"""
    server.deploy("fzlost", {"handler.py": COUNTING}, max_instances=2)
    assert server.http.get("/fn/fzlost").json() == {"calls": 1}  # the clean start
    assert wait_until(lambda: zygote(server, "fzlost")["state"] == "ready", 30)
    for inst in server.api.get("/v1/functions/fzlost/instances").json()["instances"]:
        os.kill(inst["pid"], signal.SIGKILL)
    assert wait_until(lambda: not server.api.get("/v1/functions/fzlost/instances").json()["instances"])
    time.sleep(0.1)  # (the offer is made)
    child = offered_child(server, "fzlost")
    os.kill(child, signal.SIGSTOP)  # it cannot read `Take` nor answer `Ready`
    out: list[Any] = []
    caller = threading.Thread(target=lambda: out.append(server.http.get("/fn/fzlost")))
    caller.start()
    try:
        time.sleep(0.5)  # (the call is written to the stopped child)
        assert not out
    finally:
        os.kill(child, signal.SIGKILL)
        caller.join(30)
    r = out[0]
    assert r.status_code == 200 and r.json() == {"calls": 1}, r.text  # run once, by another instance
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert act["cold"] and act["status"] == "success", act
