"""The server's HTTP protocol (gateway/http.py): uvicorn's httptools protocol with one write per response
and swept keep-alive timeouts. Real uvicorn on a real socket, raw HTTP/1.1 from the test."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from tests.gateway.conftest import uvicorn_on_free_port

from polyfn.gateway.http import CoalescingHttpToolsProtocol
from polyfn.gateway.limits import HttpLimits


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] == "websocket":  # an echo
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (msg := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": "echo:" + msg["text"]})
        return
    if scope["type"] != "http":
        return
    msg = await receive()
    if scope["path"] == "/slow":
        await asyncio.sleep(3.5)
    body = b"echo:" + scope["path"].encode() + b":" + msg.get("body", b"")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server() -> AsyncIterator[int]:
    async with uvicorn_on_free_port(app, http=CoalescingHttpToolsProtocol, log_level="warning",
                                    timeout_keep_alive=2) as port:
        yield port


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head.split(b"\r\n")[0] + b" " + await reader.readexactly(length)


async def test_keep_alive_requests_then_idle_close(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    for i in range(3):
        writer.write(f"POST /r{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi".encode())
        assert await read_response(reader) == f"HTTP/1.1 200 OK echo:/r{i}:hi".encode()
    # Idle past timeout_keep_alive (2 s): the sweep closes the connection (EOF), well within 10 s.
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


async def test_a_request_arriving_in_time_disarms_the_idle_deadline(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    for i in range(6):  # 6 × 0.5 s: longer than the 2 s timeout in total, never idle 2 s at a stretch
        writer.write(f"GET /t{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert await read_response(reader) == f"HTTP/1.1 200 OK echo:/t{i}:".encode()
        await asyncio.sleep(0.5)
    writer.close()


async def test_a_call_longer_than_the_keep_alive_timeout_is_answered(server: int) -> None:
    # The first response arms the connection's idle deadline (2 s), and the request after it, arriving whole in
    # one read, does not drop it (http.py's `data_received`): the sweep must find the connection busy, not idle.
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await read_response(reader) == b"HTTP/1.1 200 OK echo:/first:"
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")  # answered after 3.5 s
    assert await asyncio.wait_for(read_response(reader), 10) == b"HTTP/1.1 200 OK echo:/slow:"
    writer.close()


async def test_a_websocket_on_a_kept_alive_connection_outlives_the_keep_alive_timeout(server: int) -> None:
    import websockets.frames
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri

    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")  # (its response arms the idle deadline)
    assert await read_response(reader) == b"HTTP/1.1 200 OK echo:/first:"
    ws = ClientProtocol(parse_uri(f"ws://127.0.0.1:{server}/ws"))
    ws.send_request(ws.connect())
    writer.write(b"".join(ws.data_to_send()))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101")
    ws.receive_data(head)
    await asyncio.sleep(3.5)  # past the 2 s keep-alive timeout and a sweep
    ws.send_text(b"hi")
    writer.write(b"".join(ws.data_to_send()))
    got = []
    while not got:
        data = await asyncio.wait_for(reader.read(4096), 10)
        assert data, "the connection was closed"
        ws.receive_data(data)
        got = [e for e in ws.events_received() if isinstance(e, websockets.frames.Frame)]
    assert got[0].data == b"echo:hi"
    writer.close()


async def test_pipelined_requests_answer_in_order(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"".join(f"GET /p{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(5)))
    for i in range(5):
        assert await read_response(reader) == f"HTTP/1.1 200 OK echo:/p{i}:".encode()
    writer.close()


async def test_connection_close_is_honoured(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert await read_response(reader) == b"HTTP/1.1 200 OK echo:/c:"
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


# -- limits (gateway/limits.py): header size and count, header and body timeouts, connections ----------------

LIMITS = HttpLimits(max_header_bytes=4096, max_headers=20, header_timeout=1.0, body_timeout=1.0,
                    body_min_rate=1000.0, max_connections=5)
calls: list[str] = []


async def counting_app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = b""
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return  # the client went, or its body timed out: nothing runs
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    calls.append(scope["path"])
    out = b"got:" + str(len(body)).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


@pytest.fixture
async def limited() -> AsyncIterator[int]:
    calls.clear()
    async with uvicorn_on_free_port(counting_app, http=CoalescingHttpToolsProtocol.with_limits(LIMITS),
                                    log_level="warning", timeout_keep_alive=5) as port:
        yield port


async def status_of(reader: asyncio.StreamReader, timeout: float = 10) -> tuple[int, bytes]:
    """The status and body of the response, and that the server then closed the connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    length = next(int(ln.split(b":")[1]) for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length"))
    body = await reader.readexactly(length)
    return int(head.split()[1]), body


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes,
                  times: int) -> tuple[int, bytes]:
    """Send `data` every 0.5 s, `times` times or until the server answers; the answer (status, body)."""
    answer = asyncio.create_task(status_of(reader))
    with contextlib.suppress(ConnectionError):
        for _ in range(times):
            await asyncio.sleep(0.5)
            if answer.done():
                break
            writer.write(data)
            await writer.drain()
    return await answer


