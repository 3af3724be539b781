"""The change feed: every item change of a table with a stream (or change triggers) is a row of `db_changes`,
written in the transaction that made the change, so a change is recorded exactly when it happened — a kill -9
can lose neither. Rows are the table's stream: kept 24 hours (as DynamoDB Streams keeps records), read in
order by each change trigger from its own checkpoint (`triggers/dynamodb.py`).

`Sweeper` is the feed's housekeeping, on a timer: TTL expiry (items whose TTL attribute is past are deleted,
with REMOVE records marked as TTL deletions), stream retention, and old ClientRequestTokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from polyfn.db import rows
from polyfn.db.core import Database
from polyfn.db.storage import db_changes, db_items, db_tables
from polyfn.loops import cancelled

log = logging.getLogger("polyfn.db")
RETENTION = 24 * 3600.0
TTL_BATCH = 500


class ChangeFeed:
    """Reading the feed, and waking readers as soon as a write recorded changes (the trigger lag)."""

    def __init__(self, db: Database, ns: str = "default"):
        self.db = db
        self.ns = ns
        self.version = 0  # bumped by every write that recorded changes
        self._waiters: set[asyncio.Future[None]] = set()
        db.on_change = self.notify

    def notify(self) -> None:
        self.version += 1
        for f in self._waiters:
            if not f.done():
                f.set_result(None)
        self._waiters.clear()

    async def wait(self, since: int, timeout: float) -> None:
        """Until a change is recorded after version `since` (at once if one was), or `timeout`."""
        if self.version != since:
            return
        f: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(f)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(f, timeout)
        self._waiters.discard(f)

    async def last_seq(self) -> int:
        return int(await self.db.storage.read(lambda c: c.execute(select(func.max(db_changes.c.seq))).scalar() or 0))

    async def read(self, ns: str, table: str, after: int, limit: int) -> list[tuple[int, float, dict[str, Any]]]:
        """(seq, time, record) of the table's changes after `after`, oldest first."""
        c_ = db_changes.c
        q = (select(c_.seq, c_.created_at, c_.record).where(c_.ns == ns, c_.tname == table, c_.seq > after)
             .order_by(c_.seq).limit(limit))
        got = await self.db.storage.read(lambda c: c.execute(q).all())
        return [(int(r.seq), float(r.created_at), rows.decode(r.record)) for r in got]


class Sweeper:
    """TTL expiry, stream retention and token expiry, every `interval` seconds (clock passed in)."""

    def __init__(self, db: Database, interval: float = 5.0, clock: Callable[[], float] = time.time):
        self.db = db
        self.interval = interval
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await cancelled(self._task)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception:  # a database hiccup must not stop housekeeping
                log.exception("database sweep failed")

    async def sweep(self) -> int:
        """One pass; returns how many expired items it deleted."""
        now = self.clock()
        deleted = 0
        tables = await self.db.storage.read(lambda c: c.execute(select(db_tables.c.ns, db_tables.c.name)).all())
        for ns, name in tables:
            t = await self.db.table(ns, name)
            if t.ttl_attribute is not None:
                deleted += await self.db.storage.write(lambda c, t=t, ns=ns: _expire(c, ns, t, now))
        if deleted:
            self.db.changed()

        def trim(c: Connection) -> None:
            c.execute(delete(db_changes).where(db_changes.c.created_at < now - RETENTION))

        await self.db.storage.write(trim)
        return deleted


def _expire(c: Connection, ns: str, t: Any, now: float) -> int:
    i = db_items.c
    got = c.execute(select(i.h, i.pk, i.sk, i.item).where(i.tid == t.id, i.expires.isnot(None), i.expires <= now)
                    .limit(TTL_BATCH)).all()
    for r in got:
        k = rows.RowKey(r.h, r.pk, r.sk)
        old = rows.decode(r.item)
        rows.remove(c, t, k, old)
        rows.record_change(c, ns, t, old, None, now, ttl=True)
    return len(got)
