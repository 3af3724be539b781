"""uvicorn's WebSocket protocol (websockets' sans-I/O `ServerProtocol` underneath), lighter per connection.

An idle connection's server memory is mostly small Python objects kept for its whole life (measured with
tracemalloc, 2,000 connections): an `asyncio.Queue` for the app's `receive` (three deques and an Event with a
fourth: ~3 KB), an `asyncio.Event` for write flow control (~0.8 KB), and the handshake's request and response
with their headers (~2.5 KB) that nothing reads once the connection is open. `LeanWebSocketProtocol` replaces the
first two with one-consumer equivalents that allocate only while someone waits, and drops the handshake once it is
answered (bench/ws_fanout.py: the server's memory per idle connection).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class Inbox:
    """What the protocol uses of `asyncio.Queue` (put_nowait, get, empty, qsize) for its one consumer, the app's
    `receive`: a list, and a future only while `get` waits."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class Flag:
    """What the protocol uses of `asyncio.Event` (set, clear, wait, is_set) with no deque until someone waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for w in waiters or ():
            if not w.done():
                w.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        fut = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(fut)
        await fut


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue: Any = Inbox()
        self.writable: Any = Flag()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":  # the handshake is answered: nothing reads it again
            self.request = self.response = None
