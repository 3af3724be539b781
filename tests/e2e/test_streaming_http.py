"""The `http` runtime passes streamed responses through (issue #22): a program's chunked server-sent events reach
the client as it writes them (not when it ends), and when the client goes the program sees its own client go."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from .conftest import Server, wait_until
from .streams import leave_after, recorded

HOST_FS = True  # the program waits for a file the test writes in the host's /tmp

SSE_SERVER = '''
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def chunk(self, data):
        self.wfile.write(b"%x\\r\\n%s\\r\\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            if "go" in q:
                self.chunk(b"data: first\\n\\n")
                while not os.path.exists(q["go"]):
                    time.sleep(0.01)
                self.chunk(b"data: second\\n\\n")
            else:
                for i in range(100000):
                    self.chunk(b"data: tick %d\\n\\n" % i)
                    time.sleep(0.01)
            self.wfile.write(b"0\\r\\n\\r\\n")
        except (BrokenPipeError, ConnectionResetError):
            print("program: its client went", flush=True)

    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


def test_chunked_sse_passes_through_as_written(server: Server) -> None:
    server.deploy("sh-sse", {"server.py": SSE_SERVER})
    go = f"/tmp/polyfn-stream-go-{uuid.uuid4().hex}"
    try:
        with server.http.stream("GET", "/fn/sh-sse", params={"go": go}) as r:
            assert r.headers["content-type"] == "text/event-stream"
            lines = r.iter_lines()
            assert next(lines) == "data: first"  # the program is still waiting for the file
            Path(go).touch()
            assert [next(lines), next(lines)] == ["", "data: second"]
            assert list(lines) in ([], [""])  # then the end
    finally:
        if os.path.exists(go):
            os.unlink(go)
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert act["status"] == "success" and act["stream"]["end"] == "complete" and act["stream"]["chunks"] == 2


def test_the_program_sees_its_client_go(server: Server) -> None:
    server.deploy("sh-ticks", {"server.py": SSE_SERVER})
    aid = leave_after(server, "/fn/sh-ticks", b"tick 3\n")
    assert wait_until(lambda: recorded(server, aid) is not None, timeout=20)
    act = server.activation(aid)
    assert act["status"] == "disconnected"
    # the program notices at its next write; it logs after the activation ended, so the line goes to the next one
    # (the http runtime's rule for lines printed outside an invocation): the next call shows it, and the instance
    # was not killed to stop the stream
    def told() -> bool:
        r = server.http.get("/fn/sh-ticks", params={"go": "/"})
        return "program: its client went" in str(server.activation(r.headers["x-polyfn-activation-id"])["logs"])
    assert wait_until(told, timeout=20)
    assert server.activation(aid)["instance"]
