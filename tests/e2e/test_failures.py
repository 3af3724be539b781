"""Function failures: each is reported to the caller clearly and recorded in the activation."""

from __future__ import annotations

from pathlib import Path

from .. import needs
from .conftest import Server, error_code, pid_alive, wait_until


def test_handler_exception_returns_function_error_payload(server: Server) -> None:
    server.deploy("raiser", {"handler.py": '''
def helper(x):
    raise ValueError(f"bad value {x}")

def handler(event, context):
    print("about to fail")
    return helper(42)
'''})
    r = server.http.get("/fn/raiser")
    assert r.status_code == 500
    assert r.headers["x-polyfn-function-error"] == "Unhandled"
    assert "x-polyfn-error" not in r.headers  # the function's error, not the platform's
    # ... and the API reference says so (it once named `X-Polyfn-Error: function_error`)
    api_md = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    row = next(ln for ln in api_md.splitlines() if ln.startswith("| 500 |") and "handler raised" in ln)
    assert "`X-Polyfn-Function-Error: Unhandled`" in row and "X-Polyfn-Error: function_error" not in api_md
    err = r.json()
    assert err["errorType"] == "ValueError"
    assert err["errorMessage"] == "bad value 42"
    trace = "\n".join(err["stackTrace"])
    assert "handler.py" in trace and "helper" in trace
    assert "runtimes/python" not in trace  # the platform's own frames are trimmed
    assert 'File "handler.py", line 7' in trace  # paths relative to the code, not the node's data dir
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert act["status"] == "error"
    assert act["error"]["errorType"] == "ValueError"
    assert any("about to fail" in line[2] for line in act["logs"])
    assert server.http.get("/fn/raiser").status_code == 500  # the instance survives a handler error


def test_timeout_kills_and_replaces_instance(server: Server) -> None:
    server.deploy("sleeper", {"handler.py": '''
import os, time
def handler(event, context):
    if hasattr(event, "query") and event.query.get("sleep"):
        time.sleep(float(event.query["sleep"]))
    return {"pid": int(os.environ.get('POLYFN_HOST_PID') or os.getpid())}
'''}, timeout=1)
    pid = server.http.get("/fn/sleeper").json()["pid"]
    # The handler would sleep for an hour: the answer can only be the platform's timeout, never a clock here.
    r = server.http.get("/fn/sleeper?sleep=3600", timeout=60)
    assert r.status_code == 504 and error_code(r) == "function_timeout"
    assert r.headers["x-polyfn-error"] == "function_timeout"
    assert server.activation(r.headers["x-polyfn-activation-id"])["status"] == "timeout"
    assert wait_until(lambda: not pid_alive(pid)), "the overrunning instance must be killed"
    r = server.http.get("/fn/sleeper")
    assert r.status_code == 200 and r.json()["pid"] != pid


def test_crash_reports_exit_code(server: Server) -> None:
    server.deploy("exiter", {"handler.py": '''
import os
def handler(event, context):
    os._exit(3)
'''})
    r = server.http.get("/fn/exiter")
    assert r.status_code == 502 and error_code(r) == "function_crashed"
    assert "exited with code 3" in r.json()["error"]["message"]
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert act["status"] == "crashed"


def test_start_that_dies_reports_its_exit_code(server: Server) -> None:
    """An instance that ends during its start without an init error (here its module exits the process)
    is reported with its exit status, not only "connection closed"."""
    server.deploy("dies-at-import", {"handler.py": '''
import os
os._exit(4)
def handler(event, context):
    return "never"
'''})
    r = server.http.get("/fn/dies-at-import")
    assert r.status_code == 502 and error_code(r) == "function_init_failed", r.text
    assert "exited with code 4" in r.json()["error"]["message"], r.text


def test_crash_reports_signal(server: Server) -> None:
    server.deploy("selfkill", {"handler.py": '''
import os, signal
def handler(event, context):
    os.kill(os.getpid(), signal.SIGSEGV)
'''})
    r = server.http.get("/fn/selfkill")
    assert r.status_code == 502 and error_code(r) == "function_crashed"
    assert "SIGSEGV" in r.json()["error"]["message"]