async def test_too_many_or_too_large_headers_are_431(limited: int) -> None:
    many = "".join(f"X-H{i}: v\r\n" for i in range(30))
    large = "X-Big: " + "a" * 5000 + "\r\n"
    for extra in (many, large):
        reader, writer = await asyncio.open_connection("127.0.0.1", limited)
        writer.write(f"GET /h HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        status, body = await status_of(reader)
        assert status == 431 and b"headers_too_large" in body and b"POLYFN_HTTP_MAX_HEADER" in body, body
        assert await asyncio.wait_for(reader.read(), 5) == b""  # and closed
        writer.close()
    assert calls == []


async def test_a_huge_header_is_cut_off_not_accumulated(limited: int, caplog: pytest.LogCaptureFixture) -> None:
    """Sent in pieces, a 64 MiB header is refused after about one read past the limit, not taken in whole:
    the server answers 431 and closes while the client is still sending (which the client may see as a reset)."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", limited)
    writer.write(b"GET /h HTTP/1.1\r\nHost: x\r\nX-Huge: ")
    sent = 0
    with contextlib.suppress(ConnectionError):
        while sent < 64 << 20:
            writer.write(b"a" * 65536)
            await writer.drain()
            sent += 65536
            await asyncio.sleep(0)
    assert sent < 4 << 20, sent
    assert any("refused (431)" in r.getMessage() for r in caplog.records)
    writer.close()


async def test_slow_headers_get_408_and_silent_connections_are_closed(limited: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", limited)  # says nothing at all
    silent_r, silent_w = reader, writer
    reader, writer = await asyncio.open_connection("127.0.0.1", limited)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
    status, _ = await trickle(reader, writer, b"X-A: b\r\n", 8)  # a header now and then, never the end
    assert status == 408
    assert await asyncio.wait_for(silent_r.read(), 5) == b""  # closed without a word
    silent_w.close()
    writer.close()
    assert calls == []


async def test_slow_headers_on_a_kept_alive_connection_are_timed_too(limited: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", limited)
    writer.write(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await status_of(reader))[0] == 200
    writer.write(b"GET /")  # the next request's first bytes, then a trickle
    assert (await trickle(reader, writer, b"a", 8))[0] == 408
    writer.close()


async def test_a_slow_body_gets_408_and_nothing_runs(limited: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", limited)
    writer.write(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100)
    # 10 bytes every 0.5 s: far below 1,000 bytes a second after the grace
    assert (await trickle(reader, writer, b"x" * 10, 10))[0] == 408
    assert calls == []
    reader, writer = await asyncio.open_connection("127.0.0.1", limited)  # one at a good pace is fine
    writer.write(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n")
    for _ in range(3):
        await asyncio.sleep(0.5)
        writer.write(b"y" * 1000)
    assert await status_of(reader) == (200, b"got:3000")
    writer.close()


async def test_connections_beyond_the_limit_get_503(limited: int) -> None:
    conns = [await asyncio.open_connection("127.0.0.1", limited) for _ in range(5)]
    reader, writer = await asyncio.open_connection("127.0.0.1", limited)
    status, body = await status_of(reader)
    assert status == 503 and b"too_many_connections" in body
    conns[0][1].close()
    await asyncio.sleep(0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", limited)  # room again
    writer.write(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await status_of(reader) == (200, b"got:0")
    for _, w in conns[1:]:
        w.close()


async def test_a_shedding_function_is_answered_429_before_any_work() -> None:
    """Calls to a function in the shedding set are answered by the protocol itself (no task, no app call),
    on a connection that stays open; others, and the same function once it recovers, reach the app."""
    calls.clear()
    class Busy:  # a pool that refuses new calls (scheduler/pool.Pool.admits), while `full`
        full = True

        def admits(self) -> bool:
            return not self.full

    busy = Busy()
    shedding, counted = {"busy": busy}, []

    def on_shed(name: str) -> None:  # a plain function, as the node passes (not a bound builtin like list.append)
        counted.append(name)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    proto = CoalescingHttpToolsProtocol.with_limits(LIMITS, shedding, on_shed)
    srv = uvicorn.Server(uvicorn.Config(counting_app, http=proto, loop="none", lifespan="off", log_level="warning"))
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    while not srv.started:
        await asyncio.sleep(0.01)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        writer.write(b"GET /fn/busy/x?y=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, body = await status_of(reader)
        assert status == 429 and b"too_many_requests" in body
        writer.write(b"POST /fn/busy HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")  # body read, dropped
        assert (await status_of(reader))[0] == 429
        writer.write(b"GET /fn/calm HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection serves others
        assert await status_of(reader) == (200, b"got:0")
        writer.write(b"POST /fn/busy/a HTTP/1.1\r\nHost: x\r\nX-Polyfn-Async: true\r\n\r\n")  # for the queue
        assert await status_of(reader) == (200, b"got:0")
        calls.remove("/fn/busy/a")
        # pipelined behind a held 429: answered after it, in order (the second /fn/busy was read while the
        # first's answer was held, so it takes the app's way, as any request pipelined behind another)
        writer.write(b"GET /fn/busy HTTP/1.1\r\nHost: x\r\n\r\nGET /fn/calm/2 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /fn/busy/3 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert [(await status_of(reader))[0] for _ in range(3)] == [429, 200, 200]
        assert calls == ["/fn/calm", "/fn/calm/2", "/fn/busy/3"]
        calls.clear()
        busy.full = False  # the pool has room again: its calls reach the app (the entry may stay)
        writer.write(b"POST /fn/busy HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        assert await status_of(reader) == (200, b"got:2")
        assert calls == ["/fn/busy"] and counted == ["busy", "busy", "busy"]
        writer.close()
    finally:
        srv.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task, 5)


async def test_held_writes_of_a_loop_turn_leave_together_and_one_failure_stops_no_other() -> None:
    from polyfn.gateway.http import CoalescingTransport

    class Fake:
        def __init__(self, fail: bool) -> None:
            self.fail, self.written = fail, []

        def is_closing(self) -> bool:
            return False

        def write(self, data: bytes) -> None:
            if self.fail:
                raise OSError("broken")
            self.written.append(data)

    loop = asyncio.get_running_loop()
    errors = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx["exception"]))
    try:
        fakes = [Fake(fail=i == 1) for i in range(3)]
        transports = [CoalescingTransport(f, loop) for f in fakes]  # type: ignore[arg-type]
        for t in transports:
            t.write(b"a")
            t.write(b"b")
        assert all(not f.written for f in fakes)  # (held to the end of the turn)
        await asyncio.sleep(0)
        assert [f.written for f in fakes] == [[b"ab"], [], [b"ab"]]
        assert [type(e) for e in errors] == [OSError]
    finally:
        loop.set_exception_handler(None)
