"""An h2c connection passed through to the `http` runtime's program (an invocation of kind `h2c`; the node's side is
gateway/h2c.py, docs/streaming.md "h2c").

- **Upgrade** (the invocation's method is the request's): the client's HTTP/1.1 request goes to the program on
  its own connection as it came (its `Connection: Upgrade, HTTP2-Settings`, `Upgrade: h2c`, `HTTP2-Settings`, its
  body). The program's `101` → a `Head(101)` with its headers, and from then on bytes both ways; any other answer
  is the invocation's `Result` (the node sends it over HTTP/1.1 and closes).
- **Prior knowledge** (method `PRI`): a connection to the program, a `Head(200)` once it is open, then bytes both
  ways (the client's preface and first frames come as the node's first `Chunk`).

The program's bytes go to the node as `Chunk`s as they are read; the node's `Chunk`s (the client's bytes) are
written to the program (`Relay.upstream`, from the proxy's reader); the node's `Cancel` or either side closing
ends it.
"""

from __future__ import annotations

import http.client
import socket
import time
from typing import Any

from polyfn.protocol import Head, Invoke, Result
from polyfn.runtimes.http import wsrelay
from polyfn.runtimes.http.wsrelay import _failed

#: the client's headers that the hop makes itself
_SKIP = {"content-length", "transfer-encoding"}
_HOP = {"connection", "upgrade", "content-length", "transfer-encoding", "keep-alive"}


class Relay(wsrelay.Relay):
    """The program's socket, for the client's bytes as they come (kept with the proxy's WebSocket relays, which
    it closes the same way)."""

    def __init__(self, sock: socket.socket):
        super().__init__(sock, None)

    def upstream(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:  # (the program went: its side ends the invocation)
            pass


def run(proxy: Any, inv: Invoke, port: int, relays: dict[int, Any], t0: float) -> Result:
    """Connect to the program, pass the connection through until it ends (see the module's doc)."""
    try:
        sock = socket.create_connection(("127.0.0.1", port))
    except OSError as e:
        return _failed(inv, proxy, f"cannot connect to the program's port {port}: {type(e).__name__}: {e}", t0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    status = 200
    reader: Any = sock
    if inv.method != "PRI":  # Upgrade: h2c
        target = (inv.path or "/") + ("?" + inv.query if inv.query else "")
        lines = [f"{inv.method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in inv.headers if k.lower() not in _SKIP]
        if inv.body:
            lines.append(f"content-length: {len(inv.body)}")
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + bytes(inv.body))
            resp = http.client.HTTPResponse(sock, method=inv.method)
            resp.begin()
        except (OSError, http.client.HTTPException) as e:
            sock.close()
            return _failed(inv, proxy, f"the program did not answer the h2c upgrade: {type(e).__name__}: {e}", t0)
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
        if resp.status != 101:  # it declined: its HTTP/1.1 answer
            try:
                body = resp.read()
            except (OSError, http.client.HTTPException):
                body = b""
            sock.close()
            return Result(inv.id, resp.status, headers, body, None, proxy.logs.end(inv.id),
                          (time.perf_counter() - t0) * 1000)
        status, reader = 101, resp.fp  # (its buffer may hold the program's first frames already)
    else:
        headers = []
    relays[inv.id] = Relay(sock)
    proxy.send(Head(inv.id, status, headers))
    try:
        read = reader.read1 if reader is not sock else sock.recv
        while data := read(262144):
            proxy.send_chunk(inv.id, data)
    except OSError:
        pass
    finally:
        relays.pop(inv.id, None)
        sock.close()
    return Result(inv.id, status, [], b"", None, proxy.logs.end(inv.id), (time.perf_counter() - t0) * 1000)
