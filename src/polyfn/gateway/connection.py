"""The HTTP connection's pieces under the protocol of gateway/http.py: a transport that sends the writes of one
event-loop iteration as one, and the connections' deadlines, swept.

uvicorn writes a response in two `transport.write` calls (status line and headers, then the body), and
uvloop sends each at once: two syscalls and, on loopback, two passes through the TCP stack and two
wake-ups of the client, per response. Measured on the hot path (`/fn/NAME`, wrk -c32): the second write
cost about as much server CPU as the whole gateway's own Python code. The protocol hands uvicorn a transport
(`CoalescingTransport`) that collects what is written during the current iteration of the loop and sends it
with one write from one callback for all the loop's connections (`_Flushes`), so a whole small response leaves
in one segment. Everything
else (parsing, keep-alive, pipelining, flow control, TLS, upgrades) is uvicorn's, unchanged.

uvicorn also arms a timer (`call_later`) after every response, to close the connection if no request follows
within `timeout_keep_alive`, and cancels it when the next request arrives: ~2 µs of the event loop per
request. `IdleConnections` keeps the same deadline in a dict, and one sweep a second closes the connections
that passed it (so an idle connection closes between `timeout_keep_alive` and one second later). A request
that arrives whole in one read (the common case) touches that dict once, at its response: its header and body
deadlines are armed only when the read ends with them still due, and an idle deadline it leaves behind is
dropped by the sweep (a connection with a request under way is not idle), not at each read.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from polyfn.loops import one_item

log = logging.getLogger("polyfn.gateway")


class _Flushes:
    """The transports of one loop with writes held in this iteration, flushed by one callback (a callback per
    transport was a handle made, queued and run per response: ~0.2 µs of the loop each)."""

    __slots__ = ("held", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.held: list[CoalescingTransport] = []

    def run(self) -> None:
        held, self.held = self.held, []
        for transport in held:
            try:
                transport.flush()
            except Exception as exc:  # (as the loop reports a failed callback; the others still go)
                self.loop.call_exception_handler({"message": "a held write failed", "exception": exc,
                                                  "transport": transport})


_flushes_by_loop: dict[int, _Flushes] = {}


def _flushes(loop: asyncio.AbstractEventLoop) -> _Flushes:
    flushes = _flushes_by_loop.get(id(loop))
    if flushes is None or flushes.loop is not loop:
        flushes = _flushes_by_loop[id(loop)] = _Flushes(loop)
    return flushes


class CoalescingTransport:
    """A transport whose writes are held until the end of the current loop iteration, then sent together
    (with every other transport's of the loop held in it: `_Flushes`).

    Anything that ends or inspects the stream (close, write_eof, get_write_buffer_size, set_protocol)
    first sends what is held, so ordering and back-pressure stay exact; `abort` drops it, as the real
    transport would drop its own buffer."""

    __slots__ = ("_flushes", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None
        self._flushes = _flushes(loop)

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = [data]
            flushes = self._flushes
            if not flushes.held:
                self._loop.call_soon(flushes.run)
            flushes.held.append(self)
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
                if len(held) == 1:
                    self._transport.write(held[0])
                elif len(held) > 2 and max(map(len, held)) >= 65536:  # a streamed response's chunks: one
                    self._transport.writelines(held)  # vectored write (uvloop: writev), not a copy into one buffer
                else:
                    self._transport.write(b"".join(held))

    def write_now(self, data: bytes) -> None:
        """Write at once (after anything held): for a write from a timer, when nothing else of this
        iteration could join it."""
        self.flush()
        self._transport.write(data)

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

    def is_closing(self) -> bool:  # (asked once per response: through `__getattr__` it cost a failed lookup first)
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


class ConnectionDeadlines:
    """One deadline per connection, checked by a sweep once a second instead of a timer each: an idle
    keep-alive connection is closed ("idle"); a request whose headers ("header") or body ("body") did not
    arrive in time is answered 408 and closed."""

    SWEEP = 1.0

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._due: dict[Any, tuple[float, str]] = {}
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, proto: Any, timeout: float, kind: str = "idle") -> None:
        self._due[proto] = (self._loop.time() + timeout, kind)
        if self._handle is None:
            self._handle = self._loop.call_later(self.SWEEP, self._sweep)

    def disarm(self, proto: Any, kind: str | None = None) -> None:
        """Drop `proto`'s deadline (only if it is of `kind`, when given)."""
        if kind is None:
            self._due.pop(proto, None)
        else:
            due = self._due.get(proto)
            if due is not None and due[1] == kind:
                del self._due[proto]

    def disarm_request(self, proto: Any) -> bool:
        """Drop `proto`'s deadline if it is a request's ("header" or "body"), not an idle one. False: none is now."""
        due = self._due.get(proto)
        if due is not None and due[1] != "idle":
            del self._due[proto]
        return False

    def _sweep(self) -> None:
        self._handle = None
        now = self._loop.time()
        for proto, kind in [(p, due[1]) for p, due in self._due.items() if due[0] <= now]:
            del self._due[proto]
            if kind == "idle" and not _idle(proto):  # (left by a request that came since: see `_idle`)
                continue
            with one_item(log, "closing a connection past its %s deadline", kind):  # the next sweeps still come
                if kind == "idle":
                    proto.timeout_keep_alive_handler()
                else:
                    proto.request_timeout(kind)
        if self._due:
            self._handle = self._loop.call_later(self.SWEEP, self._sweep)


IdleConnections = ConnectionDeadlines  # (its name before it also timed requests)


def _idle(proto: Any) -> bool:
    """Is the connection idle: no byte of a next request read, no answer pending? An idle deadline is armed at a
    response and not dropped when the next request comes (a request arriving whole in one read then costs no
    deadline work of its own): the sweep asks this first. A request still arriving has its header or body
    deadline in its place; one that arrived whole is under way (its answer pending, or behind it in the
    pipeline) until its response, which arms a new idle deadline."""
    if getattr(proto, "_begun", False) or getattr(proto, "pipeline", None):
        return False
    cycle = getattr(proto, "cycle", None)
    return cycle is None or cycle.response_complete

_idle_by_loop: dict[int, ConnectionDeadlines] = {}
