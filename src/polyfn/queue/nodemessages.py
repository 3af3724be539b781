"""Node-to-node messages on the cluster queue's NATS connection (core NATS, never stored; not jobs): change
notices that wake the other nodes' cluster sync, requests another node answers (a WebSocket push to a
connection it holds, wsapi/cluster.py), and cancels of an invocation another node runs or holds.
`NodeMessages` is that part of `JetStreamJobs` (jetstream.py, a base class of it): it uses its connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("polyfn.queue")


class NodeMessages:
    stream: str
    _nc: Any
    _notices: set[asyncio.Future[None]]

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    # -- change notices (the cluster sync's wake-up; not jobs) --------------------------------------------

    @property
    def changes_subject(self) -> str:
        """Core NATS, outside the stream's subjects: a notice is a hint, never stored."""
        return f"polyfn-changes.{self.stream}"

    def announce_change(self, sender: str) -> None:
        """Tell the other nodes that functions or triggers changed (fire and forget: a lost notice costs one
        sync interval)."""
        if self._nc is not None and self._nc.is_connected:
            t = asyncio.ensure_future(self._nc.publish(self.changes_subject, sender.encode()))
            self._notices.add(t)
            t.add_done_callback(self._notices.discard)

    async def on_changes(self, sender: str, callback: Callable[[], None]) -> None:
        """Call `callback` for every other node's change notice."""
        me = sender.encode()

        async def handle(msg: Any) -> None:
            if msg.data != me:
                callback()

        await self._nc.subscribe(self.changes_subject, cb=handle)

    async def answer(self, subject: str, handler: Callable[[bytes], Any]) -> None:
        """Answer core-NATS requests on `subject` with `await handler(data)` (node-to-node calls on the queue's
        connection: a WebSocket push to a connection another node holds, wsapi/cluster.py)."""

        async def handle(msg: Any) -> None:
            try:
                reply = await handler(msg.data)
            except Exception:
                log.exception("answering a request on %s", subject)
                return
            await msg.respond(reply)

        await self._nc.subscribe(subject, cb=handle)

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        """One core-NATS request and its answer (raises when nobody answers within `timeout`)."""
        if self._nc is None:
            raise ConnectionError("no NATS connection")
        return (await self._nc.request(subject, data, timeout=timeout)).data

    # -- cancels across the cluster (core NATS request/reply; not jobs) -------------------------------------

    @property
    def cancels_subject(self) -> str:
        return f"polyfn-cancels.{self.stream}"

    async def cancel_elsewhere(self, activation_id: str, timeout: float = 1.0) -> str | None:
        """Ask every node to cancel `activation_id` (running there, or held there waiting for an instance):
        what the node that had it answers ("running" or "pending"), None when no node answered in `timeout`
        (nodes that do not have it stay silent)."""
        if not self.connected:
            return None
        try:
            data = await self.request(self.cancels_subject, activation_id.encode(), timeout)
        except Exception:  # no node had it (timeout), or NATS is away
            return None
        return data.decode(errors="replace") or None

    async def on_cancels(self, cancel: Callable[[str], Awaitable[str | None]]) -> None:
        """Answer other nodes' `cancel_elsewhere` with what `cancel(activation_id)` did here, if anything (not
        `answer`: a node that does not have it stays silent, so the first answer is the one that did)."""
        async def handle(msg: Any) -> None:
            try:
                was = await cancel(msg.data.decode(errors="replace"))
                if was and msg.reply:
                    await msg.respond(was.encode())
            except Exception as e:
                log.warning("async queue: a cancel asked by another node failed here: %s", e)

        await self._nc.subscribe(self.cancels_subject, cb=handle)
