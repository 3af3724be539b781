"""h2c (HTTP/2 without TLS) passed through to an `http`-runtime program that declared it (`h2c: true`, Knative's
port named `h2c`): the node's side (docs/streaming.md, "h2c").

The node's HTTP/1.1 protocol (gateway/http.py) hands a connection over here in two cases, and only for a function
deployed with `h2c` (any other connection keeps the HTTP/1.1 behaviour: the upgrade declined, prior knowledge 400):

- **`Upgrade: h2c`** on `/fn/NAME/…` (`upgrade_for`, at the request's headers, when the caller may call the
  function): the request goes to the program as it came (path without `/fn/NAME`, its `Upgrade`,
  `HTTP2-Settings`, body), through the instance's proxy (runtimes/http/h2c.py). The program's `101` goes back
  and the connection is relayed both ways from then on; a program that declines answers over HTTP/1.1 and the
  connection closes after it.
- **Prior knowledge** (the connection's first bytes are HTTP/2's preface, `prior_knowledge`): the connection is
  bound to the function its first stream names (`:path` `/fn/NAME/…` or `/fn/NAMESPACE/NAME/…`). A first
  stream for anything else (another path, a function without `h2c`, no key for a private one) is answered by the
  node over HTTP/2 (400 `h2c_unsupported`, 404, 401) and the connection ends.

Either way the bytes are relayed untouched except the client's header blocks, which are decoded and re-encoded
(gateway/h2frames.py) so that each new stream's `:path` loses its `/fn/NAME` prefix, and a stream naming another
function (421 `h2c_other_function`) or refused by the function's key check (401) is answered by the node and
never reaches the program; a client's `X-Polyfn-*` headers and identity claims are dropped, as on every ingress.
The connection is one invocation of the function (kind `h2c`): it holds one of its instance's `concurrency`
slots, runs under the function's `stream_idle_timeout` (no byte either way) and `stream_max_duration`, and its
activation records the bytes each way and the duration. It counts against the node's
`POLYFN_HTTP_MAX_CONNECTIONS` like any connection; the node's shutdown sends GOAWAY and lets it finish within the
drain. Reading the client pauses while the instance has more than 1 MiB of it unread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from polyfn import streaming
from polyfn.auth.function_keys import refusal
from polyfn.call import Call
from polyfn.gateway.h2frames import (
    NO_ERROR,
    PREFACE,
    ClientFrames,
    H2Error,
    Refusal,
    ServerFrames,
    error_connection,
    goaway,
)
from polyfn.headers import IDENTITY_HEADER_PREFIXES, INTERNAL_PREFIX, from_outside
from polyfn.tenancy import qualify

log = logging.getLogger("polyfn.gateway")

PREFIX = b"/fn/"
#: bytes of the client held while its invocation starts; reading pauses beyond
HELD_MAX = 1 << 20
#: seconds between looks at the instance's backlog while reading the client is paused
BACKLOG_POLL = 0.01
#: the client's write buffer beyond which the program's bytes wait for it to drain
WRITE_HIGH = 1 << 20
#: request headers a client never passes to the program: the node's own (headers.py), identity claims (headers.py)
_NOT_PASSED = (INTERNAL_PREFIX.encode(), *(p.encode() for p in IDENTITY_HEADER_PREFIXES))
_HOP = {b"connection", b"upgrade", b"content-length", b"transfer-encoding", b"keep-alive"}


def split_path(path: bytes) -> tuple[str, str, str] | None:
    """`/fn/NAME[/SUB][?QUERY]` → (NAME, /SUB, QUERY); None for another path."""
    if not path.startswith(PREFIX):
        return None
    target, _, query = path[len(PREFIX):].partition(b"?")
    name, slash, sub = target.partition(b"/")
    if not name:
        return None
    return name.decode("latin-1"), "/" + sub.decode("latin-1") if slash else "/", query.decode("latin-1")


class H2cGate:
    """What the HTTP/1.1 protocol asks when a connection may be h2c (its class attribute `h2c`)."""

    def __init__(self, invoker: Any, keys: Any, header_timeout: float = 10.0, max_payload: int = 6 << 20):
        self.invoker = invoker
        self.keys = keys
        self.header_timeout = header_timeout
        self.max_payload = max_payload

    def locate(self, path: bytes) -> tuple[Any, str, str, str] | None:
        """`/fn/NAME[/SUB][?QUERY]` (or `/fn/NAMESPACE/NAME/…`, as the gateway reads it: tenancy.py) → (the
        registry entry or None, the function's name, /SUB, QUERY); None for another path."""
        where = split_path(path)
        if where is None:
            return None
        name, sub, query = where
        registry = self.invoker.registry
        active = registry.get(name)
        if active is None and len(sub) > 1:
            fn, slash, rest = sub[1:].partition("/")
            found = registry.get(qualify(name, fn))
            if found is not None:
                return found, found.revision.function, "/" + rest if slash else "/", query
        return active, name, sub, query

    @staticmethod
    def serves_h2c(active: Any) -> bool:
        return active is not None and active.revision.spec.h2c and active.revision.spec.runtime == "http"

    def refused(self, active: Any, name: str, query: str, headers: list[tuple[str, str]]) -> Refusal | None:
        spec = active.revision.spec
        if spec.auth == "anonymous":
            return None
        why = refusal(spec, name, query, headers, self.keys)
        return None if why is None else Refusal(*why)

    # -- Upgrade: h2c ---------------------------------------------------------------------------------------

    def upgrade_for(self, proto: Any) -> dict[str, Any] | None:
        """At an upgrade request's headers: what to take over if it is `Upgrade: h2c` for an h2c function that
        this caller may call, else None (the request is served over HTTP/1.1 as usual, refusals included)."""
        headers = proto.headers
        upgrade = next((v for k, v in headers if k == b"upgrade"), b"")
        if b"h2c" not in [t.strip().lower() for t in upgrade.split(b",")]:
            return None
        where = self.locate(proto.url)
        if where is None:
            return None
        active, name, sub, query = where
        if not self.serves_h2c(active) or any(k == b"transfer-encoding" for k, _ in headers):
            return None
        text = from_outside([(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers])
        if self.refused(active, name, query, text) is not None:
            return None
        length = next((v for k, v in headers if k == b"content-length"), b"0")
        if not length.isdigit() or int(length) > self.max_payload:
            return None
        return {"name": name, "active": active, "sub": sub, "query": query, "headers": text,
                "method": proto.parser.get_method().decode("latin-1"), "length": int(length)}

    def upgrade(self, proto: Any, take: dict[str, Any], rest: bytes) -> None:
        """Take the connection over after the upgrade request's headers (`rest`: what followed them)."""
        tunnel = Tunnel(self, proto.connections, take)
        _switch(proto, tunnel)
        if rest:
            tunnel.data_received(rest)

    # -- prior knowledge ------------------------------------------------------------------------------------

    def prior_knowledge(self, proto: Any, data: bytes) -> None:
        """The connection's first bytes begin like HTTP/2's preface: take it over."""
        tunnel = Tunnel(self, proto.connections, None)
        _switch(proto, tunnel)
        tunnel.data_received(data)


def _switch(proto: Any, tunnel: Tunnel) -> None:
    """Move the connection from the HTTP/1.1 protocol to `tunnel` (as uvicorn does for a WebSocket)."""
    proto._idle.disarm(proto)
    proto.connections.discard(proto)
    transport = proto.transport
    flush = getattr(transport, "flush", None)
    if flush is not None:  # a CoalescingTransport: what it holds goes first
        flush()
    raw = getattr(transport, "_transport", transport)
    raw.set_protocol(tunnel)
    tunnel.connection_made(raw)


class Tunnel(asyncio.Protocol):
    """One h2c connection passed through (see the module's doc). `take`: the upgrade request (None: prior
    knowledge)."""

    def __init__(self, gate: H2cGate, connections: set[Any], take: dict[str, Any] | None):
        self.gate = gate
        self.connections = connections
        self.take = take
        self.transport: Any = None
        self.name: str | None = None
        self.active: Any = None
        self.frames = ClientFrames(self.route, preface=True)
        self.server = ServerFrames()
        self.body = bytearray()  # the upgrade request's body, while it comes
        self.held: list[bytes] = []  # for the program, until its invocation is up
        self.held_bytes = 0
        self.stream: Any = None
        self.closed = False
        self.drained: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.first_refusal: tuple[int, Refusal] | None = None
        self._paused_at: asyncio.TimerHandle | None = None  # reading the client paused for the instance's backlog
        self.draining = False  # the node stops: GOAWAY sent, no new stream

    # -- asyncio ---------------------------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self.transport = transport
        self.connections.add(self)
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.gate.header_timeout, self._too_slow)
        if self.take is not None and self.take["length"] == 0:
            self._start(self.take["method"], self.take["sub"], self.take["query"], self.take["headers"], b"")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        stream = self.stream
        if stream is not None:
            stream.last = time.perf_counter()
        take = self.take
        if take is not None and self.task is None:  # the upgrade request's body
            need = take["length"] - len(self.body)
            self.body += data[:need]
            data = data[need:]
            if len(self.body) < take["length"]:
                return
            self._start(take["method"], take["sub"], take["query"], take["headers"], bytes(self.body))
            if not data:
                return
        try:
            out = self.frames.feed(data)
        except H2Error as e:  # (GOAWAY only where a frame of the node's may go: not inside one of the program's)
            clean = self.server.at_boundary or (self.take is None and not self.server.started)
            self._end(goaway(self.frames.forwarded, e.code, str(e).encode()[:200]) if clean else b"", e)
            return
        if self.first_refusal is not None:  # the connection's first stream: the node answers it alone
            sid, why = self.first_refusal
            self._end(error_connection(sid, why.status, why.code, why.message))
            return
        if out:
            if stream is not None:
                stream.upstream(out)
                if self._paused_at is None and stream.backlog is not None and stream.backlog() > HELD_MAX:
                    self.transport.pause_reading()  # (the program reads slower than the client sends)
                    self._paused_at = asyncio.get_running_loop().call_later(BACKLOG_POLL, self._backlog)
            else:
                self.held.append(out)
                self.held_bytes += len(out)
                if self.held_bytes > HELD_MAX:
                    self.transport.pause_reading()
        self._inject()

    def _backlog(self) -> None:
        """Reading the client paused: resume once the instance has read what it was sent (polled)."""
        stream = self.stream
        if self.closed or stream is None or stream.backlog is None:
            return
        if stream.backlog() > HELD_MAX // 4:
            self._paused_at = asyncio.get_running_loop().call_later(BACKLOG_POLL, self._backlog)
        else:
            self._paused_at = None
            self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        return None  # (HTTP/2 has no half-close of the connection: end it)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        if self._paused_at is not None:
            self._paused_at.cancel()
        if self.stream is not None:  # the client closing is how an HTTP/2 connection ends; a reset is not
            self.stream.cancel(streaming.COMPLETE if exc is None else streaming.DISCONNECTED)
        self._wake()

    def pause_writing(self) -> None:
        if self.drained is None:
            self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake()

    def _wake(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def shutdown(self) -> None:
        """The node stops (uvicorn's shutdown): GOAWAY, so the client opens no new stream; the streams in flight
        go on until the client closes, or the node's drain ends and stops the invocation (docs/streaming.md)."""
        if self.stream is None:
            self._end(b"")
            return
        self.draining = True
        self.frames.to_client.append(goaway(self.frames.forwarded, NO_ERROR))
        self._inject()

    # -- streams ---------------------------------------------------------------------------------------------

    def route(self, stream: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]] | Refusal:
        """A new stream's headers (ClientFrames): the program's, or the node's refusal."""
        path = next((v for k, v in headers if k == b":path"), b"")
        where = self.gate.locate(path)
        if self.name is None:  # prior knowledge, the first stream: it binds the connection
            why = self._bind(where, headers)
            if why is not None:
                self.first_refusal = (stream, why)
                return why
        assert self.name is not None
        if self.draining:
            return Refusal(503, "shutting_down", "the node is shutting down: open a connection to another node")
        if where is None or where[1] != self.name:
            return Refusal(421, "h2c_other_function", (
                f"this h2c connection is bound to function {self.name!r} (its first stream named it); open another "
                f"connection for {path.decode('latin-1')!r}"))
        _, name, sub, query = where
        why = self.gate.refused(self.active, name, query, [(k.decode("latin-1"), v.decode("latin-1"))
                                                           for k, v in headers if k[:1] != b":"])
        if why is not None:
            return why
        target = (sub + "?" + query if query else sub).encode("latin-1")
        # (never-indexed fields stay so; the node's own headers and identity claims never come from a client)
        return [(b":path", target) if h[0] == b":path" else h for h in headers if not h[0].startswith(_NOT_PASSED)]

    def _bind(self, where: tuple[Any, str, str, str] | None, headers: list[tuple[bytes, bytes]]) -> Refusal | None:
        if where is None:
            return Refusal(400, "h2c_unsupported", (
                "HTTP/2 without TLS (h2c) is passed through only at /fn/NAME/… of a function deployed with h2c "
                "(docs/streaming.md, \"h2c\"); this node serves everything else over HTTP/1.1"))
        active, name, sub, query = where
        if not self.gate.serves_h2c(active):
            if active is None:
                return Refusal(404, "function_not_found", f"function {name!r} does not exist")
            return Refusal(400, "h2c_unsupported", (
                f"function {name!r} is not deployed with h2c (an http-runtime program that serves h2c: --h2c, or a "
                "Knative port named h2c), so it takes HTTP/1.1 only"))
        text = from_outside([(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k[:1] != b":"])
        why = self.gate.refused(active, name, query, text)
        if why is not None:
            return why
        self.name, self.active = name, active
        self._start("PRI", sub, query, text, b"")
        return None

    def _start(self, method: str, sub: str, query: str, headers: list[tuple[str, str]], body: bytes) -> None:
        if self.take is not None:
            self.name, self.active = self.take["name"], self.take["active"]
        assert self.name is not None
        call = Call(self.name, "h2c", "http", method, sub, query, headers, body, active=self.active, stream=True)
        self.task = asyncio.get_running_loop().create_task(self._run(call))

    async def _run(self, call: Call) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        out = await self.gate.invoker.call(call)
        stream = out.stream
        if self.closed:
            if stream is not None:
                stream.cancel()
            return
        upgrade = self.take is not None
        if stream is None or out.status != (101 if upgrade else 200):  # refused (by the program, or the node)
            if stream is not None:
                out.body = b"".join([bytes(c) async for c in _chunks(stream)])
            if upgrade:
                self._end(_http11(out))
            else:
                error = out.error or {}
                self._end(error_connection(self.frames.last_stream or 1, out.status if out.status >= 400 else 502,
                                           str(error.get("code", "function_error")),
                                           str(error.get("message", out.body[:500].decode("utf-8", "replace")))))
            return
        if upgrade:
            head = [b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n"]
            head += [k + b": " + v + b"\r\n" for k, v in out.headers if k.lower() not in _HOP]
            self.transport.write(b"".join(head) + b"\r\n")
        self.stream = stream
        if self.held:
            stream.upstream(b"".join(self.held))
            self.held.clear()
            if self.held_bytes > HELD_MAX:
                self.transport.resume_reading()
            self.held_bytes = 0
        server = self.server
        transport = self.transport
        try:
            while (data := await stream.next()) is not None:
                server.feed(data)
                transport.write(data)
                if self.frames.to_client:
                    self._inject()
                if transport.get_write_buffer_size() > WRITE_HIGH and not self.closed:
                    if self.drained is None:
                        self.drained = asyncio.get_running_loop().create_future()
                    await self.drained
                if self.closed:
                    stream.cancel()
                    return
        except Exception:  # (the client went meanwhile)
            stream.cancel()
        if stream.error is not None and server.at_boundary:  # the node ended it (a limit) or the program died
            code = stream.error.get("code", "")
            self._end(goaway(self.frames.forwarded, NO_ERROR, str(code).encode()))
        else:
            self._end(b"")

    def _inject(self) -> None:
        """The node's own frames for the client, between two of the program's."""
        if self.frames.to_client and self.server.at_boundary and not self.closed:
            self.transport.write(b"".join(self.frames.to_client))
            self.frames.to_client.clear()

    def _too_slow(self) -> None:
        """No stream came within the header timeout (prior knowledge), or no whole upgrade request."""
        self.timer = None
        if self.task is None and not self.closed:
            self._end(goaway(0, NO_ERROR, b"no request in time") if self.take is None else b"")

    def _end(self, last: bytes, error: Exception | None = None) -> None:
        if error is not None:
            log.info("h2c connection ended: %s", error)
        if self.closed:
            return
        self.closed = True
        if last:
            self.transport.write(last)
        self.transport.close()
        if self.stream is not None:
            self.stream.cancel(*(() if error is None else (streaming.ERROR, {
                "code": "h2c_protocol_error", "message": f"the client broke HTTP/2: {error}"})))


def _http11(out: Any) -> bytes:
    """The program's (or the node's) HTTP/1.1 answer to an upgrade it did not take: the connection closes after."""
    from http import HTTPStatus

    try:
        reason = HTTPStatus(out.status).phrase
    except ValueError:
        reason = ""
    head = [f"HTTP/1.1 {out.status} {reason}\r\n".encode()]
    head += [k + b": " + v + b"\r\n" for k, v in out.headers if k.lower() not in _HOP]
    head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(out.body))
    return b"".join(head) + out.body


async def _chunks(stream: Any) -> Any:
    while (data := await stream.next()) is not None:
        yield data


__all__ = ["PREFACE", "H2cGate", "Tunnel", "split_path"]
