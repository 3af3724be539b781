"""Which revision each function serves right now, and its pool; plus pools of pinned revisions.

A deploy swaps the function's pool atomically: new invocations go to the new revision at once, while the
old pool drains in the background (its in-flight invocations finish). A delete does the same with no
successor.

Invocations of a published version or an alias (`pinned`) may name a revision that is no longer current.
Such a revision gets its own pool, made on its first invocation (`new_pool`, keeping no instances
warm whatever the spec's `min_instances`); its instances are closed by the usual keep-alive reaper, and the
empty pool itself is dropped by a sweep once it has had no instance for a keep-alive period. Deleting the
function or the version (`remove`, `remove_revision`) drains them at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from polyfn.instances.manager import InstanceManager
from polyfn.model import Revision
from polyfn.scheduler.keepalive import IdlePrior
from polyfn.scheduler.pool import Pool
from polyfn.tenancy import namespace_of

log = logging.getLogger("polyfn.registry")

SWEEP_INTERVAL = 5.0  # seconds between sweeps of empty pinned pools (only while there are some)


class Active:
    __slots__ = ("pool", "revision", "since")

    def __init__(self, revision: Revision, pool: Pool, since: float = 0.0):
        self.revision = revision
        self.pool = pool
        self.since = since  # monotonic time a pinned pool was made (0 for current ones)


class FunctionRegistry:
    def __init__(self, manager: InstanceManager, drain_timeout: float):
        self.manager = manager
        self.drain_timeout = drain_timeout
        self.functions: dict[str, Active] = {}
        self.pinned_pools: dict[tuple[str, int], Active] = {}  # (function, revision number) → its pool
        self._draining: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        # the `adaptive` keep-alive policy's starting belief, one per namespace (a tenant's idle times never
        # shape another's windows)
        self.idle_priors: dict[str, IdlePrior] = {}

    def new_pool(self, revision: Revision, keep_min: bool = True) -> Pool:
        """A pool for `revision`, started by the manager (the pool's `Starter`) and handed to it (its ticker and
        memory budget see it); `keep_min=False` (a pinned, non-current revision) keeps no instances warm."""
        settings = self.manager.settings
        prior = self.idle_priors.setdefault(namespace_of(revision.spec.name), IdlePrior())
        pool = Pool(revision, self.manager, settings.max_queue, settings.keepalive, settings.keepalive_policy, prior,
                    settings.keepalive_time_scale)
        if not keep_min:
            pool.min_instances = 0
            pool.scaler_config = dataclasses.replace(pool.scaler_config, min_instances=0)
        self.manager.add_pool(pool)
        pool.ensure_min()
        return pool

    def get(self, name: str) -> Active | None:
        return self.functions.get(name)

    def prepare(self, revision: Revision) -> Pool:
        """`revision`'s pool before it takes traffic: the manager sees it (a served function's new revision has its
        zygote built now), callers still reach the current revision until `activate(revision, pool)`; a pool
        prepared and not activated goes with `discard`."""
        pool = self.new_pool(revision)
        old = self.functions.get(revision.function)
        if old is not None:
            self.manager.succeed(old.pool, pool)
        return pool

    def activate(self, revision: Revision, prepared: Pool | None = None) -> None:
        old = self.functions.get(revision.function)
        pool = prepared if prepared is not None else self.new_pool(revision)
        self.functions[revision.function] = Active(revision, pool)
        if old is not None:
            if prepared is None:
                self.manager.succeed(old.pool, pool)
            self._drain(old.pool)

    def discard(self, pool: Pool) -> None:
        """A prepared pool that will not take traffic (its deploy failed or was overtaken). If another pool serves
        the same revision (a cluster's sync switched to it meanwhile), that pool keeps the revision's sandbox and
        zygote."""
        key = pool.revision.key

        def forget() -> None:
            served = any(a.revision.key == key for a in (*self.functions.values(), *self.pinned_pools.values()))
            self.manager.forget_pool(pool, keep_revision=served)

        t = asyncio.ensure_future(pool.drain(max(self.drain_timeout, pool.revision.spec.timeout), forget))
        self._draining.add(t)
        t.add_done_callback(self._draining.discard)

    async def activate_stored(self, store: Any) -> None:
        """At a node's start: every stored function's current revision whose code is here."""
        for info in await store.list_functions():
            rev = await store.get_current_revision(info.name)
            if rev is not None and Path(rev.code_dir).is_dir():
                self.activate(rev)

    def pinned(self, revision: Revision) -> Active:
        """The pool serving `revision`: the function's current one, or a pinned pool made on demand.
        The caller has checked that the function exists (`get`)."""
        cur = self.functions.get(revision.function)
        if cur is not None and cur.revision.number == revision.number:
            return cur
        key = (revision.function, revision.number)
        a = self.pinned_pools.get(key)
        if a is None:
            a = self.pinned_pools[key] = Active(revision, self.new_pool(revision, keep_min=False),
                                                time.monotonic())
            log.info("%s: pool for a pinned revision", revision.key)
            self._arm_sweep()
        return a

    def all_of(self, name: str) -> list[Active]:
        """The function's current pool first, then its pinned ones."""
        cur = self.functions.get(name)
        return [*([cur] if cur else []), *(a for k, a in self.pinned_pools.items() if k[0] == name)]

    def remove(self, name: str) -> Pool | None:
        for key in [k for k in self.pinned_pools if k[0] == name]:
            self._drain(self.pinned_pools.pop(key).pool)
        old = self.functions.pop(name, None)
        if old is None:
            return None
        self._drain(old.pool)
        return old.pool

    def remove_revision(self, name: str, number: int) -> None:
        """A version was deleted: stop its pinned pool (the current revision's pool is left alone)."""
        a = self.pinned_pools.pop((name, number), None)
        if a is not None:
            self._drain(a.pool)

    def _arm_sweep(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self.sweep)

    def sweep(self, now: float | None = None) -> int:
        """Drop pinned pools that have had no instance, caller or start for a keep-alive period (their
        instances were closed by the keep-alive reaper). Returns how many were dropped."""
        self._sweeper = None
        now = time.monotonic() if now is None else now
        dropped = 0
        for key, a in list(self.pinned_pools.items()):
            p = a.pool
            if p.instances or p.starting or p.busy or p.waiters:
                continue
            if now - max(p.last_end, a.since) >= p.keepalive:
                del self.pinned_pools[key]
                self._drain(p)
                dropped += 1
        if self.pinned_pools:
            self._arm_sweep()
        return dropped

    def _drain(self, pool: Pool) -> None:
        timeout = max(self.drain_timeout, pool.revision.spec.timeout)
        t = asyncio.ensure_future(pool.drain(timeout, lambda: self.manager.forget_pool(pool)))
        self._draining.add(t)
        t.add_done_callback(self._draining.discard)

    async def drain_all(self, timeout: float) -> None:
        """Shutdown: let every pool finish its in-flight invocations (bounded), then stop them."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for name in {*self.functions, *(k[0] for k in self.pinned_pools)}:
            self.remove(name)
        if self._draining:
            await asyncio.wait(list(self._draining), timeout=timeout + 1)
