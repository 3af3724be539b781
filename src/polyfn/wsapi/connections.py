"""The node's open WebSocket connections: who holds which id, when each must close, and pushes to them.

One sweep a second closes the connections past their idle time (no data message either way) or their whole
life (API Gateway closes both with 1001 "Going away"), instead of a timer each. A push (`post`) to an id this
node does not hold is `Gone` (410: the management API's GoneException) unless a forwarder takes it (a cluster:
`cluster.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from polyfn.auth.keys import allows
from polyfn.loops import one_item
from polyfn.wsapi.events import connection_id, iso_time, node_tag, tag_of

log = logging.getLogger("polyfn.websockets")

GOING_AWAY = 1001


class Gone(Exception):
    """The connection is not open (never was, closed, or its node is not reachable)."""


class TooLarge(Exception):
    """A push over the message limit."""


class Denied(Exception):
    """The caller's key may not reach the connection's function."""


class Connection:
    """One open connection: what its events' `requestContext` says, its limits, and the ASGI `send` that writes
    to it. `last_active` and `deadline` are wall-clock seconds (the sweep compares them with `now`)."""

    __slots__ = (
        "api_id",
        "authorizer",
        "closing",
        "connected_at",
        "deadline",
        "domain",
        "function",
        "id",
        "identity",
        "idle",
        "last_active",
        "send",
        "source_ip",
        "stage",
        "user_agent",
    )

    def __init__(self, cid: str, function: str, domain: str, stage: str, now: float, source_ip: str,
                 user_agent: str, idle: float, max_duration: float, send: Callable[[dict[str, Any]], Awaitable[None]]):
        self.id = cid
        self.function = function
        self.domain = domain
        self.stage = stage
        self.api_id = function
        self.connected_at = now
        self.last_active = now
        self.source_ip = source_ip
        self.user_agent = user_agent
        self.idle = idle
        self.deadline = now + max_duration
        self.send = send
        self.closing = False
        self.authorizer: dict[str, Any] | None = None
        self.identity: dict[str, Any] | None = None

    async def push(self, data: bytes) -> None:
        """Send `data` as a text message when it is UTF-8 (what browsers' `event.data` shows as a string, as API
        Gateway sends), else as a binary one."""
        if self.closing:
            raise Gone(self.id)
        try:
            msg = {"type": "websocket.send", "text": data.decode()}
        except UnicodeDecodeError:
            msg = {"type": "websocket.send", "bytes": data}
        try:
            await self.send(msg)
        except Exception as e:  # (uvicorn's ClientDisconnected, a closed transport)
            self.closing = True
            raise Gone(self.id) from e

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closing:
            return
        self.closing = True
        await self.send_close(code, reason)

    async def send_close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):  # (already gone)
            await self.send({"type": "websocket.close", "code": code, "reason": reason})


class Connections:
    """The open connections of this node by id. `forward(op, conn_id, data, key)` (set by `cluster.py` on a node
    of a cluster) takes operations on ids another node made."""

    SWEEP = 1.0

    def __init__(self, node_id: str, max_message: int, clock: Callable[[], float] = time.time,
                 random: Callable[[int], bytes] = os.urandom):
        self.tag = node_tag(node_id)
        self.max_message = max_message
        self._clock = clock
        self._random = random
        self._open: dict[str, Connection] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.forward: Callable[[str, str, bytes, Any], Awaitable[Any]] | None = None

    def new_id(self) -> str:
        while True:
            cid = connection_id(self.tag, self._random(8))
            if cid not in self._open:
                return cid

    def add(self, conn: Connection) -> None:
        self._open[conn.id] = conn

    def remove(self, conn: Connection) -> None:
        conn.closing = True
        if self._open.get(conn.id) is conn:
            del self._open[conn.id]

    def get(self, cid: str) -> Connection | None:
        return self._open.get(cid)

    def __len__(self) -> int:
        return len(self._open)

    def by_function(self) -> dict[tuple[str], float]:
        """Open connections per function (the `polyfn_websocket_connections` gauge, read at scrape time)."""
        counts: dict[tuple[str], float] = {}
        for conn in self._open.values():
            key = (conn.function,)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def is_local(self, cid: str) -> bool:
        return tag_of(cid) == self.tag

    def touch(self, conn: Connection) -> None:
        conn.last_active = self._clock()

    # -- what the management API does --------------------------------------------------------------------------

    def local(self, cid: str) -> Connection:
        conn = self._open.get(cid)
        if conn is None or conn.closing:
            raise Gone(cid)
        return conn

    async def operate(self, op: str, cid: str, data: bytes, key: Any) -> dict[str, Any] | None:
        """The management API's operation `op` (post, get, delete) on connection `cid` for a caller holding `key`
        (anything with `scope`, `owner`, `function`: `auth.keys.allows` decides): here, or on the node that holds
        the connection (`forward`). GetConnection's answer; None for the others. Raises Gone, TooLarge, Denied."""
        if op == "post" and len(data) > self.max_message:
            raise TooLarge(f"the message is {len(data)} bytes; the limit is {self.max_message} (POLYFN_WS_MAX_MESSAGE)")
        if not self.is_local(cid):
            if self.forward is None or tag_of(cid) is None:
                raise Gone(cid)
            return await self.forward(op, cid, data, key)
        conn = self.local(cid)
        if not allows(key, "invoke", conn.function):
            raise Denied(f"the key may not reach connections of function {conn.function!r} (it needs scope invoke "
                         "on that function)")
        if op == "post":
            conn.last_active = self._clock()
            await conn.push(data)
        elif op == "delete":
            await conn.close(1000, "")
        else:
            return {"connectedAt": iso_time(conn.connected_at), "lastActiveAt": iso_time(conn.last_active),
                    "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent}}
        return None

    # -- the sweep ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_loop())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for conn in list(self._open.values()):  # (uvicorn closes them too, with 1012, when it stops first)
            await conn.close(GOING_AWAY, "the node is stopping")

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.SWEEP)
            with one_item(log, "sweeping WebSocket connections"):
                self.sweep(self._clock())

    def sweep(self, now: float) -> list[Connection]:
        """Close the connections past their idle time or their whole life; the closed ones."""
        due = [c for c in self._open.values() if not c.closing and (now >= c.deadline or now - c.last_active >= c.idle)]
        for conn in due:
            reason = "Going away: the connection reached its maximum duration" if now >= conn.deadline else \
                "Going away: the connection was idle too long"
            conn.closing = True  # (pushes to it are Gone from now on)
            t = asyncio.ensure_future(conn.send_close(GOING_AWAY, reason))
            self._closing.add(t)
            t.add_done_callback(self._closing.discard)
        return due
