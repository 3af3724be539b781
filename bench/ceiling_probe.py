"""The ceiling probes of `bench/ceiling.py`: what this machine's Python can do at all on polyfn's process model.

    python bench/ceiling_probe.py hello PORT     # raw uvicorn "hello": no gateway, no worker, nothing
    python bench/ceiling_probe.py gateway PORT   # the minimal gateway: uvicorn → one Unix socket → a worker

Both run uvicorn as polyfn runs it (uvloop, httptools, no access log, no server/date header, no proxy-headers
middleware). `gateway` is the least a gateway of this shape can do per call: a raw ASGI app reads the request
(method, path, query, headers as latin-1 text pairs, body), sends it as a msgspec msgpack frame with a 4-byte
big-endian length prefix over one persistent Unix socketpair to one worker process (a uvloop asyncio protocol,
which answers each frame with a result frame as it reads it, several per wake-up when they are there), and
answers with the result's status, headers and body. Nothing is recorded, counted, isolated or timed out: it
is the ceiling polyfn's `/fn/NAME` is measured against, not a server to use.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
from typing import Any

import msgspec

HEADER = struct.Struct(">I")
HELLO = b"Hello World!"
_HELLO_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"12")]


class Request(msgspec.Struct, array_like=True):
    id: int
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes


class Response(msgspec.Struct, array_like=True):
    id: int
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Frames:
    """Splits a byte stream into length-prefixed frames."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self.buf
        buf += data
        out = []
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = HEADER.unpack_from(buf, pos)
            if len(buf) - pos - 4 < n:
                break
            out.append(bytes(buf[pos + 4:pos + 4 + n]))
            pos += 4 + n
        del buf[:pos]
        return out


def frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


# --- the worker ---------------------------------------------------------------------------------------------


class WorkerProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.frames = Frames()
        self.decode = msgspec.msgpack.Decoder(Request).decode
        self.encode = msgspec.msgpack.Encoder().encode
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        out = []
        for raw in self.frames.feed(data):
            req = self.decode(raw)
            out.append(frame(self.encode(Response(req.id, 200, [("content-type", "text/plain; charset=utf-8")],
                                                  HELLO))))
        if out:
            self.transport.write(b"".join(out))

    def connection_lost(self, exc: Exception | None) -> None:
        os._exit(0)


def worker(sock: socket.socket) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(WorkerProtocol, sock)
        await asyncio.Event().wait()

    uvloop.run(main())


# --- the gateway --------------------------------------------------------------------------------------------


class Upstream(asyncio.Protocol):
    """The gateway's end of the socketpair: sends request frames, resolves each call's future with its result."""

    def __init__(self) -> None:
        self.frames = Frames()
        self.decode = msgspec.msgpack.Decoder(Response).decode
        self.encode = msgspec.msgpack.Encoder().encode
        self.waiting: dict[int, asyncio.Future[Response]] = {}
        self.seq = 0
        self.transport: Any = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for raw in self.frames.feed(data):
            res = self.decode(raw)
            fut = self.waiting.pop(res.id)
            if not fut.done():
                fut.set_result(res)

    def call(self, method: str, path: str, query: str, headers: list[tuple[str, str]],
             body: bytes) -> asyncio.Future[Response]:
        self.seq += 1
        fut = self.loop.create_future()
        self.waiting[self.seq] = fut
        self.transport.write(frame(self.encode(Request(self.seq, method, path, query, headers, body))))
        return fut


class Gateway:
    def __init__(self) -> None:
        self.upstream: Upstream | None = None

    async def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            ours.close()
            worker(theirs)
            os._exit(0)
        theirs.close()
        loop = asyncio.get_running_loop()
        _, self.upstream = await loop.connect_accepted_socket(Upstream, ours)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await self.start()
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        msg = await receive()
        body = msg.get("body", b"")
        while msg.get("more_body"):
            msg = await receive()
            body += msg.get("body", b"")
        assert self.upstream is not None
        res = await self.upstream.call(scope["method"], scope["path"], scope["query_string"].decode("latin-1"),
                                       headers, body)
        out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in res.headers]
        out.append((b"content-length", str(len(res.body)).encode()))
        await send({"type": "http.response.start", "status": res.status, "headers": out})
        await send({"type": "http.response.body", "body": res.body})


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": _HELLO_HEADERS})
    await send({"type": "http.response.body", "body": HELLO})


def main() -> None:
    import uvicorn

    mode, port = sys.argv[1], int(sys.argv[2])
    app: Any = hello if mode == "hello" else Gateway()
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                lifespan="off" if mode == "hello" else "on", log_level="warning", access_log=False,
                server_header=False, date_header=False, proxy_headers=False, backlog=2048,
                ws="none")  # (the probe serves no WebSockets)


if __name__ == "__main__":
    main()
