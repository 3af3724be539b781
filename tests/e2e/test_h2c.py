"""h2c and the `http` runtime (issue #22, docs/streaming.md "h2c").

A function deployed with `h2c` (`--h2c`, or a Knative Service manifest naming a container port `h2c`) gets h2c
passed through to its program — here a real h2c server (Hypercorn): `Upgrade: h2c` (curl --http2) and prior
knowledge (curl --http2-prior-knowledge, the `h2` package as a client), the connection bound to the function its
first stream names. Any other function keeps HTTP/1.1: its `Upgrade: h2c` is declined (served over HTTP/1.1, as
RFC 9110 §7.8 lets a server do, and as Knative's queue-proxy does for a port not named h2c; the program never sees
the offer), and prior knowledge is answered 400 `h2c_unsupported` (over HTTP/2)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from .conftest import REPO, Server, start_server, wait_until
from .docblocks import doc_env, run_page
from .test_access_control import create_key

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

#: an h2c server (Hypercorn serves h2c both ways: the upgrade and prior knowledge) that says what it got
H2C_SERVER = '''
import asyncio, json, os
from hypercorn.asyncio import serve
from hypercorn.config import Config

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    out = json.dumps({"http_version": scope["http_version"], "method": scope["method"], "path": scope["path"],
                      "query": scope["query_string"].decode(), "body": body.decode(),
                      "headers": {k.decode(): v.decode() for k, v in scope["headers"]}}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})

config = Config()
config.bind = ["127.0.0.1:" + os.environ["PORT"]]
config.accesslog = None
asyncio.run(serve(app, config))
'''

KNATIVE_SERVICE = '''
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: grpc-ish
spec:
  template:
    spec:
      containers:
        - image: example.com/h2c-echo
          ports:
            - name: h2c
              containerPort: 8080
'''


@pytest.fixture(scope="module")
def h2c_fn(server: Server) -> str:
    """An h2c function deployed the Knative way: its manifest names the port h2c (no --h2c)."""
    info = server.deploy("h2c-fn", {"server.py": H2C_SERVER, "service.yaml": KNATIVE_SERVICE,
                                    "requirements.txt": "hypercorn\n"},
                         runtime="http", handler="python3 server.py")
    assert info["spec"]["h2c"] is True, info
    return "h2c-fn"


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


def activation_ids(server: Server, function: str) -> set[str]:
    r = server.api.get("/v1/activations", params={"function": function, "limit": 100})
    return {a["id"] for a in r.json()["activations"]}


def new_activation(server: Server, function: str, before: set[str]) -> dict[str, Any]:
    """The function's activation that was not in `before` (its record is made when the connection ends)."""
    deadline = time.monotonic() + 10
    while True:
        acts = server.api.get("/v1/activations", params={"function": function, "limit": 100}).json()["activations"]
        new = [a for a in acts if a["id"] not in before]
        if new or time.monotonic() > deadline:
            assert len(new) == 1, new
            return new[0]
        time.sleep(0.05)


class H2Client:
    """HTTP/2 with prior knowledge over a plain socket, with the `h2` package: requests on one connection."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.ended = False

    def request(self, path: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
                method: str = "GET") -> tuple[dict[str, str], bytes, list[Any]]:
        """(response headers, body, events of the stream) — headers include `:status`."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", method), (":path", path), (":scheme", "http"),
                                     (":authority", "node"), *(headers or [])], end_stream=not body)
        self.sock.sendall(self.conn.data_to_send())
        while body:  # within the flow-control window (it waits for the peer's WINDOW_UPDATE)
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size, len(body))
            if room == 0:
                self.conn.receive_data(self.sock.recv(65536))
                continue
            self.conn.send_data(sid, body[:room], end_stream=room == len(body))
            body = body[room:]
            self.sock.sendall(self.conn.data_to_send())
        got: dict[str, str] = {}
        data = b""
        seen: list[Any] = []
        while True:
            more = self.sock.recv(65536)
            if not more:
                self.ended = True
                return got, data, seen
            for ev in self.conn.receive_data(more):
                if getattr(ev, "stream_id", None) == sid:
                    seen.append(ev)
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    got = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    data += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset) and ev.stream_id == sid:
                    self.sock.sendall(self.conn.data_to_send())
                    return got, data, seen
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.ended = True
            self.sock.sendall(self.conn.data_to_send())

    def close(self) -> None:
        self.sock.close()


