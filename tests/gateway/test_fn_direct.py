"""`/fn/` calls answered straight from the HTTP protocol (gateway/fn_direct.py): the same bytes on the wire as the
ASGI path, for every kind of request and answer. Two real uvicorn servers with the node's protocol, one with the
direct path and one without, serve the same real `Gateway` (on a small invoker); the test sends each raw request
to both and compares what comes back, and which path answered it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from tests.gateway.conftest import uvicorn_on_free_port

from polyfn.call import Call
from polyfn.gateway import Gateway
from polyfn.gateway.http import CoalescingHttpToolsProtocol
from polyfn.gateway.limits import HttpLimits
from polyfn.outcome import Outcome

NAMES = {"hi", "stream", "badheader", "framing", "boom", "slow", "broken"}


class Stream:
    """A streamed answer's chunks (what `relay` reads of polyfn.streaming's ResponseStream)."""

    def __init__(self, chunks: list[bytes], error: dict[str, Any] | None = None):
        self.chunks = list(chunks)
        self.error = error

    async def next(self) -> bytes | None:
        return self.chunks.pop(0) if self.chunks else None

    def cancel(self) -> None:
        pass


class Invoker:
    max_payload = 300_000

    def __init__(self) -> None:
        spec = SimpleNamespace(cors=None, auth=None)
        self.registry = SimpleNamespace(get=lambda name: SimpleNamespace(revision=SimpleNamespace(
            spec=spec, function=name)) if name in NAMES else None)
        self.calls: list[tuple[str, str, str, bytes]] = []

    async def call(self, call: Call) -> Outcome:
        self.calls.append((call.method, call.path, call.query, call.body))
        name = call.function
        if name == "boom":
            raise RuntimeError("the invoker failed")
        if name == "slow":
            await asyncio.sleep(0.2)
        if name == "stream":
            return Outcome(200, [(b"content-type", b"text/plain")], b"", stream=Stream([b"one", b"two"]))
        if name == "broken":
            return Outcome(200, [(b"content-type", b"text/plain")], b"", stream=Stream([b"one"], {"code": "x"}))
        if name == "badheader":
            return Outcome(200, [(b"bad header", b"v")], b"x")
        if name == "framing":
            return Outcome(200, [(b"connection", b"close")], b"bye")
        seen = ",".join(f"{k}={v}" for k, v in call.headers if k != "host")
        return Outcome(201, [(b"content-type", b"text/plain"), (b"x-seen", seen.encode())],
                       b"%s %s ?%s %s" % (call.method.encode(), call.path.encode(), call.query.encode(), call.body))


class Served:
    def __init__(self, direct: bool):
        self.invoker = Invoker()
        self.gateway = Gateway(self.invoker)  # type: ignore[arg-type]
        self.asgi: list[str] = []  # paths that reached the ASGI app
        self.proto = CoalescingHttpToolsProtocol.with_limits(HttpLimits(), fn_gateway=self.gateway if direct else None)
        self.port = 0

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/fn/"):
            self.asgi.append(scope["path"])
            await self.gateway(scope, receive, send)


@pytest.fixture
async def both() -> AsyncIterator[tuple[Served, Served]]:
    direct, asgi = Served(True), Served(False)
    async with uvicorn_on_free_port(direct.app, http=direct.proto, log_level="error", timeout_keep_alive=5,
                                    server_header=False, date_header=False, interface="asgi3", proxy_headers=False) as p1:
        async with uvicorn_on_free_port(asgi.app, http=asgi.proto, log_level="error", timeout_keep_alive=5,
                                        server_header=False, date_header=False, interface="asgi3", proxy_headers=False) as p2:
            direct.port, asgi.port = p1, p2
            yield direct, asgi


async def exchange(port: int, raw: bytes, quiet: float = 0.4) -> tuple[bytes, bool]:
    """What the server sends back for `raw` until it closes the connection or is quiet for `quiet` seconds, and
    whether it closed it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    got = b""
    closed = False
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), quiet)
            if not data:
                closed = True
                break
            got += data
    except (TimeoutError, ConnectionResetError):
        pass
    writer.close()
    return got, closed


def get(path: str, extra: str = "", method: str = "GET", version: str = "1.1") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: x\r\n{extra}\r\n".encode()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


