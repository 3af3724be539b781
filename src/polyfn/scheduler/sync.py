"""Cluster sync: a node serves the functions other nodes deploy, change and delete in the shared database.

Every node of a cluster serves the same API and can run any function (DESIGN.md §5). A deploy goes to one
node, which records the revision in the shared PostgreSQL database and switches its own registry at once;
the other nodes find out here: every `interval` seconds each one compares the functions' current revisions
in the database with its registry, makes the new ones runnable locally (`Deployer.localise`: code fetched
from the artifact store, dependencies installed, builds done) and switches to them the same way a deploy
does (the old pool drains), and drops the functions that are gone; then it starts the triggers other nodes
added and stops the ones they deleted (`TriggerManager.reconcile`). A revision that cannot be made local (the
artifact store is down, a dependency fails to install) keeps the previous one serving, is logged once, and
is tried again at every pass.

Polling is the protocol: one small query per pass (name and current revision of each function), and a
node that was down simply catches up at its first pass. With the cluster's NATS queue, a node that changes a
function or a trigger also publishes a notice (`JetStreamJobs.announce_change`) on which the others run a
pass at once (`poke`): a deploy reaches them in milliseconds instead of up to one interval. A lost notice
costs nothing but that interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from polyfn.loops import one_item
from polyfn.model import Revision
from polyfn.scheduler.registry import FunctionRegistry

log = logging.getLogger("polyfn.sync")


def _serves(registry: FunctionRegistry, name: str, ident: tuple[int, str, float]) -> bool:
    """Whether the registry serves the revision identified by (number, code digest, creation time)."""
    active = registry.get(name)
    return active is not None and _ident(active.revision) == ident


def _ident(rev: Revision) -> tuple[int, str, float]:
    return rev.number, rev.code_sha256, rev.created_at


class ClusterSync:
    def __init__(self, store: Any, registry: FunctionRegistry, deployer: Any, interval: float):
        self.store = store
        self.registry = registry
        self.deployer = deployer
        self.interval = interval
        self.triggers: Any = None  # triggers.manager.TriggerManager, reconciled after the functions
        self.failing: dict[str, str] = {}  # "function@revision" → why it cannot be made local (shown in health)
        self._task: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """Another node announced a change: pass now (pokes during a pass coalesce into one more pass)."""
        self._poked.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self.interval)
            self._poked.clear()
            with one_item(log, "cluster sync pass"):
                await self.sync_once()

    async def sync_once(self) -> int:
        """One pass; returns how many functions it switched or removed."""
        changed = 0
        # (FunctionInfo.updated_at is its current revision's creation time.)
        current = {info.name: (info.revision, info.code_sha256, info.updated_at)
                   for info in await self.store.list_functions()}
        for name, ident in current.items():
            if _serves(self.registry, name, ident):
                continue
            with one_item(log, "cluster sync of %s", name):  # one function's failure never stops the pass
                changed += await self._switch(name)
        for name in [n for n in self.registry.functions if n not in current]:
            with one_item(log, "cluster sync: removing %s", name):
                if await self.store.get_function(name) is not None:  # deployed here after the list was read
                    continue
                self.registry.remove(name)
                log.info("%s: removed (deleted on another node)", name)
                changed += 1
        self.failing = {k: v for k, v in self.failing.items() if k.split("@", 1)[0] in current}
        if self.triggers is not None:
            changed += await self.triggers.reconcile()
        return changed

    async def _switch(self, name: str) -> int:
        """Serve the current revision of `name` (deployed by another node): 1 when switched, else 0."""
        # A different revision, not only a newer one: a function deleted and deployed again starts over
        # at revision 1, and must not leave the old code serving here.
        rev = await self.store.get_current_revision(name)
        if rev is None:  # deleted since the list was read
            return 0
        try:
            rev = await self.deployer.localise(rev)
        except Exception as e:
            if self.failing.get(rev.key) != str(e):
                log.error("%s: deployed by another node, cannot be served here: %s", rev.key, e)
            self.failing[rev.key] = str(e)
            return 0
        self.failing.pop(rev.key, None)
        # Localising took time: swap only if this is still the current revision (a deploy may have
        # happened since, here or elsewhere; the next pass takes it) and not already served.
        now = await self.store.get_current_revision(name)
        if now is None or _ident(now) != _ident(rev) or _serves(self.registry, name, _ident(rev)):
            return 0
        self.registry.activate(rev)
        log.info("%s: now served (deployed by another node)", rev.key)
        return 1
