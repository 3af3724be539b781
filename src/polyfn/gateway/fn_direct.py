"""`/fn/NAME` calls answered straight from the HTTP protocol, without ASGI (as gateway/direct.py does for the
DynamoDB API).

The warm path's bound is the event loop, and for a small call uvicorn's ASGI cycle around the gateway was a good
part of it: the scope (URL parsing, a copy of the app state), a `RequestResponseCycle` with its `asyncio.Event`,
`run_asgi`, the front door's dispatch, the `receive` coroutine. Here the protocol (gateway/http.py) gives a `/fn/`
request an `FnCycle` at its headers, collects its body, and at its end runs the gateway's own steps
(`Gateway.request`, `early`, `answer`: the same code as the ASGI path, so the same auth, quotas, metering,
activation records, logs and metrics) stepped by hand (`_Driven`, no task per call, an async call's accept too),
then writes status line, headers, `content-length` and body in one write, as `gateway/respond.py`
does under uvicorn (the same checks, the same bytes).

What it does not take goes through ASGI as before: a path with `%`, a URL with `#` or non-ASCII bytes, a body
without a `content-length` (chunked) or over the payload limit, `Expect: 100-continue`, an upgrade, a request behind
another whose answer is pending (uvicorn's pipeline keeps the order), a server with a root path or a
concurrency limit. And an answer it cannot write as one buffer — a streamed response, a framing or `connection`
header, a header uvicorn would refuse, a status without a line, a connection without keep-alive or whose writes
are paused — is handed to a `RequestResponseCycle` made at that point and written by uvicorn's `send` (through
`respond` or `relay`, inside uvicorn's `run_asgi`, so errors are uvicorn's too). A failure before the answer is
uvicorn's: logged as "Exception in ASGI application", answered 500 with the connection closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

from polyfn.gateway.asgi import relay
from polyfn.gateway.direct import NoEvent, _500
from polyfn.gateway.direct import scope as asgi_scope
from polyfn.gateway.respond import head_parts, length_line, respond


class FnCycle:
    """A `/fn/` request answered without ASGI: what uvicorn's protocol and ours read of a request cycle."""

    __slots__ = ("body", "disconnected", "headers", "http_version", "keep_alive", "method", "path", "query",
                 "response_complete")
    response_started = False  # (the protocol's body timeout: a 408 may still go)

    def __init__(self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
                 http_version: str, keep_alive: bool):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.body: bytes | bytearray = b""
        self.response_complete = False
        self.disconnected = False

    message_event = NoEvent  # (uvicorn calls `cycle.message_event.set()` when the connection goes)


def take(proto: Any) -> FnCycle | None:
    """An `FnCycle` for the `/fn/` request whose headers `proto` (gateway/http.py's protocol) just read, if the
    direct path takes it; else None (the ASGI path)."""
    url = proto.url
    cycle = proto.cycle
    if (proto.expect_100_continue or proto.pipeline or (cycle is not None and not cycle.response_complete)
            or b"#" in url or not url.isascii() or proto.root_path
            or proto.limit_concurrency is not None):
        return None
    parser = proto.parser
    if parser.should_upgrade():
        return None
    limit = proto.fn_gateway.max_payload
    connection = False
    for k, v in proto.headers:
        if k == b"content-length":
            if not v.isdigit() or int(v) > limit:
                return None
        elif k == b"transfer-encoding":
            return None
        elif k == b"connection" or k == b"proxy-connection":
            connection = True
    path, _, query = url.partition(b"?")
    if b"%" in path:  # (uvicorn unquotes the path)
        return None
    # HTTP/1.1 is the one version llhttp keeps alive without a (proxy-)connection header saying so (it parses no
    # versions but 0.9, 1.0, 1.1 and 2.0; the others need "keep-alive" in one): then the version is known without
    # `get_http_version`, which formats a new string each time (~0.9 µs of the loop a request)
    keep_alive = parser.should_keep_alive()
    if keep_alive and not connection:
        version = "1.1"
    else:
        version = parser.get_http_version()
        keep_alive = keep_alive and version != "1.0"
    method = parser.get_method()
    return FnCycle(_METHODS.get(method) or method.decode("ascii"), path.decode("ascii"), query, proto.headers,
                   version, keep_alive)


_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")}  # (one decode less)


def body(cycle: FnCycle, data: bytes) -> None:
    """A piece of the request's body (all of it is within the payload limit: its content-length was)."""
    held = cycle.body
    if not held:  # (most bodies come in one piece: kept as it is, no copy)
        cycle.body = data
    elif type(held) is bytes:
        cycle.body = bytearray(held) + data
    else:
        held += data


def complete(proto: Any, cycle: FnCycle) -> None:
    """The request's body is all in: answer it, driven without a task (`_Driven`): a call the invoker answers, and
    an async call's accept (`X-Polyfn-Async`: the queue's insert or JetStream publish waits on futures only, as
    the invoker does). It is counted in the server's tasks, so a graceful shutdown waits for it (and cancels it
    past its timeout)."""
    gateway = proto.fn_gateway
    try:
        req = gateway.request(cycle.path, cycle.headers)
        out = gateway.early(req, cycle.method, cycle.query)
        if out is not None:
            proto.loop.call_soon(_answer, proto, cycle, out)
            return
        body = cycle.body
        coro = gateway.answer(req, cycle.method, cycle.query, body if type(body) is bytes else bytes(body))
    except BaseException as exc:  # (as uvicorn's run_asgi)
        proto.loop.call_soon(_failed, proto, cycle, exc)
        return
    _Driven(proto, cycle, coro)