DIRECT = {  # answered without ASGI
    "plain": get("/fn/hi"),
    "sub-path and query": get("/fn/hi/a/b?x=1&y=%20"),
    "headers": get("/fn/hi", "X-One: 1\r\nX-Polyfn-Revision: 3\r\nX-Polyfn-Async: false\r\ntraceparent: junk\r\n"),
    "post": post("/fn/hi", b"payload"),
    "body in many reads": post("/fn/hi", bytes(range(256)) * 1000),
    "head": get("/fn/hi", method="HEAD"),
    "no name": get("/fn/"),
    "unknown function": get("/fn/nope/x"),
    "http/1.0": get("/fn/hi", version="1.0"),
    "connection close": get("/fn/hi", "Connection: close\r\n"),
    "connection keep-alive": get("/fn/hi", "Connection: keep-alive\r\n"),
    "http/1.0 keep-alive": get("/fn/hi", "Connection: keep-alive\r\n", version="1.0"),
    "http/1.0 proxy keep-alive": get("/fn/hi", "Proxy-Connection: keep-alive\r\n", version="1.0"),
    "proxy connection close": get("/fn/hi", "Proxy-Connection: close\r\n"),
    "pipelined": get("/fn/slow") + post("/fn/hi", b"second") + get("/fn/hi?third"),
    "streamed": get("/fn/stream"),
    "stream broken off": get("/fn/broken"),
    "refused header": get("/fn/badheader"),
    "framing header": get("/fn/framing"),
    "failure": get("/fn/boom"),
}
ASGI = {  # left to the ASGI path
    "percent in path": get("/fn/hi/a%20b"),
    "chunked body": b"POST /fn/hi HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "over the limit": post("/fn/hi", b"x" * 300_001),
    "expect 100-continue": post("/fn/hi", b"abc", "Expect: 100-continue\r\n"),
}


@pytest.mark.parametrize("case", [*DIRECT, *ASGI])
async def test_the_same_bytes_as_the_asgi_path(both: tuple[Served, Served], case: str) -> None:
    direct, asgi = both
    raw = DIRECT.get(case) or ASGI[case]
    got_direct, got_asgi = await asyncio.gather(exchange(direct.port, raw), exchange(asgi.port, raw))
    assert got_asgi[0].startswith(b"HTTP/1.1 ") or case in ("refused header",)  # (uvicorn closes without a byte)
    assert got_direct == got_asgi
    assert direct.invoker.calls == asgi.invoker.calls
    if case in DIRECT:
        # (a request pipelined behind a pending answer takes uvicorn's pipeline and the ASGI path, in order)
        assert direct.asgi == (["/fn/hi", "/fn/hi"] if case == "pipelined" else [])
    else:
        assert direct.asgi == asgi.asgi != []


async def test_answers_keep_the_connection_and_later_requests_go_direct(both: tuple[Served, Served]) -> None:
    direct, _ = both
    reader, writer = await asyncio.open_connection("127.0.0.1", direct.port)
    for i in range(3):
        writer.write(post("/fn/hi", b"n%d" % i) + get("/fn/stream"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 201 ") and b"content-length: 11\r\n" in head
        assert await reader.readexactly(11) == b"POST / ? n%d" % i
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"transfer-encoding: chunked" in head
        assert await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5) == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"
    assert direct.asgi == ["/fn/stream"] * 3  # (each pipelined behind the POST's answer)
    writer.close()


async def test_a_client_that_leaves_mid_call_is_not_answered_and_the_server_goes_on(both: tuple[Served, Served]) -> None:
    direct, _ = both
    _, writer = await asyncio.open_connection("127.0.0.1", direct.port)
    writer.write(get("/fn/slow"))
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()  # (the call runs on: its answer goes nowhere)
    await asyncio.sleep(0.3)
    assert direct.invoker.calls == [("GET", "/", "", b"")]
    got, closed = await exchange(direct.port, get("/fn/hi"))
    assert got.startswith(b"HTTP/1.1 201 ") and not closed


async def test_a_body_that_stops_coming_is_408_and_nothing_runs() -> None:
    served = Served(True)
    served.proto = CoalescingHttpToolsProtocol.with_limits(HttpLimits(body_timeout=0.2, body_min_rate=1e9),
                                                           fn_gateway=served.gateway)
    async with uvicorn_on_free_port(served.app, http=served.proto, log_level="error", server_header=False,
                                    date_header=False, interface="asgi3", proxy_headers=False) as port:
        got, closed = await exchange(port, post("/fn/hi", b"x" * 100)[:-50], quiet=3)
    assert got.startswith(b"HTTP/1.1 408 ") and closed
    assert served.invoker.calls == [] and served.asgi == []


async def test_a_call_has_no_task_of_its_own_and_a_graceful_shutdown_waits_for_it_then_cancels_it() -> None:
    """A call the invoker answers is stepped without a task (fn_direct's `_Driven`): `current_task()` is None in
    it. It is in the server's tasks while it runs, so uvicorn's graceful shutdown waits for it and, past its
    timeout, cancels it: the call sees `CancelledError` where it waits and the client gets uvicorn's 500."""
    import socket

    import uvicorn

    served = Served(True)
    tasks_seen: list[asyncio.Task[Any] | None] = []
    cancelled = asyncio.Event()
    plain_call = served.invoker.call

    async def call(c: Call) -> Outcome:
        tasks_seen.append(asyncio.current_task())
        if c.path == "/hang":
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return await plain_call(c)

    served.invoker.call = call  # type: ignore[method-assign]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(served.app, http=served.proto, loop="none", lifespan="off", log_level="critical",
                                        timeout_graceful_shutdown=1, interface="asgi3"))
    serving = asyncio.create_task(srv.serve(sockets=[sock]))
    while not srv.started:
        await asyncio.sleep(0.01)
    port = sock.getsockname()[1]
    got, closed = await exchange(port, get("/fn/hi"))
    assert got.startswith(b"HTTP/1.1 201 ") and not closed
    assert tasks_seen == [None]

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(get("/fn/hi/hang"))
    await writer.drain()
    while len(tasks_seen) < 2:
        await asyncio.sleep(0.01)
    assert len(srv.server_state.tasks) == 1 and tasks_seen[1] is None
    srv.should_exit = True
    await asyncio.sleep(0.5)
    assert not cancelled.is_set() and not serving.done()  # (waited for)
    answer = await asyncio.wait_for(reader.read(), 5)
    assert cancelled.is_set() and answer.startswith(b"HTTP/1.1 500 ")
    await asyncio.wait_for(serving, 5)
    assert not srv.server_state.tasks
    writer.close()


