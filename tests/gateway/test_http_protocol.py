"""The server's HTTP protocol (gateway/http.py): uvicorn's httptools protocol with one write per response
and swept keep-alive timeouts. Real uvicorn on a real socket, raw HTTP/1.1 from the test."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn

from polyfn.gateway.http import CoalescingHttpToolsProtocol


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    msg = await receive()
    body = b"echo:" + scope["path"].encode() + b":" + msg.get("body", b"")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server() -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, http=CoalescingHttpToolsProtocol, loop="none", lifespan="off",
                            log_level="warning", timeout_keep_alive=2)
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    while not srv.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        srv.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task, 5)


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
