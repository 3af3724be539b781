"""This node's share of the durable work (`wf_work`): when each item runs.

A `timer` or `schedule` item waits in an in-memory heap until it is due (leased to this node until then); an
`invoke` or `resume` item runs at once, its lease renewed while it runs (a long task is not taken by another
node meanwhile). A poll takes due work nobody holds: items of a node that died (after their lease) and of this
node before a restart (at once, `start`). What running an item means is the engine's (`run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable

from polyfn.workflows.store import WorkflowStore, WorkItem

log = logging.getLogger("polyfn.workflows")

LEASE = 60.0  # seconds an item stays with the node running it without a renewal
POLL = 1.0  # seconds between looks for due work nobody holds


class Work:
    def __init__(self, store: WorkflowStore, run: Callable[[WorkItem], Awaitable[None]], clock: Callable[[], float],
                 owner: str, poll: float = POLL, lease: float = LEASE):
        self.store = store
        self.run = run
        self.clock = clock
        self.owner = owner
        self.poll = poll
        self.lease = lease
        self._heap: list[tuple[float, int, WorkItem]] = []  # (due, n, item): timers and schedules this node holds
        self._pushed = 0
        self._timers: set[str] = set()
        self.running: dict[str, asyncio.Task[None]] = {}  # work id → its task
        self._wake = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self.stopping = False

    async def start(self) -> None:
        freed = await self.store.release_owner(self.owner)
        if freed:
            log.info("workflows: %d task(s) and timer(s) held before the restart are taken up again", freed)
        self._pump_task = asyncio.create_task(self._pump())
        self._renew_task = asyncio.create_task(self._renew())

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop taking work; running items get `timeout` seconds, then the rest run again at the next start."""
        self.stopping = True
        self._wake.set()
        for t in (self._pump_task, self._renew_task):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=timeout)
        for t in list(self.running.values()):
            t.cancel()
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=1)

    def dispatch(self, item: WorkItem) -> None:
        """Run `item` now, or hold it in the heap until it is due (a timer, a schedule)."""
        if self.stopping:
            return
        if item.kind in ("timer", "schedule") and item.due > self.clock():
            self._timers.add(item.id)
            self._pushed += 1
            heapq.heappush(self._heap, (item.due, self._pushed, item))
            if self._heap[0][2] is item:
                self._wake.set()
            return
        if item.id in self.running:
            return
        t = asyncio.create_task(self._go(item))
        self.running[item.id] = t
        t.add_done_callback(lambda _t, i=item.id: self.running.pop(i, None))

    def cancelled(self, ids: list[str]) -> None:
        """Timers a stored transition cancelled: not fired when their heap entry comes due."""
        for i in ids:
            self._timers.discard(i)

    async def _go(self, item: WorkItem) -> None:
        if item.kind in ("timer", "schedule"):
            self._timers.discard(item.id)
        await self.run(item)

    async def _pump(self) -> None:
        next_poll = 0.0
        while not self.stopping:
            try:
                now = self.clock()
                while self._heap and self._heap[0][0] <= now:
                    _due, _n, item = heapq.heappop(self._heap)
                    if item.id in self._timers and item.id not in self.running:
                        self.dispatch(item)
                if now >= next_poll:
                    next_poll = now + self.poll
                    for item in await self.store.claim_due(now, self.owner, now + self.lease, 500):
                        if item.kind in ("timer", "schedule"):
                            self._timers.add(item.id)
                        elif item.kind == "invoke":
                            item.payload["again"] = True  # (in memory: its input may be older than the execution)
                        self.dispatch(item)
                wait = next_poll - self.clock()
                if self._heap:
                    wait = min(wait, self._heap[0][0] - self.clock())
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(wait, 0.001))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("workflows: taking due work failed; trying again in 1 s")
                await asyncio.sleep(1)

    async def _renew(self) -> None:
        """Keep the leases of running tasks (a long task is not taken by another node while it runs)."""
        while not self.stopping:
            await asyncio.sleep(self.lease / 3)
            ids = [i for i in self.running if "/" not in i]
            if ids:
                try:
                    await self.store.renew(ids, self.owner, self.clock() + self.lease)
                except Exception as e:
                    log.warning("workflows: renewing task leases failed: %s", e)