async def test_a_call_the_protocol_let_in_reaches_the_invoker_after_the_pools_count_of_calls_on_their_way_reset() -> None:
    """A function whose callers wait is asked by the protocol before each call (`admits`), which counts the call
    as on its way until the loop next runs its ready callbacks (scheduler/overload.py). The call must reach the
    invoker (the pool's queue) only after that, as a task's first step did: counted twice meanwhile, 32 callers
    of a 10-instance function looked like a standing queue of 40 and were shed (429)."""
    class Counting:
        def __init__(self) -> None:
            self.passing = 0

        def admits(self) -> bool:
            if not self.passing:
                asyncio.get_running_loop().call_soon(self.arrived)
            self.passing += 1
            return True

        def arrived(self) -> None:
            self.passing = 0

    pool = Counting()
    served = Served(True)
    served.proto = CoalescingHttpToolsProtocol.with_limits(HttpLimits(), shedding={"hi": pool},
                                                           fn_gateway=served.gateway)
    on_the_way: list[int] = []
    plain_call = served.invoker.call

    async def call(c: Call) -> Outcome:
        on_the_way.append(pool.passing)
        return await plain_call(c)

    served.invoker.call = call  # type: ignore[method-assign]
    async with uvicorn_on_free_port(served.app, http=served.proto, log_level="error", server_header=False,
                                    date_header=False, interface="asgi3", proxy_headers=False) as port:
        got = await asyncio.gather(*(exchange(port, get("/fn/hi")) for _ in range(8)))
    assert all(g.startswith(b"HTTP/1.1 201 ") for g, _ in got)
    assert on_the_way == [0] * 8


def test_what_the_gateway_reads_of_a_requests_headers() -> None:
    """`Gateway.request` decodes the headers and reads its few in one pass: the headers passed on (the node's own
    taken out, the others in order), content type and length, the caller's trace, the async flag and callback."""
    gateway = Gateway(Invoker())  # type: ignore[arg-type]
    raw = [(b"host", b"h"), (b"content-type", b"application/json"), (b"content-length", b"12"),
           (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
           (b"x-polyfn-async", b"TRUE"), (b"x-callback-url", b"http://cb/x"), (b"x-polyfn-revision", b"3"),
           (b"x-caf\xe9", b"\xe9t\xe9")]
    req = gateway.request("/fn/hi/a/b", raw)
    assert (req.name, req.fn_path) == ("hi", "/a/b")
    assert req.headers == [("host", "h"), ("content-type", "application/json"), ("content-length", "12"),
                           ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                           ("x-callback-url", "http://cb/x"), ("x-café", "été")]
    assert (req.content_type, req.length, req.is_async, req.callback) == ("application/json", 12, True, "http://cb/x")
    assert req.trace == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    plain = gateway.request("/fn/hi", [(b"host", b"h"), (b"content-length", b"x1")])
    assert (plain.headers, plain.content_type, plain.length, plain.is_async, plain.callback, plain.fn_path) == (
        [("host", "h"), ("content-length", "x1")], "", -1, False, None, "/")


async def test_an_async_accept_has_no_task_of_its_own_and_answers_the_same_bytes(both: tuple[Served, Served]) -> None:
    """`X-Polyfn-Async: true`: the queue's accept is stepped like a call (no task: `current_task()` is None in
    the enqueue), and the 202 is the ASGI path's, byte for byte."""
    seen: list[asyncio.Task[Any] | None] = []

    class Queue:
        async def enqueue(self, call: Call, callback: str | None) -> str:
            seen.append(asyncio.current_task())
            await asyncio.sleep(0.01)  # (a wait on a future, as the queue file's commit or a PubAck)
            return "0123456789abcdef0123456789abcdef"

    for served in both:
        served.gateway.queue = Queue()
    raw = post("/fn/hi", b'{"x": 1}', "X-Polyfn-Async: true\r\n")
    got_direct, _ = await exchange(both[0].port, raw)
    got_asgi, _ = await exchange(both[1].port, raw)
    assert got_direct.startswith(b"HTTP/1.1 202 ") and got_direct == got_asgi
    assert both[0].asgi == [] and both[1].asgi == ["/fn/hi"]
    assert seen[0] is None and seen[1] is not None  # (the ASGI path runs in uvicorn's task)
