"""gateway/respond.py: a whole response written through uvicorn's cycle in one go must put the same bytes on the
wire as the two ASGI messages it replaces, keep-alive, pipelining, HEAD and uvicorn's refusals included. Real
uvicorn (polyfn's protocol and settings) on real sockets; each raw request goes to a server whose app answers
with `respond` and to one whose app sends the two messages, and the bytes must match."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.gateway.conftest import uvicorn_on_free_port

from polyfn.gateway import respond as respond_mod
from polyfn.gateway.http import CoalescingHttpToolsProtocol

fast_paths: list[bool] = []


def answer(scope: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    path = scope["path"]
    if path == "/bad-header":  # uvicorn refuses a control character in a value: the connection closes unanswered
        return 200, [(b"x-bad", b"a\x01b")], b"never"
    if path == "/nocontent":
        return 204, [], b""
    if path == "/close":
        return 200, [(b"connection", b"close")], b"bye"
    return 201, [(b"content-type", b"text/plain"), (b"x-polyfn-activation-id", b"abc")], b"echo:" + path.encode()


async def fast_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    await respond_mod.respond(send, *answer(scope))


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    status, headers, body = answer(scope)
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def ports() -> AsyncIterator[tuple[int, int]]:
    settings = {"http": CoalescingHttpToolsProtocol, "log_level": "critical", "server_header": False,
                "date_header": False, "proxy_headers": False}  # (as server.py runs it)
    async with uvicorn_on_free_port(fast_app, **settings) as fast, uvicorn_on_free_port(asgi_app, **settings) as plain:
        yield fast, plain


async def exchange(port: int, raw: bytes) -> bytes:
    """Send `raw` on a new connection, half-close, read everything until the server closes or goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    got = b""
    with contextlib.suppress(asyncio.TimeoutError):
        while chunk := await asyncio.wait_for(reader.read(65536), 0.5):
            got += chunk
    writer.close()
    return got


CASES = {
    "keep-alive": (b"GET /a?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", True),
    "pipelined": (b"".join(f"GET /p{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(4)), True),
    "post": (b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", True),
    "head": (b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n", True),
    "no content": (b"GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n", True),
    "http/1.0": (b"GET /old HTTP/1.0\r\n\r\n", False),  # no keep-alive: uvicorn's own path (connection: close)
    "client says close": (b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", False),
    "app says close": (b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n", False),
    "header uvicorn refuses": (b"GET /bad-header HTTP/1.1\r\nHost: x\r\n\r\n", False),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_same_bytes_as_the_two_asgi_messages(case: str, ports: tuple[int, int],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    raw, fast = CASES[case]
    written = respond_mod._written
    taken: list[bool] = []
    monkeypatch.setattr(respond_mod, "_written", lambda *a: taken.append(written(*a)) or taken[-1])
    ours = await exchange(ports[0], raw)
    theirs = await exchange(ports[1], raw)
    assert ours == theirs, (ours, theirs)
    assert ours.startswith(b"HTTP/1.") if case != "header uvicorn refuses" else ours == b"", ours
    assert taken and all(t is fast for t in taken), taken  # the one-write path where it applies, else uvicorn's


async def test_a_whole_response_leaves_in_one_write(ports: tuple[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", ports[0])
    for i in range(3):  # keep-alive: the connection serves the next request after a fast-path response
        writer.write(f"GET /k{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 201 Created\r\n") and b"content-length: 8\r\n" in head, head
        assert await reader.readexactly(8) == f"echo:/k{i}".encode()
    writer.close()


def test_head_parts_remembers_only_what_passed_and_still_refuses_the_rest() -> None:
    """`head_parts` keeps the names and values it found writable: a good header seen again gives the same bytes, and
    a bad name, a bad value or a framing header is refused every time (never remembered), before and after."""
    line = b"HTTP/1.1 200 OK\r\n"
    good = [(b"content-type", b"text/plain; charset=utf-8"), (b"x-polyfn-activation-id", b"0123abcd"), (b"x-e", b"")]
    want = [line, b"content-type", b": ", b"text/plain; charset=utf-8", b"\r\n", b"x-polyfn-activation-id", b": ",
            b"0123abcd", b"\r\n", b"x-e", b": ", b"", b"\r\n"]
    for _ in range(3):
        assert respond_mod.head_parts(line, good) == want
        assert respond_mod.head_parts(line, [*good, (b"x-bad", b"a\x01b")]) is None
        assert respond_mod.head_parts(line, [(b"content-type", b"a\nb")]) is None  # (a remembered name, bad value)
        assert respond_mod.head_parts(line, [(b"bad name", b"text/plain; charset=utf-8")]) is None  # (and the reverse)
        assert respond_mod.head_parts(line, [(b"Content-Length", b"3")]) is None
        assert respond_mod.head_parts(line, [(b"connection", b"close")]) is None
    assert b"a\x01b" not in respond_mod._values_ok and b"bad name" not in respond_mod._names_ok
    assert b"0123abcd" not in respond_mod._values_ok  # (letters and digits: passed as they are, not kept)


def test_head_parts_keeps_a_bounded_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(respond_mod, "_names_ok", set())
    monkeypatch.setattr(respond_mod, "_values_ok", set())
    for i in range(respond_mod._CHECKED_MAX + 50):
        assert respond_mod.head_parts(b"L", [(b"x-n%d" % i, b"v-%d" % i)]) is not None
    assert len(respond_mod._names_ok) == len(respond_mod._values_ok) == respond_mod._CHECKED_MAX
    assert respond_mod.head_parts(b"L", [(b"x-n%d" % 10**6, b"a\x00")]) is None


def test_head_parts_keeps_only_short_names_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance's headers are untrusted: long ones are checked each time, never kept."""
    monkeypatch.setattr(respond_mod, "_names_ok", set())
    monkeypatch.setattr(respond_mod, "_values_ok", set())
    long_name, long_value = b"x-" + b"n" * respond_mod._KEPT_LEN, b"v-" + b"v" * respond_mod._KEPT_LEN
    assert respond_mod.head_parts(b"L", [(long_name, long_value)]) == [b"L", long_name, b": ", long_value, b"\r\n"]
    assert respond_mod._names_ok == set() and respond_mod._values_ok == set()
    assert respond_mod.head_parts(b"L", [(b"x-short", b"v-1")]) is not None
    assert respond_mod._names_ok == {b"x-short"} and respond_mod._values_ok == {b"v-1"}
