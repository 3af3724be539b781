"""The `http` runtime (Knative flavor): any program serving HTTP on $PORT, started, probed, proxied, scaled.
Includes the seed's Knative `reverse.go`, built with `go build` at deploy time."""

from __future__ import annotations

import concurrent.futures
import os
import shutil

import pytest

from .conftest import REPO, Server, error_code, pid_alive, wait_until

SERVER_PY = '''
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

print("starting on", os.environ["PORT"], flush=True)

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n)
        if self.path.startswith("/bin"):
            out, ctype = body[::-1], "application/octet-stream"
        elif self.path.startswith("/crash"):
            os._exit(7)
        else:
            pid = int(os.environ.get("POLYFN_HOST_PID") or os.getpid())  # the node's view (pid namespace)
            out = json.dumps({"method": self.command, "path": self.path, "len": len(body), "pid": pid,
                              "k": {k: os.environ.get(k) for k in ("K_SERVICE", "K_REVISION", "K_CONFIGURATION", "PORT")},
                              "hdr": self.headers.get("x-test")}).encode()
            ctype = "application/json"
        print("served", self.path, flush=True)
        self.send_response(201 if self.command == "PUT" else 200)
        self.send_header("content-type", ctype)
        self.send_header("x-from", "py")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


def test_python_server_detected_proxied_both_ways(server: Server) -> None:
    info = server.deploy("py-http", {"server.py": SERVER_PY})
    assert info["spec"]["runtime"] == "http" and info["spec"]["flavor"] == "knative"
    r = server.http.put("/fn/py-http/some/path?q=1", content=b"abc", headers={"x-test": "t"})
    assert r.status_code == 201 and r.headers["x-from"] == "py"
    out = r.json()
    assert out["method"] == "PUT" and out["path"] == "/some/path?q=1" and out["len"] == 3 and out["hdr"] == "t"
    assert out["k"]["K_SERVICE"] == "py-http" and out["k"]["K_REVISION"] == "py-http-00001"
    assert out["k"]["K_CONFIGURATION"] == "py-http" and out["k"]["PORT"]
    blob = bytes(range(256)) * 64
    r = server.http.post("/fn/py-http/bin", content=blob, headers={"content-type": "application/octet-stream"})
    assert r.content == blob[::-1] and r.headers["content-type"] == "application/octet-stream"
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert any("served /bin" in line[2] for line in act["logs"])


def test_scales_to_several_instances(server: Server) -> None:
    slow = SERVER_PY.replace('print("served"', 'import time; time.sleep(1.0); print("served"')
    server.deploy("py-http-scale", {"server.py": slow}, max_instances=3)
    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        pids = set(ex.map(lambda _: server.http.get("/fn/py-http-scale").json()["pid"], range(3)))
    assert len(pids) >= 2  # more than one instance served at once (each on its own port/network)


def test_program_that_never_listens_fails_with_its_stderr(server: Server) -> None:
    server.deploy("no-listen", {"server.py": "import sys, time\nprint('config missing: DATABASE_URL', file=sys.stderr, flush=True)\n"
                                             "time.sleep(60)\n"}, runtime="http", handler="python3 server.py", timeout=10)
    # (the program gets 0.7 × the timeout to listen; the caller waits the whole timeout: with 5 s, a start slowed
    # by a loaded machine left the caller's wait to end first, a 429 instead of the start's own error)
    r = server.http.get("/fn/no-listen")
    assert r.status_code == 502 and error_code(r) == "function_init_failed"
    err = r.json()["error"]
    assert err["errorType"] == "Runtime.PortTimeout"
    assert "config missing: DATABASE_URL" in err["message"]


def test_program_that_exits_at_start_fails_with_its_stderr(server: Server) -> None:
    server.deploy("exits", {"server.py": "import sys\nsys.exit('fatal: cannot parse config')\n"}, runtime="http",
                  handler="python3 server.py")
    r = server.http.get("/fn/exits")
    assert r.status_code == 502 and error_code(r) == "function_init_failed"
    err = r.json()["error"]
    assert err["errorType"] == "Runtime.ExitError" and "fatal: cannot parse config" in err["message"]
    assert "exited with code 1" in err["message"]


def test_server_crash_mid_request_is_reported(server: Server) -> None:
    server.deploy("py-crash", {"server.py": SERVER_PY})
    pid = server.http.get("/fn/py-crash").json()["pid"]
    r = server.http.get("/fn/py-crash/crash")
    assert r.status_code == 502 and error_code(r) == "function_crashed"
    assert "exited with code 7" in r.json()["error"]["message"]
    assert wait_until(lambda: not pid_alive(pid), 5)
    assert server.http.get("/fn/py-crash").status_code == 200  # replaced by a fresh instance


def test_node_http_server_detected(server: Server) -> None:
    if shutil.which("node") is None and os.environ.get("CI") != "true":
        pytest.skip("Node.js is not installed")
    app = ("const http = require('http');\n"
           "http.createServer((req, res) => { res.setHeader('content-type', 'text/plain'); res.end('node says ' + req.url); })"
           ".listen(process.env.PORT);\n")
    info = server.deploy("node-http", {"app.js": app})
    assert info["spec"]["runtime"] == "http" and info["spec"]["handler"] == "node app.js"
    r = server.http.get("/fn/node-http/x?y=1")
    assert r.status_code == 200 and r.text == "node says /x?y=1"


needs_go = pytest.mark.skipif(shutil.which("go") is None and os.environ.get("CI") != "true",
                              reason="no Go toolchain (apt-get install golang-go)")


@needs_go
def test_seed_knative_reverse_go(server: Server) -> None:
    r = server.cli("deploy", str(REPO / "examples/seed/knative-reverse-go"), "--name", "reverse-go", "--max-instances", "3",
                   check=True)
    assert "runtime=http" in r.stdout and "flavor=knative" in r.stdout and "@go" in r.stdout
    resp = server.http.get("/fn/reverse-go", params={"msg": "hello"})
    assert resp.status_code == 200 and resp.text == "olleh"
    resp = server.http.get("/fn/reverse-go", params={"msg": "你好, 世界"})
    assert resp.text == "界世 ,好你"
    # Listening on the hard-coded :8080 is fine for several instances at once (private network namespaces).
    if os.geteuid() == 0:
        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            texts = list(ex.map(lambda i: server.http.get("/fn/reverse-go", params={"msg": f"ab{i}"}).text, range(6)))
        assert sorted(texts) == sorted(f"{i}ba" for i in range(6))
    r = server.cli("deploy", str(REPO / "examples/seed/knative-reverse-go"), "--name", "reverse-go2", check=True)
    assert "cached Go build" in r.stdout + r.stderr


@needs_go
def test_go_build_error_is_a_deploy_error(server: Server) -> None:
    r = server.api.post("/v1/functions", json={"name": "bad-go", "files": {"main.go": "package main\nfunc main() { undefined() }\n"}})
    assert r.status_code == 400 and error_code(r) == "build_failed"
    assert "undefined" in r.json()["error"]["message"]


def test_explicit_command_with_port_variable(server: Server) -> None:
    server.deploy("static-site", {"hello.txt": "static hello\n"}, runtime="http",
                  handler="python3 -m http.server ${PORT} --bind 127.0.0.1")
    r = server.http.get("/fn/static-site/hello.txt")
    assert r.status_code == 200 and r.text == "static hello\n"