class _Driven:
    """A call's coroutine (the invoker's `call` or the gateway's `_enqueue`, maybe in its CORS wrapper) stepped by
    hand, as a task would step it, without the task: its first step from the loop's ready callbacks, as a task's first step
    (never inside the HTTP parser's callbacks; and a call the protocol let in reaches the pool's `acquire` after
    the pool's count of calls on their way has been reset: scheduler/overload.py `admits`), each later one from
    the done callback of the future it waits on; its outcome is written from the last. A task per call cost the
    event loop ~2 µs (the task, its registration in `asyncio.all_tasks`' WeakSet, its done callback) of ~45.

    What a task gives that this does not: `asyncio.current_task()` is None inside (nothing on the invoker's path
    or the queue's accept asks; `asyncio.timeout` would refuse to run). Each step runs in the context of the one before, the first in a
    copy of the protocol's (`call_soon`'s), as a task's would. It is in the server's `tasks` set while it runs,
    and has a task's `cancel` (uvicorn cancels what is left past the graceful shutdown's timeout): the future it
    waits on is cancelled, so the call sees `CancelledError` there, as under a task."""

    __slots__ = ("cancelling", "coro", "cycle", "proto", "waiting")

    def __init__(self, proto: Any, cycle: FnCycle, coro: Any):
        self.proto = proto
        self.cycle = cycle
        self.coro = coro
        self.waiting: asyncio.Future[Any] | None = None
        self.cancelling = False
        proto.tasks.add(self)
        proto.loop.call_soon(self._step, None)

    def _step(self, _fut: Any) -> None:
        self.waiting = None
        try:
            if self.cancelling:  # (cancelled between steps)
                self.cancelling = False
                yielded = self.coro.throw(asyncio.CancelledError())
            else:
                yielded = self.coro.send(None)
        except StopIteration as stop:
            self.proto.tasks.discard(self)
            _answer(self.proto, self.cycle, stop.value)
            return
        except BaseException as exc:
            self.proto.tasks.discard(self)
            _failed(self.proto, self.cycle, exc)
            return
        if getattr(yielded, "_asyncio_future_blocking", None):  # an asyncio future (Task.__step's test)
            yielded._asyncio_future_blocking = False
            self.waiting = yielded
            yielded.add_done_callback(self._step)
        elif yielded is None:  # a bare yield (`asyncio.sleep(0)`)
            self.proto.loop.call_soon(self._step, None)
        else:  # (as a task: a coroutine may only wait on futures)
            self.coro.close()
            self.proto.tasks.discard(self)
            _failed(self.proto, self.cycle, RuntimeError(f"a /fn/ call waited on {yielded!r}, not a future"))

    def cancel(self, msg: Any = None) -> bool:
        """As `Task.cancel`: the call sees `CancelledError` where it waits."""
        if self.waiting is not None and self.waiting.cancel(msg=msg):
            return True
        self.cancelling = True  # (not waiting, or its future is done: the next step throws it in)
        return True


def _failed(proto: Any, cycle: FnCycle, exc: BaseException) -> None:
    """A failure before the answer: uvicorn's (logged as its run_asgi logs it, answered 500, the connection closed)."""
    proto.logger.error("Exception in ASGI application\n", exc_info=exc)
    cycle.response_complete = True
    if not cycle.disconnected:
        proto.transport.write(_500)
        proto.transport.close()
        proto.on_response_complete()


def _answer(proto: Any, cycle: FnCycle, out: Any) -> None:
    if cycle.disconnected:  # (uvicorn's send: nothing is written for a client that went)
        cycle.response_complete = True
        return
    if out.stream is None and _written(proto, cycle, out.status, out.headers, out.body):
        return
    task = proto.loop.create_task(_through_uvicorn(proto, cycle, out))
    task.add_done_callback(proto.tasks.discard)
    proto.tasks.add(task)


def _written(proto: Any, cycle: FnCycle, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """Write a whole answer in one write (gateway/respond.py's `_written`, on our cycle); False when not that case."""
    line = STATUS_LINE.get(status)
    if line is None or proto.server_state.default_headers or not cycle.keep_alive or proto.flow.write_paused:
        return False
    parts = head_parts(line, headers)
    if parts is None:
        return False
    parts.append(length_line(len(body)))
    if cycle.method != "HEAD":
        parts.append(body)
    cycle.response_complete = True
    proto.transport.write(b"".join(parts))
    proto.on_response_complete()
    return True


async def _through_uvicorn(proto: Any, cycle: FnCycle, out: Any) -> None:
    """Answer through a `RequestResponseCycle` made now (its body already read), as the ASGI path would."""
    scope = asgi_scope(proto, cycle.headers)  # (root_path is "": `take` leaves a server with one to ASGI)
    scope.update(http_version=cycle.http_version, method=cycle.method, path=cycle.path,
                 raw_path=cycle.path.encode("ascii"), query_string=cycle.query)
    rr = RequestResponseCycle(scope=scope, transport=proto.transport, flow=proto.flow,  # type: ignore[arg-type]
                              logger=proto.logger, access_logger=proto.access_logger, access_log=proto.access_log,
                              default_headers=proto.server_state.default_headers, message_event=asyncio.Event(),
                              expect_100_continue=False, keep_alive=cycle.keep_alive,
                              on_response=proto.on_response_complete)
    rr.more_body = False
    if proto.cycle is cycle:  # (the connection's end and its deadlines now reach the new cycle)
        proto.cycle = rr
    cycle.response_complete = True

    async def app(_scope: Any, receive: Any, send: Any) -> None:
        if out.stream is not None:
            await relay(out, receive, send)
        else:
            await respond(send, out.status, out.headers, out.body)

    await rr.run_asgi(app)
