"""Namespace quotas across the nodes of a cluster: what each node publishes of its use, and reads of the others'.

The quotas of what a namespace *holds* need nothing here: `functions` counts the shared database's rows, the
database quotas are kept by SQL triggers in the shared PostgreSQL (`db_use`), and `async_backlog` counts the
JetStream stream every node pulls from. What lives in each node's processes does: instances, their memory, and
calls admitted per second. With the least coordination that still holds them:

* **instances, memory_mb**: every node rewrites its rows in `quota_use` (migration 0018_ns6) about every
  `interval` seconds, and soon after it admits a start: one row per namespace with such a quota that it runs
  instances of, or with a rate quota that it had calls of lately (live instances, their memory, how many are
  idle, whether it serves the namespace's calls). In the same transaction it reads the other nodes' rows
  younger than `stale` seconds; `QuotaGuard.room` adds them to its own count before each start. A start
  refused while another node holds idle instances of the namespace makes this node ask for them (`wants`, for
  `WANT_S`); a node that reads such a row evicts its own idle instances of that namespace, so a warm instance
  on one node does not lock the quota for the others until its keep-alive ends (the refused caller's
  `Retry-After` covers it).
* **invocations_per_second**: each of the n nodes serving calls of the namespace (an attempt within
  `quotas.ACTIVE_S` seconds, its own included) admits limit ÷ n; a node whose share changes keeps the tokens
  it had (auth/ratelimit.py), so a change of n does not refill anybody's bucket.

Inexact by design, and by how much: another node's starts are seen up to about two intervals late (its write,
then this node's read), so a namespace may briefly run more instances (memory) than its quota by what the other
nodes started in that window — never more than its quota on any one node; a node that dies keeps counting for
`stale` seconds. The rate: the nodes together admit at most the limit once they agree on how many serve the
namespace (a node that starts serving it is counted by the others about two intervals later: until then its
share is extra; one that stops counts for `ACTIVE_S` more: until then the others hold back its share), and less
when the calls are spread unevenly over the nodes serving it (each keeps to an equal share).
Clocks of the nodes are assumed to agree within a second or so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert, select

from polyfn import loops
from polyfn.store.tables import quota_use as t

log = logging.getLogger("polyfn.quotas")
INTERVAL_S = 1.0  # seconds between a node's rewrites of its rows
STALE_S = 5.0  # rows older than this are a node that is gone
WANT_S = 3.0  # a refused start asks the others for their idle instances this long
GAP_S = 0.2  # a poked write waits this long: a burst of starts makes ~5 writes a second, not one each
NONE = (0, 0, 0, 0)


Use = tuple[int, int, int, int]  # (live instances, their memory in MB, idle instances, serving calls: nodes)


class ClusterUse:
    """`local()`: this node's use, `{namespace: Use}` (serving: 1 or 0); `release(namespace)`: evict this node's
    idle instances of a namespace (both QuotaGuard's)."""

    def __init__(self, store: Any, node: str, local: Callable[[], dict[str, Use]],
                 release: Callable[[str], Any], interval: float = INTERVAL_S, stale: float = STALE_S,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.node = node
        self.local = local
        self.release = release
        self.interval = interval
        self.stale = stale
        self.clock = clock
        self.others: dict[str, Use] = {}  # namespace → the other live nodes' use, summed
        self._wants: dict[str, float] = {}  # namespace → until when this node asks for the others' idle instances
        self._soon = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._read_at = 0.0  # when `others` was read
        self._failing = False

    def want(self, namespace: str) -> None:
        """A start of `namespace` was refused while another node holds idle instances of it."""
        self._wants[namespace] = self.clock() + WANT_S
        self._soon.set()

    def poke(self) -> None:
        """A start was admitted, or calls of a namespace began here: publish soon (not at once: what else
        happens meanwhile shares the write)."""
        self._soon.set()

    def serving(self, namespace: str) -> int:
        """How many nodes serve calls of `namespace`, this one included (it is calling this)."""
        return 1 + self.others.get(namespace, NONE)[3]

    async def tick(self) -> None:
        now = self.clock()
        self._wants = {ns: until for ns, until in self._wants.items() if until > now}
        mine = self.local()
        rows = []
        for ns in sorted(set(mine) | set(self._wants)):
            n, mem, idle, active = mine.get(ns, NONE)
            rows.append({"node": self.node, "namespace": ns, "instances": n, "memory_mb": mem, "idle": idle,
                         "active": active, "wants": int(ns in self._wants), "updated_at": now})
        async with self.store._writer() as conn:
            await conn.execute(delete(t).where(t.c.node == self.node))
            if rows:
                await conn.execute(insert(t), rows)
            found = (await conn.execute(select(t).where(t.c.node != self.node,
                                                        t.c.updated_at > now - self.stale))).all()
        others: dict[str, Use] = {}
        wanted: set[str] = set()
        for r in found:
            n, mem, idle, active = others.get(r.namespace, NONE)
            others[r.namespace] = (n + r.instances, mem + r.memory_mb, idle + r.idle, active + (r.active > 0))
            if r.wants:
                wanted.add(r.namespace)
        self.others, self._read_at = others, now
        for ns in wanted:
            if mine.get(ns, NONE)[2]:
                self.release(ns)
                self._soon.set()  # (the asking node learns soon that they are gone)

    async def start(self) -> None:
        await self._tick_logged()
        self._task = asyncio.create_task(self._run(), name="cluster quotas")

    async def _tick_logged(self) -> None:
        try:
            await self.tick()
        except Exception:  # the next tick tries again; the last view stays until it is `stale`, then this
            # node holds the quotas by its own use alone (it cannot learn the others' until the database answers)
            if not self._failing:
                log.exception("cluster quotas: publishing this node's use (retrying every %g s)", self.interval)
            self._failing = True
            if self.clock() - self._read_at > self.stale:
                self.others = {}
        else:
            if self._failing:
                log.info("cluster quotas: publishing again")
            self._failing = False

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._soon.wait(), self.interval)
                await asyncio.sleep(GAP_S)  # (what else starts meanwhile goes in the same write)
            self._soon.clear()
            await self._tick_logged()

    async def stop(self) -> None:
        """This node's rows go: the others count neither its instances nor its part of the rate any more."""
        task, self._task = self._task, None
        await loops.cancelled(task)
        with contextlib.suppress(Exception):
            async with self.store._writer() as conn:
                await conn.execute(delete(t).where(t.c.node == self.node))
