"""Shared by the gateway's tests: real uvicorn on a real socket, in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


@contextlib.asynccontextmanager
async def uvicorn_on_free_port(app: Any, **config: Any) -> AsyncIterator[int]:
    """`app` served by uvicorn (`config`: uvicorn.Config's options) on a free local port, which it yields; the
    server is stopped on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, loop="none", lifespan="off", **config))
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    while not srv.started:
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        srv.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task, 5)
