"""Requests answered by a face straight from the HTTP protocol, without ASGI: the DynamoDB API's (`POST /` with
`X-Amz-Target: DynamoDB_20120810.*`, db/service.py's `DbService.direct`).

A DynamoDB request is small and its answer one buffer, so what ASGI adds around it was a third of a GetItem's CPU
(measured: bench/db.py --client wrk): the scope and its URL parsing, uvicorn's request cycle with its event, a
task running the front door's dispatch, the `receive` and two `send` calls with uvicorn's header checks. Here the
protocol (gateway/http.py) gives such a request a `DirectCycle` at its headers, collects its body, and at its end
runs the face's `answer(method, raw_path, query, headers, body)` in a task (counted in the server's tasks, so a
graceful shutdown waits for it), then writes status line, headers and body in one write.

What stays as uvicorn does it: keep-alive and `connection: close` (HTTP/1.0, a client's `Connection: close`, the
server shutting down), pipelining (a request read while another's answer is pending goes through uvicorn's
pipeline, in order, by the ordinary ASGI path), the connection limits and deadlines (the cycle has the attributes
the protocol's timeouts and `connection_lost` touch), a crash answered 500 with the connection closed. Requests
the direct path does not take (another path, a query string, `Expect: 100-continue`, an upgrade, the face not
started yet) go to the ASGI app as before, where the same face answers them the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

log = logging.getLogger("polyfn.gateway")

_500 = (STATUS_LINE[500] + b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\nconnection: close\r\n\r\n"
        b"Internal Server Error")


class DirectFace(Protocol):
    max_body: int  # a longer body is answered `too_large()` (413) at once, the rest of it read and dropped

    def answer(self, method: str, raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]],
               body: bytes) -> Awaitable[tuple[int, bytes]]: ...

    def head(self, status: int, body: bytes) -> bytes:
        """The response's header lines (`name: value\\r\\n` each) for this status and body."""
        ...

    def too_large(self) -> bytes: ...


class NoEvent:
    """What a direct cycle gives for uvicorn's `cycle.message_event`: nothing waits on it."""

    @staticmethod
    def set() -> None:
        pass


class DirectCycle:
    """A request a direct face answers: what uvicorn's protocol and ours read of a request cycle."""

    __slots__ = ("body", "disconnected", "face", "headers", "keep_alive", "method", "response_complete")
    response_started = False  # (the protocol's body timeout: a 408 may still go)

    def __init__(self, face: DirectFace, method: str, headers: list[tuple[bytes, bytes]], keep_alive: bool):
        self.face = face
        self.method = method
        self.headers = headers
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.response_complete = False
        self.disconnected = False

    message_event = NoEvent  # (uvicorn calls `cycle.message_event.set()` when the connection goes)


def scope(proto: Any, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The ASGI scope of a request as uvicorn's protocol begins it (`on_message_begin`; its `on_headers_complete`
    adds the method, path and query; its WebSocket upgrade reads the method and headers)."""
    return {"type": "http", "asgi": {"version": proto.asgi_version, "spec_version": "2.3"}, "http_version": "1.1",
            "server": proto.server, "client": proto.client, "scheme": proto.scheme, "root_path": proto.root_path,
            "headers": headers, "state": proto.app_state.copy()}


def take(proto: Any) -> DirectCycle | None:
    """A `DirectCycle` for the request whose headers `proto` (gateway/http.py's protocol) just read, if a direct
    face answers it and no earlier answer is pending on the connection; else None (the ASGI path)."""
    if proto.url != b"/" or proto.expect_100_continue or proto.pipeline or (
            proto.cycle is not None and not proto.cycle.response_complete):
        return None
    parser = proto.parser
    method = parser.get_method()
    face = proto.direct(method, proto.headers)
    if face is None or parser.should_upgrade():
        return None
    return DirectCycle(face, method.decode("ascii"), proto.headers,
                       parser.get_http_version() == "1.1" and parser.should_keep_alive())


def body(proto: Any, cycle: DirectCycle, data: bytes) -> None:
    if cycle.response_complete:  # (answered already: a body over the limit, read and dropped)
        return
    cycle.body += data
    if len(cycle.body) > cycle.face.max_body:
        _respond(proto, cycle, 413, cycle.face.too_large())


def complete(proto: Any, cycle: DirectCycle) -> None:
    """The request's body is all in: answer it in a task."""
    if cycle.response_complete:
        return
    proto.tasks.add(proto.loop.create_task(_run(proto, cycle)))


async def _run(proto: Any, cycle: DirectCycle) -> None:
    """The answer, in the request's task, which leaves the server's `tasks` as it ends — not by a done callback:
    a task with one schedules it with `call_soon`, a turn of the loop of its own after every request, which
    under a trickle (one request per wake-up) was the last turn before the loop could sleep. (A task cancelled
    before its first step would stay in the set: only uvicorn cancels these, past a graceful shutdown's timeout,
    and it waits for the set no more then.)"""
    me = asyncio.current_task()
    try:
        status, out = await cycle.face.answer(cycle.method, b"/", b"", cycle.headers, bytes(cycle.body))
    except (Exception, asyncio.CancelledError) as exc:
        proto.tasks.discard(me)
        _crashed(proto, cycle, exc)
        if not isinstance(exc, Exception):
            raise
        return
    proto.tasks.discard(me)
    _respond(proto, cycle, status, out)


def _crashed(proto: Any, cycle: DirectCycle, exc: BaseException) -> None:
    """The face failed (not a refusal: its own fault), or was cancelled (past a graceful shutdown's timeout):
    logged, answered 500, the connection closed (a cancelled one wrote nothing and kept the connection open)."""
    if isinstance(exc, Exception):
        log.error("a direct request failed", exc_info=exc)
    cycle.response_complete = True
    if not cycle.disconnected and not proto.transport.is_closing():
        proto.transport.write(_500)
        proto.transport.close()


def _respond(proto: Any, cycle: DirectCycle, status: int, out: bytes) -> None:
    """Write the answer in one write, then as uvicorn ends a response (close, or the next request's turn)."""
    cycle.response_complete = True
    if cycle.disconnected or proto.transport.is_closing():
        return
    parts = [STATUS_LINE[status]]
    for k, v in proto.server_state.default_headers:  # (none on the node: no server or date header)
        parts += (k, b": ", v, b"\r\n")
    parts.append(cycle.face.head(status, out))
    if not cycle.keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", out)
    # (held to the end of the loop's turn, as every response: writing at once measured worse — 125 against 98 µs of
    # server CPU per GetItem under wrk — the client woken per answer rather than once per turn of the loop; but a
    # request alone in flight — its own task the server's only one — has no other answer to go with it, and is
    # written at once: the turn the flush waits for was, under a trickle of requests, a few percent of each)
    if not proto.tasks:  # (its own task has left the set)
        proto.transport.write_now(b"".join(parts))
    else:
        proto.transport.write(b"".join(parts))
    if not cycle.keep_alive:
        proto.transport.close()
    proto.on_response_complete()
