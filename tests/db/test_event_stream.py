"""EventStream (db/wx_api.py), the server-sent delivery of watch snapshots, over a scripted ASGI connection:
events as `data:` lines, keep-alive comments while nothing happens, the end when the client goes or when
`alive()` turns false, and `on_close` exactly once however it ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from polyfn.db.wx_api import EventStream


class Connection:
    """The ASGI side: what was sent, and a client that leaves when told to."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.leave = asyncio.Event()
        self.got = asyncio.Condition()

    async def receive(self) -> dict[str, Any]:
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, msg: dict[str, Any]) -> None:
        async with self.got:
            self.sent.append(msg)
            self.got.notify_all()

    async def until(self, pred: Any) -> None:
        async with self.got:
            await self.got.wait_for(lambda: pred(self.sent))

    def lines(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body" and m["body"]]


async def snapshots(queue: asyncio.Queue[dict[str, Any]], closed: list[str]) -> AsyncIterator[dict[str, Any]]:
    try:
        while True:
            yield await queue.get()
    finally:
        closed.append("snapshots")


async def test_events_then_the_client_leaves() -> None:
    conn, queue, closed = Connection(), asyncio.Queue(), []
    stream = EventStream(snapshots(queue, closed), on_close=lambda: closed.append("on_close"))
    task = asyncio.create_task(stream.serve(conn.receive, conn.send))
    await queue.put({"id": 0, "type": "init", "docs": []})
    await conn.until(lambda sent: len(sent) >= 2)
    assert conn.sent[0]["status"] == 200 and (b"content-type", b"text/event-stream") in conn.sent[0]["headers"]
    assert json.loads(conn.lines()[0].removeprefix(b"data: ")) == {"id": 0, "type": "init", "docs": []}
    conn.leave.set()
    await asyncio.wait_for(task, 10)
    assert closed == ["snapshots", "on_close"]


async def test_keep_alive_while_quiet_and_the_end_when_no_longer_alive() -> None:
    conn, queue, closed = Connection(), asyncio.Queue(), []
    alive = [True]
    stream = EventStream(snapshots(queue, closed), heartbeat=0.01, alive=lambda: alive[0],
                         on_close=lambda: closed.append("on_close"))
    task = asyncio.create_task(stream.serve(conn.receive, conn.send))
    await conn.until(lambda sent: sum(1 for m in sent if m.get("body") == b": keep-alive\n\n") >= 2)
    alive[0] = False  # e.g. the user's session was revoked: the next line is not sent
    await asyncio.wait_for(task, 10)
    await queue.put({"id": 1, "docs": []})
    assert not any(line.startswith(b"data:") for line in conn.lines())
    assert conn.sent[-1] == {"type": "http.response.body", "body": b""}
    assert closed == ["snapshots", "on_close"]


async def test_a_broken_connection_mid_wait_closes_cleanly() -> None:
    """The send fails (the socket went away) while a read of the snapshots is pending: that read is cancelled
    before the snapshots are closed, so closing them does not fail as 'already running'."""
    conn, queue, closed = Connection(), asyncio.Queue(), []

    async def broken(msg: dict[str, Any]) -> None:
        if msg.get("body") == b": keep-alive\n\n":
            raise OSError("connection reset")
        await conn.send(msg)

    stream = EventStream(snapshots(queue, closed), heartbeat=0.01, on_close=lambda: closed.append("on_close"))
    await asyncio.wait_for(stream.serve(conn.receive, broken), 10)
    assert closed == ["snapshots", "on_close"]
