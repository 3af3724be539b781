"""uvicorn's httptools HTTP/1.1 protocol, with the writes of one event-loop iteration sent as one and the
keep-alive timeouts of idle connections swept instead of timed one by one.

uvicorn writes a response in two `transport.write` calls (status line and headers, then the body), and
uvloop sends each at once: two syscalls and, on loopback, two passes through the TCP stack and two
wake-ups of the client, per response. Measured on the hot path (`/fn/NAME`, wrk -c32): the second write
cost about as much server CPU as the whole gateway's own Python code. `CoalescingHttpToolsProtocol` hands
uvicorn a transport that collects what is written during the current iteration of the loop and sends it
with one write from a `call_soon` callback, so a whole small response leaves in one segment. Everything
else (parsing, keep-alive, pipelining, flow control, TLS, upgrades) is uvicorn's, unchanged.

uvicorn also arms a timer (`call_later`) after every response, to close the connection if no request follows
within `timeout_keep_alive`, and cancels it when the next request arrives: ~2 µs of the event loop per
request. `IdleConnections` keeps the same deadline in a dict, and one sweep a second closes the connections
that passed it (so an idle connection closes between `timeout_keep_alive` and one second later).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from polyfn.loops import one_item

log = logging.getLogger("polyfn.gateway")


class CoalescingTransport:
    """A transport whose writes are held until the end of the current loop iteration, then sent together.

    Anything that ends or inspects the stream (close, write_eof, get_write_buffer_size, set_protocol)
    first sends what is held, so ordering and back-pressure stay exact; `abort` drops it, as the real
    transport would drop its own buffer."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = [data]
            self._loop.call_soon(self.flush)
        else:
            held.append(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        self.flush()
        return self._transport.get_write_buffer_size()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


class IdleConnections:
    """Keep-alive connections waiting for their next request, closed by a sweep once past their deadline."""

    SWEEP = 1.0

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._due: dict[HttpToolsProtocol, float] = {}
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, proto: HttpToolsProtocol, timeout: float) -> None:
        self._due[proto] = self._loop.time() + timeout
        if self._handle is None:
            self._handle = self._loop.call_later(self.SWEEP, self._sweep)

    def disarm(self, proto: HttpToolsProtocol) -> None:
        self._due.pop(proto, None)

    def _sweep(self) -> None:
        self._handle = None
        now = self._loop.time()
        for proto in [p for p, due in self._due.items() if due <= now]:
            del self._due[proto]
            with one_item(log, "closing an idle keep-alive connection"):  # the next sweeps still come
                proto.timeout_keep_alive_handler()
        if self._due:
            self._handle = self._loop.call_later(self.SWEEP, self._sweep)


_idle_by_loop: dict[int, IdleConnections] = {}


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `CoalescingTransport`, with swept keep-alive timeouts (pass the class
    as `uvicorn.Config(http=...)`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        idle = _idle_by_loop.get(id(self.loop))
        if idle is None or idle._loop is not self.loop:
            idle = _idle_by_loop[id(self.loop)] = IdleConnections(self.loop)
        self._idle = idle
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def _unset_keepalive_if_required(self) -> None:
        self._idle.disarm(self)
        super()._unset_keepalive_if_required()

    def on_response_complete(self) -> None:
        # As uvicorn's (count the request, resume reading, start the next pipelined request if one waits),
        # except that a connection left waiting is armed in the sweep rather than with a timer.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle.arm(self, self.timeout_keep_alive)
