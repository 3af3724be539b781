"""Which node fires cron ticks (DESIGN.md §5).

Embedded (SQLite metadata): this node, always. With PostgreSQL metadata (`POLYFN_DATABASE_URL`), nodes
sharing the database elect a leader through a session-level advisory lock (`pg_try_advisory_lock`) held on a
dedicated connection: the node that holds it fires every cron tick; the others retry every
`POLYFN_CRON_LEADER_INTERVAL` seconds (default 1). When the leader dies its session ends, PostgreSQL releases
the lock, and the next node to try takes over, scheduling from the cursor the old leader saved in the shared
database (so each tick fires once cluster-wide; a tick the old leader queued but had not yet recorded as
fired when it died can fire once more: at-least-once, like the rest of the queue).

Before each tick the leader confirms on its connection that it still holds the lock (`confirm()`): a leader
whose session was lost (database restart, connection cut) stops firing at once instead of at its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger("polyfn.triggers.leader")

#: The advisory lock key (64-bit): "polyfn cron leader".
LOCK_KEY = 0x706F6C79666E6372

_HELD = ("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() "
         "AND ((classid::bigint << 32) | objid::bigint) = $1)")


def pg_dsn(database_url: str | None) -> str | None:
    """The libpq DSN of a PostgreSQL SQLAlchemy URL (None for SQLite or no URL)."""
    if not database_url or not database_url.startswith(("postgresql", "postgres")):
        return None
    return "postgresql://" + database_url.split("://", 1)[1]


class CronLeader:
    def __init__(self, database_url: str | None, interval: float = 1.0):
        self.dsn = pg_dsn(database_url)
        self.interval = interval
        self._leader = asyncio.Event()
        self._conn: Any = None
        self._lock = asyncio.Lock()  # one query at a time on the lock connection
        self._task: asyncio.Task[None] | None = None
        self.state = "leader" if self.dsn is None else "standby"  # shown by `polyfn trigger list`

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    async def start(self) -> None:
        if self.dsn is None:
            self._leader.set()
            return
        self._task = asyncio.create_task(self._run(), name="cron leader election")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop()

    async def wait(self) -> None:
        """Return once this node is the leader."""
        await self._leader.wait()

    async def confirm(self) -> bool:
        """Is this node still the leader? (asks PostgreSQL, so a lost session is noticed before a tick)"""
        if self.dsn is None:
            return True
        if not self.is_leader or self._conn is None:
            return False
        try:
            async with self._lock:
                held = bool(await self._conn.fetchval(_HELD, LOCK_KEY, timeout=5))
        except Exception as e:
            log.warning("cron leader: lost the lock connection: %s", e)
            held = False
        if not held:
            await self._drop()
        return held

    async def _drop(self) -> None:
        if self.is_leader and self.dsn is not None:
            log.warning("cron leader: this node is no longer the leader")
        self._leader.clear()
        self.state = "standby" if self.dsn is not None else "leader"
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    async def _run(self) -> None:
        import asyncpg

        while True:
            try:
                if self._conn is None:
                    self._conn = await asyncpg.connect(self.dsn, timeout=5)
                async with self._lock:
                    if self.is_leader:  # keep the session (and with it the lock) checked
                        held = bool(await self._conn.fetchval(_HELD, LOCK_KEY, timeout=5))
                    else:
                        held = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY,
                                                              timeout=5))
                if held and not self.is_leader:
                    log.info("cron leader: this node fires the cron ticks")
                    self.state = "leader"
                    self._leader.set()
                elif not held and self.is_leader:
                    await self._drop()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("cron leader: %s: %s", type(e).__name__, e)
                self.state = "error"
                await self._drop()
                self.state = "error"
            await asyncio.sleep(self.interval)
