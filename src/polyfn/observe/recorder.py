"""Activation records leave the hot path through an in-memory buffer flushed in batches.

At thousands of invocations per second, one database write per invocation would dominate the cost of an
invocation. Instead `record()` appends to a list and a background task writes the batch (one executemany)
every `interval` seconds or when `batch` records are waiting. Readers (`GET /v1/activations/...`) call
`flush()` first so they never miss a just-finished activation. Live log followers are fed directly from
`record()`. A record's memory peak (`max_memory_mb`) is read as its batch is stored (`peak_of`): one read of
each instance's cgroup per batch, not one per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from polyfn.loops import one_item
from polyfn.model import Activation

log = logging.getLogger("polyfn.activations")

SIZE_CHECK_S = 5.0  # seconds between checks of the activation store's size on disk
PRUNE_S = 60.0  # seconds between retention passes by count and age


class ActivationRecorder:
    def __init__(self, store: Any, interval: float = 0.2, batch: int = 1000,
                 retention_count: int = 100_000, retention_age: float = 7 * 86400.0, store_max: int = 0):
        self.store = store
        self.interval = interval
        self.batch = batch
        self.retention_count = retention_count
        self.retention_age = retention_age
        self.store_max = store_max  # bytes the activation store may use on disk (0: unbounded)
        self._retain_task: asyncio.Task[None] | None = None
        self._buf: list[Activation] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()
        self._followers: dict[str, set[Callable[[Activation], None]]] = {}
        self._peaks: list[tuple[Activation, Any]] = []  # records whose memory peak is read as they are stored
        self.recorded = 0  # records made so far
        self._stored = 0  # of which stored (the buffer is FIFO: the oldest `_stored` ones)
        self.exporters: list[Any] = []  # objects with submit(list[Activation]), fed after each stored batch
        self.meter: Any = None  # observe/usage.UsageMeter: sums each stored batch, written at the end of a flush

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        self._retain_task = asyncio.create_task(self._retain_loop())

    def record(self, act: Activation) -> None:
        self._buf.append(act)
        self.recorded += 1
        if len(self._buf) >= self.batch:
            self._wake.set()
        followers = self._followers.get(act.function)
        if followers and act.logs:
            for cb in list(followers):
                with one_item(log, "a log follower of %s", act.function):  # never fails the invocation
                    cb(act)

    def peak_of(self, act: Activation, gauge: Any) -> None:
        """`act`'s `max_memory_mb` is the peak of its instance's sandbox (`gauge`: sandbox.cgroups.MemoryGauge), read
        when its batch is stored (`_read_peaks`), not as it ended: a `pread` of the cgroup's file per call was one of
        the three system calls a call to a concurrency-1 instance cost the event loop. The peak is the sandbox's
        since it started, so the value is what it held at most by the time the record is stored (at most the
        recorder's `interval` after the call, or the flush of a reader such as the Lambda face's log tail): a call
        followed at once, on the same instance, by one that needed more reads that one's peak."""
        self._peaks.append((act, gauge))

    def _read_peaks(self) -> None:
        """Fill `max_memory_mb` of the records waiting for it: one read per gauge (an instance) however many
        calls it served since the last batch."""
        pending, self._peaks = self._peaks, []
        read: dict[Any, float] = {}
        for act, gauge in pending:
            mb = read.get(gauge)
            if mb is None:
                mb = read[gauge] = gauge.peak_mb()
            act.max_memory_mb = mb

    def follow(self, function: str, callback: Callable[[Activation], None]) -> Callable[[], None]:
        """Call `callback` with every new activation of `function` that has log lines; returns unsubscribe."""
        self._followers.setdefault(function, set()).add(callback)

        def unsubscribe() -> None:
            subs = self._followers.get(function)
            if subs is not None:
                subs.discard(callback)
                if not subs:
                    self._followers.pop(function, None)

        return unsubscribe

    async def flush(self, background: bool = False) -> None:
        """Return once every record made before the call is stored (and, unless `background`, its metered usage:
        observe/usage.py). A barrier shared by concurrent callers:
        whoever holds the lock writes everything buffered, and a caller whose records that write covered
        returns without writing (so N jobs finishing together cost one write, not N)."""
        target = self.recorded
        async with self._lock:
            while self._stored < target and self._buf:
                batch, self._buf = self._buf[: self.batch], self._buf[self.batch :]
                stored = batch
                if self._peaks:
                    self._read_peaks()
                try:
                    await self.store.add_activations(batch)
                except asyncio.CancelledError:
                    # A write cancelled midway (a node stopping cancels its completion task) stored nothing: its
                    # transaction rolled back. The batch goes back first in line, or the next flush would find
                    # an empty buffer and return as if these records were stored (an async job was acknowledged
                    # with its record lost). Cancelled after the commit, the write happens twice: an upsert by id.
                    self._buf[:0] = batch
                    raise
                except Exception:
                    log.exception("could not store %d activation records; retrying", len(batch))
                    kept = await self._store_singly(batch)
                    if kept is None:
                        self._buf[:0] = batch
                        raise
                    stored = kept
                self._stored += len(batch)
                if self.meter is not None:
                    self.meter.add(stored)  # (what was stored: a dropped record is not metered either)
                for exporter in self.exporters:
                    exporter.submit(batch)
            if self.meter is not None and self.meter.pending:
                with one_item(log, "usage: storing"):  # (a failure keeps the sums for the next flush)
                    await self.meter.flush(background)

    async def _store_singly(self, batch: list[Activation]) -> list[Activation] | None:
        """After a failed batch: store its records one by one. When some are stored, the others are poison
        (a record the database refuses every time) and are dropped, logged, so they cannot block every
        later record; when none is stored the failure is the database's (full disk, lock): None, and
        the whole batch is kept for the next try. Else the records stored."""
        if len(batch) < 2:
            return None
        refused = []
        stored = []
        for act in batch:
            try:
                await self.store.add_activations([act])
                stored.append(act)
            except Exception as e:
                refused.append((act, e))
        if not stored:
            return None
        for act, e in refused:
            log.error("activation %s of %s dropped: the database refuses it (%s)", act.id, act.function, e)
        return stored

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
            with one_item(log, "activation records: storing") as guard:
                await self.flush(background=True)
            if guard.failed:
                await asyncio.sleep(1.0)

    async def _retain_loop(self, size_every: float = SIZE_CHECK_S, prune_every: float = PRUNE_S) -> None:
        """Retention, apart from storing (a large delete must not hold up the records behind it): every
        `prune_every` s by count and age; every `size_every` s by the store's size on disk (`store_max`: the
        oldest activations go, their logs with them); then the freed space goes back to the file system."""
        last_prune = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(size_every)
            deleted = 0
            if self.store_max:
                with one_item(log, "activation records: retention by size"):
                    deleted = await self.store.prune_to_size(self.store_max)
                    if deleted:
                        log.warning("the activation store was over %d bytes (POLYFN_LOG_STORE_MAX): the %d oldest "
                                    "activations and their logs were removed", self.store_max, deleted)
            if time.monotonic() - last_prune >= prune_every:
                last_prune = time.monotonic()
                with one_item(log, "activation records: retention"):
                    deleted += await self.store.prune(self.retention_count, self.retention_age, time.time())
                if self.meter is not None:
                    with one_item(log, "usage: retention"):
                        await self.meter.prune()
                deleted = deleted or 1  # (and return what other deletes freed, at least once a period)
            if deleted:
                with one_item(log, "activation records: returning free space"):
                    await self.store.reclaim()

    async def stop(self) -> None:
        """Let the writer finish the batch it is writing (cancelling it mid-write lost that batch), then
        write whatever is left."""
        self._stopping = True
        self._wake.set()
        if self._retain_task is not None:
            self._retain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retain_task
        if self._task:
            try:
                await asyncio.wait_for(self._task, 10)
            except (asyncio.CancelledError, Exception):
                pass
        await self.flush()
