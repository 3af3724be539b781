"""Deleting a function, the same for every API (`DELETE /v1/functions/{name}` and the vendors'): it is forgotten,
its pool drained, what points at it dropped (storage notifications, triggers, its jobs in the cluster's queue
stream: dead-lettered), and once the pool has drained its metric series and code directories are removed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from polyfn.deploy import archive
from polyfn.loops import one_item
from polyfn.model import Revision
from polyfn.scheduler.pool import Pool

log = logging.getLogger(__name__)


class FunctionRemoval:
    def __init__(self, code_dir: Path, store: Any, registry: Any, manager: Any, metrics: Any, storage: Any,
                 triggers: Any, queue: Any, recorder: Any = None):
        self.code_dir = code_dir
        self.store, self.registry, self.manager, self.metrics = store, registry, manager, metrics
        self.storage, self.triggers, self.queue = storage, triggers, queue
        self.recorder = recorder  # observe/recorder.py: its buffered records are metered before the series go
        self._cleanup: set[asyncio.Task[None]] = set()

    async def delete(self, name: str) -> bool:
        """Delete function `name`; False when it does not exist."""
        deleted = await self.store.delete_function(name)
        if deleted is None:
            return False
        pool = self.registry.remove(name)
        self.cleanup_later(name, deleted, pool)
        await self.storage.forget_function(name)
        await self.triggers.delete_for(name)  # a deleted function's triggers go with it
        await self.queue.function_deleted(name)
        return True

    def cleanup_later(self, name: str, revisions: list[Revision], pool: Pool | None) -> None:
        """After a delete: once the old pool has drained (its last instance stops are counted), drop the function's
        metric series and remove its code directories."""

        async def cleanup() -> None:
            if pool is not None:
                while pool in self.manager.pools:
                    await asyncio.sleep(0.05)
                for _ in range(600):  # its killed instances' exits (counted as stops), at most 30 s
                    if not pool.instances:
                        break
                    await asyncio.sleep(0.05)
            if self.registry.get(name) is None and self.recorder is not None:
                # its last activation records, still buffered, are stored and metered first: a batch stored
                # after `forget` would bring its usage series back (billed GB-s, request and response bytes)
                with one_item(log, "storing %s's last activation records", name):
                    await self.recorder.flush(background=True)
            if self.registry.get(name) is None:  # (not deployed again meanwhile) its metric series go too
                self.metrics.forget(name)
            for rev in revisions:
                archive.remove_tree(Path(rev.code_dir))
            with contextlib.suppress(OSError):
                (self.code_dir / name).rmdir()

        t = asyncio.ensure_future(cleanup())
        self._cleanup.add(t)
        t.add_done_callback(self._cleanup.discard)

    async def settle(self, timeout: float) -> None:
        """Wait (bounded) for the clean-ups under way (a node stopping)."""
        if self._cleanup:
            await asyncio.wait(list(self._cleanup), timeout=timeout)