def test_memory_limit_enforced(server: Server) -> None:
    server.deploy("hog", {"handler.py": '''
def handler(event, context):
    blocks = []
    for _ in range(400):
        blocks.append(bytearray(1024 * 1024))  # touched: bytearray zero-fills
    return len(blocks)
'''}, memory=64)
    r = server.http.get("/fn/hog")
    # Where the kernel gives a memory cgroup (asked of the kernel, not of polyfn) it OOM-kills the instance:
    # 502 function_oom. Only without one does the RLIMIT_AS fallback make Python raise MemoryError (500).
    if not needs.kernel_lacks("cgroup"):
        assert r.status_code == 502 and error_code(r) == "function_oom", r.text
        assert "memory" in r.json()["error"]["message"]
        assert server.activation(r.headers["x-polyfn-activation-id"])["status"] == "oom"
    else:
        assert r.status_code == 500 and r.json()["errorType"] == "MemoryError", r.text
    assert server.http.get("/healthz").status_code == 200


def test_import_error_reported_typed_and_backs_off(server: Server) -> None:
    server.deploy("badimport", {"handler.py": '''
import os
raise RuntimeError("cannot connect to the database")
def handler(event, context):
    return 1
'''})
    r = server.http.get("/fn/badimport")
    assert r.status_code == 502 and error_code(r) == "function_init_failed"
    body = r.json()["error"]
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert "cannot connect to the database" in body["message"]
    assert server.activation(r.headers["x-polyfn-activation-id"])["status"] == "init_failed"
    # Within the back-off window callers get the same error without a new start attempt ("remembered").
    r2 = server.http.get("/fn/badimport")
    assert r2.status_code == 502 and error_code(r2) == "function_init_failed"
    assert "retry-after" not in r.headers and "remembered" not in body  # (the first: a start was tried)
    again = r2.json()["error"]  # ... this one says it is remembered, and when the next start is tried
    assert again["remembered"] is True and "remembered from a start that failed" in again["message"]
    assert "cannot connect to the database" in again["message"] and int(r2.headers["retry-after"]) >= 1
    # Fixing the code (a new revision) makes it work immediately.
    server.deploy("badimport", {"handler.py": "def handler(event, context):\n    return 'fixed'\n"})
    assert server.http.get("/fn/badimport").text == "fixed"


def test_handler_with_wrong_arity(server: Server) -> None:
    # visible in the source: refused at deploy, naming the convention
    r = server.api.post("/v1/functions", json={"name": "arity", "handler": "handler.handler", "flavor": "native",
                                                "files": {"handler.py": "def handler(a, b, c):\n    return 1\n"}})
    assert r.status_code == 400 and error_code(r) == "handler_signature"
    assert "native" in r.json()["error"]["message"]
    # built at import time: only the instance can tell, on the first call
    server.deploy("arity", {"handler.py": "def _make():\n    def h(a, b, c):\n        return 1\n    return h\n\n"
                            "handler = _make()\n"}, handler="handler.handler", flavor="native")
    r = server.http.get("/fn/arity")
    assert r.status_code == 502 and error_code(r) == "function_init_failed"
    assert "Runtime.HandlerSignature" == r.json()["error"]["errorType"]
    assert "native" in r.json()["error"]["message"]


def test_output_is_captured_per_activation(server: Server) -> None:
    server.deploy("printer", {"handler.py": '''
import sys
print("at import")
def handler(event, context):
    print("out", event["n"])
    print("err", event["n"], file=sys.stderr)
    return event["n"]
'''})
    ids = []
    for n in range(3):
        r = server.api.post("/v1/functions/printer/invoke", json={"n": n})
        assert r.status_code == 200
        ids.append(r.headers["x-polyfn-activation-id"])
    first = server.activation(ids[0])
    assert [ln[2] for ln in first["logs"]] == ["at import", "out 0", "err 0"]
    assert first["cold"] is True
    third = server.activation(ids[2])
    assert [(ln[1], ln[2]) for ln in third["logs"]] == [("stdout", "out 2"), ("stderr", "err 2")]
    assert third["cold"] is False
    logs = server.api.get("/v1/functions/printer/logs").json()["logs"]
    assert [ln["line"] for ln in logs][-2:] == ["out 2", "err 2"]