def alone(server: Server, path: str, headers: list[tuple[str, str]] | None = None) -> tuple[dict[str, str], Any]:
    """A request on a connection of its own: the answer's headers and its JSON body."""
    c = H2Client(server.port)
    try:
        got, body, _ = c.request(path, headers=headers)
        return got, json.loads(body)
    finally:
        c.close()


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


def test_http2_prior_knowledge_is_refused_for_a_function_without_h2c(server: Server) -> None:
    server.deploy("h2c-echo", {"server.py": ECHO_SERVER})
    headers, body = alone(server, "/fn/h2c-echo/x")
    assert headers[":status"] == "400" and headers["x-polyfn-error"] == "h2c_unsupported", (headers, body)
    assert body["error"]["code"] == "h2c_unsupported"
    headers, body = alone(server, "/v1/functions")  # a path that is not /fn/NAME: the same
    assert headers[":status"] == "400" and body["error"]["code"] == "h2c_unsupported"
    headers, body = alone(server, "/fn/no-such-function")
    assert headers[":status"] == "404" and body["error"]["code"] == "function_not_found"


def test_curl_http2_upgrade_passes_through(server: Server, h2c_fn: str) -> None:
    r = subprocess.run(["curl", "-sS", "-v", "--http2", "--max-time", "60", "-H", "x-kept: yes",
                        f"{server.url}/fn/{h2c_fn}/a/b?x=1"], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    assert "< HTTP/1.1 101 Switching Protocols" in r.stderr and "< HTTP/2 200" in r.stderr, r.stderr + r.stdout
    seen = json.loads(r.stdout)
    assert seen["http_version"] == "2" and seen["path"] == "/a/b" and seen["query"] == "x=1", seen
    assert seen["headers"]["x-kept"] == "yes"
    act_id = next(ln.split(":", 1)[1].strip() for ln in r.stderr.splitlines()
                  if ln.lower().startswith("< x-polyfn-activation-id:"))
    act = server.activation(act_id)
    assert act["status"] == "success" and act["status_code"] == 101, act
    assert act["stream"]["bytes"] > len(r.stdout) and act["duration_ms"] > 0, act


def test_curl_http2_upgrade_with_a_body(server: Server, h2c_fn: str) -> None:
    r = subprocess.run(["curl", "-sS", "--http2", "--max-time", "60", "--data-binary", "hello body",
                        f"{server.url}/fn/{h2c_fn}/post"], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["method"] == "POST" and seen["body"] == "hello body" and seen["http_version"] in ("1.1", "2"), seen


def test_curl_http2_prior_knowledge(server: Server, h2c_fn: str) -> None:
    # (one URL per curl: Debian's curl 7.88 breaks its second request on a reused h2c connection, against any
    # server — Hypercorn and Node's http2 alike; several streams on one connection are the h2 client's test below)
    before = activation_ids(server, h2c_fn)
    r = subprocess.run(["curl", "-sS", "-v", "--http2-prior-knowledge", "--max-time", "60",
                        f"{server.url}/fn/{h2c_fn}/one?q=1"], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    assert "< HTTP/2 200" in r.stderr, r.stderr
    seen = json.loads(r.stdout)
    assert seen["http_version"] == "2" and seen["path"] == "/one" and seen["query"] == "q=1", seen
    act = new_activation(server, h2c_fn, before)
    assert act["status"] == "success" and act["status_code"] == 200 and act["stream"]["end"] == "complete", act
    assert act["req_bytes"] > 24 and act["resp_bytes"] > len(r.stdout), act  # (the preface, the frames)


NODE_H2C = """
const http2 = require('http2');
const server = http2.createServer();  // prior knowledge only (Node's http2 takes no Upgrade: h2c)
server.on('stream', (stream, headers) => {
  let body = '';
  stream.on('data', (c) => { body += c; });
  stream.on('end', () => {
    stream.respond({':status': 200, 'content-type': 'text/plain'});
    stream.end(`${headers[':method']} ${headers[':path']} over HTTP/2, ${body.length} bytes in\\n`);
  });
});
server.listen(Number(process.env.PORT));
"""


def test_node_http2_server_with_prior_knowledge(server: Server) -> None:
    server.deploy("h2c-node", {"server.js": NODE_H2C}, runtime="http", handler="node server.js", h2c=True)
    r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "60", "--data-binary", "abc",
                        f"{server.url}/fn/h2c-node/p"], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0 and r.stdout == "POST /p over HTTP/2, 3 bytes in\n", (r.stdout, r.stderr)


def test_a_connection_is_bound_to_the_function_its_first_stream_names(server: Server, h2c_fn: str) -> None:
    c = H2Client(server.port)
    try:
        headers, body, _ = c.request(f"/fn/{h2c_fn}/first", headers=[
            ("x-same", "v" * 100), ("x-polyfn-revision", "1"), ("x-polyfn-identity", "forged"), ("x-wx-openid", "x")])
        seen = json.loads(body)
        assert headers[":status"] == "200" and seen["path"] == "/first", (headers, body)
        assert not [k for k in seen["headers"] if k.startswith(("x-polyfn-", "x-wx-"))], seen  # (never from a client)
        headers, body, _ = c.request("/fn/h2c-echo/x", body=b"dropped " * 1000, method="POST")
        assert headers[":status"] == "421" and headers["x-polyfn-error"] == "h2c_other_function", headers
        # the connection goes on (the program's HPACK state and the connection window are intact)
        headers, body, _ = c.request(f"/fn/{h2c_fn}/third", body=b"x" * 62000, method="POST",
                                     headers=[("x-same", "v" * 100)])
        seen = json.loads(body)
        assert headers[":status"] == "200" and seen["path"] == "/third" and len(seen["body"]) == 62000, headers
        assert seen["headers"]["x-same"] == "v" * 100
    finally:
        c.close()


def test_h2c_respects_the_functions_key(server: Server) -> None:
    server.deploy("h2c-private", {"server.js": NODE_H2C}, runtime="http", handler="node server.js", h2c=True,
                  auth="key")
    token = create_key(server, "--scope", "invoke", "--function", "h2c-private")
    headers, body = alone(server, "/fn/h2c-private/x")
    assert headers[":status"] == "401" and body["error"]["code"] == "unauthorized"
    c = H2Client(server.port)
    try:
        headers, body, _ = c.request("/fn/h2c-private/x", headers=[("x-functions-key", token)])
        assert headers[":status"] == "200" and body == b"GET /x over HTTP/2, 0 bytes in\n", (headers, body)
        headers, body, _ = c.request(f"/fn/h2c-private/z?code={token}")  # (or in the query, as on Azure)
        assert headers[":status"] == "200" and body.startswith(b"GET /z?code="), (headers, body)
        headers, _, _ = c.request("/fn/h2c-private/y")  # every stream shows its key
        assert headers[":status"] == "401" and headers["x-polyfn-error"] == "unauthorized"
    finally:
        c.close()
    # Upgrade: h2c without the key: not taken over, refused over HTTP/1.1 as any call
    got = raw(server, b"GET /fn/h2c-private/x HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings, close\r\n"
                      b"upgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 401 "), got[:300]


def test_an_idle_h2c_connection_ends_at_the_functions_stream_idle_timeout(server: Server) -> None:
    server.deploy("h2c-idle", {"server.js": NODE_H2C}, runtime="http", handler="node server.js", h2c=True,
                  stream_idle_timeout=1)
    before = activation_ids(server, "h2c-idle")
    c = H2Client(server.port)
    try:
        headers, body, _ = c.request("/fn/h2c-idle/x")
        assert headers[":status"] == "200" and body == b"GET /x over HTTP/2, 0 bytes in\n"
        c.sock.settimeout(30)
        ended = []
        while not ended:  # nothing is sent: the node ends the connection (GOAWAY, then it closes)
            more = c.sock.recv(65536)
            if not more:
                break
            ended = [e for e in c.conn.receive_data(more) if isinstance(e, h2.events.ConnectionTerminated)]
    finally:
        c.close()
    act = new_activation(server, "h2c-idle", before)
    assert act["status"] == "timeout" and act["stream"]["end"] == "idle_timeout", act


def test_the_h2c_example_of_docs_flavors_md_runs(server: Server, tmp_path: Path) -> None:
    doc = REPO / "docs" / "flavors.md"
    ran = [b for b, _ in run_page(doc, tmp_path, doc_env(server.url, key=server.key), expect="arrow",
                                  only=lambda b: (b.file is not None and b.file.startswith("h2c-hello/"))
                                  or "/fn/h2c-hello" in b.code)]
    assert len(ran) == 1


def test_h2c_connections_count_against_the_nodes_limit_and_hear_goaway_at_shutdown(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={"POLYFN_HTTP_MAX_CONNECTIONS": "16"})
    clients: list[H2Client] = []
    try:
        server.deploy("h2c-stop", {"server.js": NODE_H2C}, runtime="http", handler="node server.js", h2c=True,
                      concurrency=20)
        server.api.close()  # (its keep-alive connection would be one of the 16)
        for i in range(16):  # the node's limit, all held by h2c connections (each an invocation)
            clients.append(H2Client(server.port))
            headers, _, _ = clients[-1].request(f"/fn/h2c-stop/{i}")
            assert headers[":status"] == "200"
        got = raw(server, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 503 ") and b"too_many_connections" in got, got[:300]
        clients.pop().close()
        wait_until(lambda: raw(server, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").startswith(b"HTTP/1.1 200"))
        c = clients[0]
        server.proc.send_signal(signal.SIGTERM)
        c.sock.settimeout(20)
        goaway = None
        while goaway is None:
            more = c.sock.recv(65536)
            assert more, "the node closed without GOAWAY"
            goaway = next((e for e in c.conn.receive_data(more) if isinstance(e, h2.events.ConnectionTerminated)),
                          None)
        assert goaway.error_code == 0 and goaway.last_stream_id == 1, goaway
        for c in clients:  # (the clients leave: the node's drain ends with them)
            c.close()
        assert server.proc.wait(30) == 0
    finally:
        for c in clients:
            c.close()
        server.stop(signal.SIGKILL)


def test_a_namespaces_h2c_function(server: Server) -> None:
    assert server.api.post("/v1/namespaces", json={"name": "h2c-team"}).status_code == 201
    key = server.api.post("/v1/keys", json={"scope": "deploy", "namespace": "h2c-team"}).json()
    token = f"{key['access_key_id']}:{key['secret_access_key']}"
    r = server.http.post("/v1/functions", headers={"authorization": f"Bearer {token}"},
                         json={"name": "h2c-ns", "files": {"server.js": NODE_H2C}, "runtime": "http",
                               "handler": "node server.js", "h2c": True})
    assert r.status_code == 201, r.text
    c = H2Client(server.port)
    try:
        for path in ("/a", "/b"):
            headers, body, _ = c.request("/fn/h2c-team/h2c-ns" + path)
            assert headers[":status"] == "200" and body == f"GET {path} over HTTP/2, 0 bytes in\n".encode()
        headers, _, _ = c.request("/fn/h2c-ns/c")  # (not the default namespace's: there is none)
        assert headers[":status"] == "421"
    finally:
        c.close()
