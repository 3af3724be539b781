"""Requests a face answers straight from the HTTP protocol (gateway/direct.py): real uvicorn with the node's
protocol on a real socket, raw HTTP/1.1 from the test; the face is a small real one, the ASGI app beside it
records what reaches it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.gateway.conftest import uvicorn_on_free_port

from polyfn.gateway.http import CoalescingHttpToolsProtocol
from polyfn.gateway.limits import HttpLimits

asgi_calls: list[str] = []


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = (await receive()).get("body", b"")  # (the test's bodies are a few bytes: one message)
    asgi_calls.append(scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else ""))
    out = b"asgi:" + body
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


class Face:
    """Answers `POST /` with `x-face: yes`: its body upper-cased; `slow` waits first, `boom` raises."""

    max_body = 64

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes, bytes]] = []  # (method, x-face header, body)

    async def answer(self, method: str, raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]],
                     body: bytes) -> tuple[int, bytes]:
        assert (raw_path, query) == (b"/", b"")
        self.seen.append((method, dict(headers)[b"x-face"], body))
        if body == b"slow":
            await asyncio.sleep(0.3)
        if body == b"boom":
            raise RuntimeError("the face failed")
        return (201 if body == b"created" else 200), b"direct:" + body.upper()

    @staticmethod
    def head(status: int, body: bytes) -> bytes:
        return b"content-length: %d\r\nx-answered: direct\r\n" % len(body)

    @staticmethod
    def too_large() -> bytes:
        return b"too large"

    def pick(self, method: bytes, headers: list[tuple[bytes, bytes]]) -> Any:
        return self if method == b"POST" and (b"x-face", b"yes") in headers else None


@pytest.fixture
async def served() -> AsyncIterator[tuple[int, Face]]:
    asgi_calls.clear()
    face = Face()
    proto = CoalescingHttpToolsProtocol.with_limits(HttpLimits(), direct=face.pick)
    async with uvicorn_on_free_port(app, http=proto, log_level="critical", timeout_keep_alive=5) as port:
        yield port, face


def post(path: str, body: bytes, face: bool = True, extra: str = "", version: str = "1.1") -> bytes:
    head = f"POST {path} HTTP/{version}\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}"
    return (head + ("X-Face: yes\r\n" if face else "") + "\r\n").encode() + body


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if head.startswith(b"HTTP/1.1 100 "):  # (an interim 100 Continue)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.split(b"\r\n")
    headers = dict(ln.split(b": ", 1) for ln in lines[1:] if ln)
    return int(lines[0].split()[1]), headers, await reader.readexactly(int(headers[b"content-length"]))


async def test_the_face_answers_without_the_asgi_app_and_keeps_the_connection(served: tuple[int, Face]) -> None:
    port, face = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for body in (b"one", b"two", b"created"):
        writer.write(post("/", body))
        status, headers, out = await response(reader)
        assert (status, out, headers[b"x-answered"]) == (201 if body == b"created" else 200,
                                                         b"direct:" + body.upper(), b"direct")
        assert b"connection" not in headers
    assert face.seen == [("POST", b"yes", b"one"), ("POST", b"yes", b"two"), ("POST", b"yes", b"created")]
    assert asgi_calls == []
    writer.close()


async def test_what_the_face_does_not_take_goes_to_the_asgi_app(served: tuple[int, Face]) -> None:
    port, face = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for req in (post("/", b"a", face=False), post("/other", b"b"), post("/?q=1", b"c"),
                post("/", b"d", extra="Expect: 100-continue\r\n")):
        writer.write(req)
        status, _, out = await response(reader)
        assert status == 200 and out.startswith(b"asgi:")
    assert asgi_calls == ["/", "/other", "/?q=1", "/"]
    assert face.seen == []
    writer.close()


async def test_pipelined_requests_are_answered_in_order_across_both_paths(served: tuple[int, Face]) -> None:
    port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # the first is slow (its answer comes 0.3 s later): the two read behind it in the same segment wait in uvicorn's
    # pipeline and answer after it, in order (a request pipelined behind a pending answer takes the ASGI path, where
    # the node's front door hands it to the same face)
    writer.write(post("/", b"slow") + post("/x", b"asgi", face=False) + post("/", b"last"))
    got = [(await response(reader))[2] for _ in range(3)]
    assert got == [b"direct:SLOW", b"asgi:asgi", b"asgi:last"]
    writer.write(post("/", b"again"))  # (then, nothing pending: direct again)
    assert (await response(reader))[2] == b"direct:AGAIN"
    writer.close()


async def test_answers_of_requests_in_flight_together_and_of_one_alone(served: tuple[int, Face]) -> None:
    """A request alone in flight (the server's only task) is written at once, in its task's step; requests in
    flight together are held to the end of the loop's turn and leave together: each connection gets its own
    answer either way, and keeps going."""
    port, face = served
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
    for _, writer in conns:  # (all four in flight at once: the slow ones are answered in the same turn)
        writer.write(post("/", b"slow"))
    assert [(await response(reader))[2] for reader, _ in conns] == [b"direct:SLOW"] * 4
    for i, (reader, writer) in enumerate(conns):  # (then one at a time: each alone)
        writer.write(post("/", b"n%d" % i))
        assert (await response(reader))[2] == b"direct:N%d" % i
    for i, (_, writer) in enumerate(conns):  # (and all at once, answered together)
        writer.write(post("/", b"m%d" % i))
    assert [(await response(reader))[2] for reader, _ in conns] == [b"direct:M%d" % i for i in range(4)]
    assert len(face.seen) == 12 and asgi_calls == []
    for _, writer in conns:
        writer.close()


@pytest.mark.parametrize("how", ["close", "http/1.0"])
async def test_connection_close_and_http_1_0_end_the_connection(served: tuple[int, Face], how: str) -> None:
    port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/", b"bye", extra="Connection: close\r\n") if how == "close" else post("/", b"bye", version="1.0"))
    status, headers, out = await response(reader)
    assert (status, out, headers[b"connection"]) == (200, b"direct:BYE", b"close")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_body_over_the_face_limit_is_413_and_the_connection_goes_on(served: tuple[int, Face]) -> None:
    port, face = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/", b"x" * 200))
    status, _, out = await response(reader)
    assert (status, out) == (413, b"too large")
    writer.write(post("/", b"after"))
    assert (await response(reader))[2] == b"direct:AFTER"
    assert [s[2] for s in face.seen] == [b"after"]
    writer.close()


async def test_a_face_that_fails_is_answered_500_and_closed(served: tuple[int, Face]) -> None:
    port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/", b"boom"))
    status, headers, out = await response(reader)
    assert (status, out, headers[b"connection"]) == (500, b"Internal Server Error", b"close")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_graceful_shutdown_waits_for_a_direct_answer_then_cancels_it_with_a_500() -> None:
    """A direct face's answer runs in a task counted in the server's tasks: uvicorn's graceful shutdown waits for it
    and, past its timeout, cancels it — the face sees `CancelledError` where it waits, and the client gets 500 with
    the connection closed (before: nothing was written and the connection stayed open)."""
    import socket

    import uvicorn

    loop = asyncio.get_running_loop()
    cancelled = asyncio.Event()
    started = asyncio.Event()

    class Hangs(Face):
        async def answer(self, method: str, raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]],
                         body: bytes) -> tuple[int, bytes]:
            started.set()
            try:
                await loop.create_future()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return 200, b""

    face = Hangs()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    proto = CoalescingHttpToolsProtocol.with_limits(HttpLimits(), direct=face.pick)
    srv = uvicorn.Server(uvicorn.Config(app, http=proto, loop="none", lifespan="off", log_level="critical",
                                        timeout_graceful_shutdown=1))
    serving = asyncio.create_task(srv.serve(sockets=[sock]))
    while not srv.started:
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
    writer.write(post("/", b"hang"))
    await asyncio.wait_for(started.wait(), 5)
    assert len(srv.server_state.tasks) == 1
    srv.should_exit = True
    await asyncio.sleep(0.5)
    assert not cancelled.is_set() and not serving.done()  # (waited for)
    await asyncio.wait_for(serving, 5)
    assert cancelled.is_set() and not srv.server_state.tasks
    status, headers, _ = await response(reader)
    assert (status, headers[b"connection"]) == (500, b"close")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()

