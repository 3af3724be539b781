"""A WebSocket passed through to the `http` runtime's program (an invocation of kind `websocket`).

The node accepted the client's upgrade and hands the handshake's request here; this side opens its own WebSocket
to the program (a real HTTP/1.1 `Upgrade: websocket` request on `$PORT`, with the client's headers, path, query
and subprotocols; websockets' sans-I/O client), then relays messages both ways:

- the program's answer to the handshake: 101 → a `Head(101)` (with the subprotocol it chose); anything else → the
  invocation's `Result` with its status, headers and body (the node answers the client's handshake with them);
- the program's messages → `Chunk`s to the node: `t` + UTF-8 text, `b` + bytes, `c` + 2-byte close code + reason;
- the node's `Chunk`s (the client's messages, same encoding) → frames to the program; the node's `Cancel` closes
  the connection;
- the program closing (or going) ends the invocation with its `Result`.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

from polyfn.protocol import Head, Invoke, Result

#: the client's handshake headers that are the hop's own, not the program's (the relay makes its own)
_SKIP = {"host", "connection", "upgrade", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
         "sec-websocket-protocol", "content-length", "transfer-encoding"}


class Relay:
    """One passed-through WebSocket: its socket to the program and the sans-I/O protocol, shared by the thread
    that reads the program and the proxy's reader of the node's frames (under `lock`)."""

    def __init__(self, sock: socket.socket, proto: Any):
        self.sock = sock
        self.proto = proto
        self.lock = threading.Lock()

    def upstream(self, data: bytes) -> None:
        """A piece of the client's side (the node's `Chunk`): a message, or its close."""
        kind, payload = data[:1], bytes(data[1:])
        with self.lock:
            try:
                if kind == b"t":
                    self.proto.send_text(payload)
                elif kind == b"b":
                    self.proto.send_binary(payload)
                elif kind == b"c":
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1000
                    self.proto.send_close(code if code not in (1005, 1006) else 1000, payload[2:].decode(errors="replace"))
                self.sock.sendall(b"".join(self.proto.data_to_send()))
            except Exception:  # (the program went: its side ends the invocation)
                pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def run(proxy: Any, inv: Invoke, port: int, relays: dict[int, Relay], t0: float) -> Result:
    """Open the WebSocket to the program and relay it until it ends (see the module's doc)."""
    from websockets.client import ClientProtocol
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Response
    from websockets.protocol import State
    from websockets.uri import parse_uri

    target = (inv.path or "/") + ("?" + inv.query if inv.query else "")
    subprotocols = [p.strip() for k, v in inv.headers if k.lower() == "sec-websocket-protocol" for p in v.split(",")
                    if p.strip()]
    proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{target}"), subprotocols=subprotocols or None,
                           max_size=None)
    request = proto.connect()
    for k, v in inv.headers:
        if k.lower() not in _SKIP:
            request.headers[k] = v
    try:
        sock = socket.create_connection(("127.0.0.1", port))
        proto.send_request(request)
        sock.sendall(b"".join(proto.data_to_send()))
        while proto.state is State.CONNECTING and proto.handshake_exc is None:
            data = sock.recv(65536)
            if not data:
                proto.receive_eof()
                break
            proto.receive_data(data)
    except OSError as e:
        return _failed(inv, proxy, f"the program did not answer the WebSocket handshake: {type(e).__name__}: {e}", t0)
    events = proto.events_received()
    if proto.state is not State.OPEN:
        resp = next((e for e in events if isinstance(e, Response)), None)
        sock.close()
        if resp is None:
            return _failed(inv, proxy, f"the program's WebSocket handshake failed: {proto.handshake_exc}", t0)
        headers = [(k, v) for k, v in resp.headers.raw_items() if k.lower() not in ("content-length", "connection")]
        return Result(inv.id, resp.status_code, headers, bytes(resp.body or b""), None, proxy.logs.end(inv.id),
                      (time.perf_counter() - t0) * 1000)
    relay = relays[inv.id] = Relay(sock, proto)
    proxy.send(Head(inv.id, 101, [("sec-websocket-protocol", proto.subprotocol)] if proto.subprotocol else []))
    parts: list[bytes] = []
    text = False
    try:
        while True:
            for ev in events:
                if not isinstance(ev, Frame):  # (the handshake's response)
                    continue
                if ev.opcode is Opcode.TEXT or ev.opcode is Opcode.BINARY:
                    text, parts = ev.opcode is Opcode.TEXT, [ev.data]
                elif ev.opcode is Opcode.CONT:
                    parts.append(ev.data)
                elif ev.opcode is Opcode.CLOSE:
                    close = proto.close_rcvd
                    code = close.code if close is not None else 1005
                    proxy.send_chunk(inv.id, b"c" + struct.pack("!H", code) + (close.reason.encode() if close else b""))
                    continue
                else:
                    continue
                if ev.fin:
                    proxy.send_chunk(inv.id, (b"t" if text else b"b") + b"".join(parts))
                    parts = []
            with relay.lock:
                out = proto.data_to_send()
                if out:
                    sock.sendall(b"".join(out))
            data = sock.recv(262144)
            with relay.lock:
                if data:
                    proto.receive_data(data)
                else:
                    proto.receive_eof()
                events = proto.events_received()
            if not data or proto.state is State.CLOSED:
                for ev in events:  # (a last close frame)
                    if isinstance(ev, Frame) and ev.opcode is Opcode.CLOSE and proto.close_rcvd is not None:
                        c = proto.close_rcvd
                        proxy.send_chunk(inv.id, b"c" + struct.pack("!H", c.code) + c.reason.encode())
                break
    except OSError:
        pass
    finally:
        relays.pop(inv.id, None)
        sock.close()
    return Result(inv.id, 101, [], b"", None, proxy.logs.end(inv.id), (time.perf_counter() - t0) * 1000)


def _failed(inv: Invoke, proxy: Any, message: str, t0: float) -> Result:
    import json

    err = {"errorType": "Runtime.UpstreamError", "errorMessage": message, "stackTrace": []}
    return Result(inv.id, 502, [("content-type", "application/json")], json.dumps(err).encode(), err,
                  proxy.logs.end(inv.id), (time.perf_counter() - t0) * 1000)
