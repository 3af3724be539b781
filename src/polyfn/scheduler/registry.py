"""Which revision each function serves right now, and its pool.

A deploy swaps the function's pool atomically: new invocations go to the new revision at once, while the
old pool drains in the background (its in-flight invocations finish). A delete does the same with no
successor.
"""

from __future__ import annotations

import asyncio
import logging

from polyfn.model import Revision
from polyfn.scheduler.manager import InstanceManager
from polyfn.scheduler.pool import Pool

log = logging.getLogger("polyfn.registry")


class Active:
    __slots__ = ("pool", "revision")

    def __init__(self, revision: Revision, pool: Pool):
        self.revision = revision
        self.pool = pool


class FunctionRegistry:
    def __init__(self, manager: InstanceManager, drain_timeout: float):
        self.manager = manager
        self.drain_timeout = drain_timeout
        self.functions: dict[str, Active] = {}
        self._draining: set[asyncio.Task[None]] = set()

    def get(self, name: str) -> Active | None:
        return self.functions.get(name)

    def activate(self, revision: Revision) -> None:
        old = self.functions.get(revision.function)
        self.functions[revision.function] = Active(revision, self.manager.new_pool(revision))
        if old is not None:
            self._drain(old.pool)

    def remove(self, name: str) -> Pool | None:
        old = self.functions.pop(name, None)
        if old is None:
            return None
        self._drain(old.pool)
        return old.pool

    def _drain(self, pool: Pool) -> None:
        timeout = max(self.drain_timeout, pool.revision.spec.timeout)
        t = asyncio.ensure_future(pool.drain(timeout, lambda: self.manager.forget_pool(pool)))
        self._draining.add(t)
        t.add_done_callback(self._draining.discard)

    async def drain_all(self, timeout: float) -> None:
        """Shutdown: let every pool finish its in-flight invocations (bounded), then stop them."""
        for name in list(self.functions):
            self.remove(name)
        if self._draining:
            await asyncio.wait(list(self._draining), timeout=timeout + 1)

    def in_flight(self) -> int:
        return sum(i.inflight for a in self.functions.values() for i in a.pool.instances)
