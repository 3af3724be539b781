"""h2c and the `http` runtime (issue #22): the node speaks HTTP/1.1 to clients and programs, so a client's
`Upgrade: h2c` is declined (served over HTTP/1.1, as RFC 9110 §7.8 lets a server do, and as Knative's queue-proxy
does for a service whose port is not named h2c) and the program never sees the upgrade offer; a client that starts
with HTTP/2's connection preface (prior knowledge) is refused with HTTP/1.1's 400."""

from __future__ import annotations

import json
import socket

from .conftest import Server

ECHO_SERVER = '''
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({"version": self.request_version, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


def raw(server: Server, data: bytes) -> bytes:
    """Send `data` on a new connection; everything the node answers until it closes (or a whole response)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
        s.sendall(data)
        got = b""
        while True:
            more = s.recv(65536)
            if not more:
                return got
            got += more
            head, _, body = got.partition(b"\r\n\r\n")
            length = [ln.split(b":", 1)[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
            if length and len(body) >= int(length[0]):
                return got


def test_upgrade_h2c_is_answered_over_http11_and_not_offered_to_the_program(server: Server) -> None:
    server.deploy("h2c-echo", {"server.py": ECHO_SERVER})
    got = raw(server, b"GET /fn/h2c-echo/x HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings, close\r\n"
                      b"upgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nx-kept: yes\r\n\r\n")
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), got  # not 101 Switching Protocols
    assert b"\r\nupgrade:" not in head.lower()
    seen = json.loads(body)
    assert seen["version"] == "HTTP/1.1"
    assert seen["headers"]["x-kept"] == "yes"
    assert "upgrade" not in seen["headers"] and "http2-settings" not in seen["headers"], seen


def test_http2_prior_knowledge_is_refused(server: Server) -> None:
    got = raw(server, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    assert got.startswith(b"HTTP/1.1 400 "), got[:200]
