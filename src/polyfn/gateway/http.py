"""uvicorn's httptools HTTP/1.1 protocol, with the writes of one event-loop iteration sent as one and the
keep-alive timeouts of idle connections swept instead of timed one by one (the transport and the deadlines:
gateway/connection.py), and the connection limits of gateway/limits.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from polyfn.gateway import direct as _direct
from polyfn.gateway import fn_direct as _fn_direct
from polyfn.gateway.connection import (  # noqa: F401 (CoalescingTransport, IdleConnections: imported from here too)
    CoalescingTransport,
    ConnectionDeadlines,
    IdleConnections,
    _idle_by_loop,
)
from polyfn.gateway.limits import HeadersTooLarge, HttpLimits, error_response
from polyfn.loops import one_item

log = logging.getLogger("polyfn.gateway")


#: seconds a shed call's 429 is held back at least, its connection not read from meanwhile (a tarpit; see
#: `_shed` and `Tarpit`)
SHED_PAUSE = 1.0


class Tarpit:
    """Connections whose 429 is held back, answered in arrival order by one timer for all of them (a flood
    holds ~2,000 at once: a timer each cost more than the rest of a refusal's Python).

    Each is held SHED_PAUSE at least. Beyond that, answers leave at a rate tied to the useful work: at most
    RATIO answered refusals per request the node served meanwhile, plus FLOOR a second, and none is held
    longer than MAX_HOLD. A refusal costs the event loop about a third of a served call (a read, a parse, a
    write: measured ~50 µs against ~140 µs), and a flood's callers retry at once, so a fixed pause made the
    refusals' share of the node grow with the number of connections and shrink its goodput with it (2,000
    connections, 1 s: ~2,000 refusals a second, most of the node's CPU on a slow or busy machine). Tied to
    the served requests, refusals take a bounded share (~10 %) of the loop however many connections wait."""

    TICK = 0.02  # answers due within this of each other leave together
    RATIO = 0.25
    FLOOR = 50.0
    MAX_HOLD = 5.0

    def __init__(self, loop: asyncio.AbstractEventLoop, served: Callable[[], int]):
        self._loop = loop
        self._served = served  # requests the node answered so far (not counting refusals)
        self._held: deque[tuple[float, Any]] = deque()
        self._handle: asyncio.TimerHandle | None = None
        self._tokens = 0.0
        self._last = (loop.time(), served())

    def hold(self, proto: Any) -> None:
        self._held.append((self._loop.time(), proto))
        if self._handle is None:
            self._last = (self._loop.time(), self._served())
            self._handle = self._loop.call_later(SHED_PAUSE, self._release)

    def __len__(self) -> int:
        return len(self._held)

    def _release(self) -> None:
        self._handle = None
        held = self._held
        now = self._loop.time()
        served = self._served()
        then, before = self._last
        self._last = (now, served)
        tokens = min(self._tokens + self.RATIO * (served - before) + self.FLOOR * (now - then), len(held) + 1.0)
        due = now - SHED_PAUSE + self.TICK
        overdue = now - self.MAX_HOLD + self.TICK
        while held and held[0][0] <= due and (tokens >= 1 or held[0][0] <= overdue):
            tokens -= 1
            proto = held.popleft()[1]
            with one_item(log, "answering a held 429"):  # the others are still answered
                proto._answer_shed()
        self._tokens = max(tokens, 0.0)
        if held:
            wait = held[0][0] + SHED_PAUSE - now if held[0][0] > due else self.TICK
            self._handle = self._loop.call_later(max(wait, self.TICK), self._release)


_tarpit_by_loop: dict[int, Tarpit] = {}

_BAD_REQUEST = error_response(400, "Bad Request", "invalid_http", "the request is not valid HTTP/1.1")
_BUSY = error_response(503, "Service Unavailable", "too_many_connections",
                       "the node has as many connections open as it takes (POLYFN_HTTP_MAX_CONNECTIONS)",
                       b"retry-after: 1\r\n")


class Admitting(Protocol):
    """What the protocol asks of a function that sheds load: may a new call come in now (it is then
    counted as on its way to the function's queue)?"""

    def admits(self) -> bool: ...


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `CoalescingTransport`, with swept keep-alive timeouts and the
    connection limits of `gateway/limits.py` (pass `CoalescingHttpToolsProtocol.with_limits(limits)` as
    `uvicorn.Config(http=...)`).

    Limits: the request line and headers are counted as they arrive (a header too large is cut off after
    one read past the limit, never accumulated) and against the count and size once they are complete
    → 431; a request's headers must all arrive within `header_timeout` of its first byte (a new connection:
    of its start), its body at `body_min_rate` on average after `body_timeout` → 408; connections beyond
    `max_connections` are answered 503 and closed at once."""

    limits = HttpLimits()
    #: functions whose callers wait or were refused lately (the instance manager's `shedding`,
    #: scheduler/shed.py), each with its live admission check: while it refuses, its `/fn/` calls are
    #: answered 429 here (held in the `Tarpit`), before a task, a scope or a pool is touched; and who counts them
    shedding: Mapping[str, Admitting] = {}
    on_shed: Callable[[str], None] | None = None
    _shed_responses: dict[str, bytes] = {}
    #: h2c passed through to the programs that declared it (gateway/h2c.py's H2cGate), or None
    h2c: Any = None
    #: `POST /` requests a face answers without ASGI (gateway/direct.py): (method, headers) → the face, or None
    direct: Callable[[bytes, list[tuple[bytes, bytes]]], Any] | None = None
    #: the `/fn/` gateway (gateway/asgi.py's Gateway) whose calls are answered without ASGI (gateway/fn_direct.py)
    fn_gateway: Any = None

    @classmethod
    def with_limits(cls, limits: HttpLimits, shedding: Mapping[str, Admitting] | None = None,
                    on_shed: Callable[[str], None] | None = None, h2c: Any = None,
                    direct: Callable[[bytes, list[tuple[bytes, bytes]]], Any] | None = None,
                    fn_gateway: Any = None) -> type[CoalescingHttpToolsProtocol]:
        return type("LimitedHttpToolsProtocol", (cls,), {"limits": limits, "shedding": {} if shedding is None else shedding,
                                                         "on_shed": None if on_shed is None else staticmethod(on_shed),
                                                         "_shed_responses": {}, "h2c": h2c,
                                                         "direct": None if direct is None else staticmethod(direct),
                                                         "fn_gateway": fn_gateway})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        idle = _idle_by_loop.get(id(self.loop))
        if idle is None or idle._loop is not self.loop:
            idle = _idle_by_loop[id(self.loop)] = ConnectionDeadlines(self.loop)
        self._idle = idle
        self._reading_headers = True  # headers of a request (the first one: not a byte of it yet) are due
        self._begun = False  # a byte of the next request has come
        self._header_bytes = 0  # bytes read while its headers were incomplete (see data_received)
        self._chunk_len = 0  # bytes of the read being parsed
        self._body_deadline = 0.0  # when the body began to be due (loop time), while it is read
        self._body_bytes = 0
        self._held_429: list[bytes] | None = None  # shed calls' answers held back (see `_shed`)
        self._first_read = True
        self._header_due, self._request_armed = False, True  # (a header deadline due at the read's end; one armed)
        self._h2c_take: Any = None  # an `Upgrade: h2c` request the h2c gate takes over (gateway/h2c.py)
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections:
            log.warning("connection refused: %d open (POLYFN_HTTP_MAX_CONNECTIONS)", len(self.connections) - 1)
            self.transport.write(_BUSY)
            self.transport.close()
            return
        idle.arm(self, self.limits.header_timeout, "header")

    def connection_lost(self, exc: Exception | None) -> None:
        self._idle.disarm(self)
        super().connection_lost(exc)

    def _unset_keepalive_if_required(self) -> None:
        self._idle.disarm(self, "idle")  # (a request's header or body deadline stays)
        super()._unset_keepalive_if_required()

    def data_received(self, data: bytes) -> None:
        """uvicorn's, plus the header limits and the body rate. (A request that began in this read is
        counted from the next: reads are at most 256 KB, so a header is cut off within one read past the
        limit, and bytes of the previous request in the same read never count against the next.)"""
        if self._first_read:
            self._first_read = False
            if data[:3] == b"PRI" and self.h2c is not None:  # HTTP/2's preface: h2c with prior knowledge
                self.h2c.prior_knowledge(self, data)
                return
        began = not self._reading_headers
        self._chunk_len = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self._idle.disarm(self)  # (the connection is another protocol's now: no deadline of ours stays)
            if self._h2c_take is not None:  # (what follows the request's headers goes with it)
                self.h2c.upgrade(self, self._h2c_take, data[e.args[0]:] if e.args else b"")
            elif self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as e:
            if isinstance(e.__context__, HeadersTooLarge):
                self._refuse(431, str(e.__context__))
            else:
                log.warning("invalid HTTP request from %s: %s", _peer(self.client), e, exc_info=e.__context__)
                self._refuse(400)
            return
        if self._reading_headers:
            if began:  # (a request that began in this read: from the next one on)
                self._header_bytes = 0
            else:
                self._header_bytes += len(data)
                if self._header_bytes > self.limits.max_header_bytes:
                    self._refuse(431, f"the request's headers are over {self.limits.max_header_bytes} bytes "
                                      "(POLYFN_HTTP_MAX_HEADER_BYTES)")
            if self._header_due:  # a request began in this read, its headers not all in: due from its start (now)
                self._header_due, self._request_armed = False, True
                self._idle.arm(self, self.limits.header_timeout, "header")
        elif self._body_deadline:
            self._body_bytes += len(data)
            self._request_armed = True
            self._idle.arm(self, self._body_deadline + self._body_bytes / self.limits.body_min_rate - self.loop.time(),
                           "body")

    def _refuse(self, status: int, message: str = "") -> None:
        if self.transport.is_closing():
            return
        if status == 431:
            log.warning("request from %s refused (431): %s", _peer(self.client), message)
            self.transport.write(error_response(431, "Request Header Fields Too Large", "headers_too_large", message))
        else:
            self.transport.write(_BAD_REQUEST)
        self.transport.close()

    def request_timeout(self, kind: str) -> None:
        """The headers or the body of a request did not arrive in time: 408 (unless nothing of a request
        came at all, or its response has begun), then close."""
        if self.transport.is_closing():
            return
        what = "headers" if kind == "header" else "body"
        cycle = self.cycle if kind == "body" else None  # (while headers are due, the cycle is the last request's)
        if (kind == "header" and not self._begun) or (cycle is not None and cycle.response_started):
            self.transport.close()
            return
        log.warning("request from %s timed out: its %s did not arrive in time", _peer(self.client), what)
        if cycle is not None:
            cycle.disconnected = True  # the app's receive() ends (http.disconnect): nothing runs
            cycle.message_event.set()
        setting = "POLYFN_HTTP_HEADER_TIMEOUT" if kind == "header" else "POLYFN_HTTP_BODY_TIMEOUT / _MIN_RATE"
        self.transport.write(error_response(408, "Request Timeout", "request_timeout",
                                            f"the request's {what} did not arrive in time ({setting})"))
        self.transport.close()

    # -- parser callbacks (uvicorn's, counted) ------------------------------------------------------------

    def on_message_begin(self) -> None:
        # uvicorn's, without the ASGI scope: a request the protocol or a direct path answers (gateway/fn_direct.py,
        # direct.py) never reads it, so it is made only for the ASGI path (`scope`, at the request's headers)
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self._reading_headers = self._begun = self._header_due = True  # (armed at the read's end if still due)
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        # The count and size are checked here, once, not per header (a flood of headers is cut off by
        # data_received's byte count first). They can only be over when this read and the earlier ones of this
        # request's headers are (the common case costs a comparison).
        if self._chunk_len + self._header_bytes > self.limits.max_header_bytes or (
                len(self.headers) > self.limits.max_headers):
            self._check_headers()
        self._reading_headers = self._header_due = False
        self._header_bytes = 0
        self._body_bytes = 0
        self._body_deadline = self.loop.time() + self.limits.body_timeout  # (armed at the read's end if still due)
        if self.h2c is not None and self.parser.should_upgrade() and (self.cycle is None or self.cycle.response_complete):
            self._h2c_take = self.h2c.upgrade_for(self)
            if self._h2c_take is not None:
                return
        if self.shedding and self.url.startswith(b"/fn/") and self._shed():
            return
        if self.fn_gateway is not None and self.url[:4] == b"/fn/":
            if (fn_cycle := _fn_direct.take(self)) is not None:
                self.cycle = fn_cycle
                return
        elif self.direct is not None and (cycle := _direct.take(self)) is not None:
            self.cycle = cycle
            return
        self.scope = _direct.scope(self, self.headers)
        super().on_headers_complete()

    def _shed(self) -> bool:
        """Refuse with 429 if the call's function is shedding load (its pool does not admit it: Pool.admits),
        unless an earlier response is pending on this connection (responses keep their order), before a task
        or the pool is touched. The connection stays open; the body, if any, is read and dropped.

        The 429 is held back in the tarpit (`Tarpit`: a second at least), the connection not read from
        meanwhile. A flood of callers that retry at once would otherwise keep the event loop busy with
        refusals: by Little's law 2,000 connections at the ~6k refusals a second it manages wait ~0.3 s a
        call, the accepted ones too (measured: accepted p50 0.5 s). Pausing reads *after* an immediate 429
        (this module's first way) was worse: the retry, sent at once, sat unread for the second and, when
        accepted, counted it; and all paused callers woke together to an idle pool (goodput fell to 3 % of a
        32-connection run). Holding the answer instead leaves the calls that were accepted cycling fast,
        keeping the instances busy, while the refused ones wait outside the loop; a caller that honours
        `Retry-After` waits one second more."""
        name = self.url[4:].partition(b"/")[0].partition(b"?")[0].decode("latin-1")
        pool = self.shedding.get(name)
        cycle = self.cycle
        if pool is None or (cycle is not None and cycle is not _HELD and not cycle.response_complete) or (
                self.pipeline) or pool.admits():
            return False
        for k, _ in self.headers:  # an async call goes to the node's queue, not the pool: its own admission
            if k == b"x-polyfn-async":
                return False
        out = self._shed_responses.get(name)
        if out is None:
            if len(self._shed_responses) > 10_000:
                self._shed_responses.clear()
            out = self._shed_responses[name] = error_response(
                429, "Too Many Requests", "too_many_requests", f"function {name!r} is at capacity: retry later",
                b"retry-after: 1\r\n", close=False)
        # What the parser's later callbacks and uvicorn see: a request whose answer is on its way (a request
        # pipelined behind it that is not refused here waits in uvicorn's pipeline for `_answer_shed`).
        self.cycle = _HELD
        if self._held_429 is None:
            self._held_429 = [out]
            self.flow.pause_reading()
            tarpit = _tarpit_by_loop.get(id(self.loop))
            if tarpit is None or tarpit._loop is not self.loop:
                state = self.server_state
                tarpit = _tarpit_by_loop[id(self.loop)] = Tarpit(self.loop, lambda: state.total_requests)
            tarpit.hold(self)
        else:  # (a pipelined request in the same read: answered after the first, in order)
            self._held_429.append(out)
        if self.on_shed is not None:
            self.on_shed(name)
        return True

    def _answer_shed(self) -> None:
        held, self._held_429 = self._held_429, None
        if held is None or self.transport.is_closing():
            return
        self.transport.write_now(held[0] if len(held) == 1 else b"".join(held))
        if self.pipeline:  # a request read behind it: its turn now (as on_response_complete does)
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        if self.cycle is not _HELD:
            return
        self.cycle = _SHED
        self.flow.resume_reading()
        if not self._begun:  # (its keep-alive time starts now: the hold may be longer)
            self._idle.arm(self, self.timeout_keep_alive)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is _fn_direct.FnCycle:
            _fn_direct.body(cycle, body)
            return
        if cycle is _HELD:  # a refused call's body: read and dropped
            return
        if type(cycle) is _direct.DirectCycle:
            _direct.body(self, self.cycle, body)
            return
        super().on_body(body)

    def _check_headers(self) -> None:
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            raise HeadersTooLarge(f"the request has over {limits.max_headers} headers (POLYFN_HTTP_MAX_HEADERS)")
        size = len(self.url) + sum([len(k) + len(v) + 4 for k, v in self.headers])
        if size > limits.max_header_bytes:
            raise HeadersTooLarge(f"the request's headers are over {limits.max_header_bytes} bytes "
                                  "(POLYFN_HTTP_MAX_HEADER_BYTES)")

    def on_message_complete(self) -> None:
        self._body_deadline = 0.0
        self._begun = False
        if self._request_armed:  # (armed in an earlier read: a request that came in one read has none)
            self._request_armed = self._idle.disarm_request(self)
        if self._h2c_take is not None:  # (taken over by the h2c gate once the parser stops at the upgrade)
            return
        if type(self.cycle) is _fn_direct.FnCycle:
            _fn_direct.complete(self, self.cycle)
            return
        if self.cycle is _HELD:  # answered at its headers: the connection waits for the answer, then for the
            return  # next request (the tarpit bounds the wait: Tarpit.MAX_HOLD; `_answer_shed` arms the next)
        if self.cycle is _SHED:  # (its body ended after the answer went: now it waits for the next request)
            self._idle.arm(self, self.timeout_keep_alive)
            return
        if type(self.cycle) is _direct.DirectCycle:
            _direct.complete(self, self.cycle)
            return
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # As uvicorn's (count the request, resume reading, start the next pipelined request if one waits),
        # except that a connection left waiting is armed in the sweep rather than with a timer.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # (uvicorn's `resume_reading`'s own test, without the call when it is not)
            self.flow.resume_reading()
        if self.pipeline:
            self._unset_keepalive_if_required()
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif not self._reading_headers:  # (the arm replaces whatever deadline the connection had)
            self._idle.arm(self, self.timeout_keep_alive)
        else:  # (the next request's headers are due already: that deadline stays)
            self._unset_keepalive_if_required()


class _Answered:
    """The cycle of a request the protocol answered itself (shed): done, and never resumed."""

    response_complete = True
    response_started = True
    disconnected = False

    class message_event:  # (uvicorn calls `cycle.message_event.set()` when the connection goes)
        @staticmethod
        def set() -> None:
            pass


class _Held(_Answered):
    """The cycle of a refused request whose 429 is held back (the tarpit): not complete yet, so uvicorn keeps a
    request pipelined behind it waiting."""

    response_complete = False


_SHED: Any = _Answered()
_HELD: Any = _Held()


def _peer(client: Any) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"
