"""The activation recorder's retention by size: the store stays under `store_max` (the oldest activations go,
their logs with them) and the freed space goes back to the file system, without holding up storing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from polyfn.model import Activation, LogLine
from polyfn.observe.recorder import ActivationRecorder
from polyfn.store import Store

MAX = 16 * 1024 * 1024


async def free_pages(store: Store) -> int:
    return await store._sqlite_writer().call(lambda c: c.execute("PRAGMA freelist_count").fetchone()[0])


async def test_the_recorder_keeps_the_store_under_its_size_and_returns_the_space(tmp_path: Path) -> None:
    path = tmp_path / "polyfn.db"
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    rec = ActivationRecorder(store, interval=0.01, store_max=MAX)
    try:
        for i in range(300):  # 300 × 100 KB of logs
            rec.record(Activation(id=f"a{i:04d}", function="loud", revision=1, trigger="http", start=float(i),
                                  logs=[LogLine(float(i), "stdout", "x" * 100_000)]))
        await rec.flush()
        peak = await store.used_bytes() or 0
        assert peak > 1.5 * MAX
        task = asyncio.create_task(rec._retain_loop(size_every=0.01, prune_every=3600))
        try:
            deadline = time.monotonic() + 30
            while (await store.used_bytes() or 0) > MAX or await free_pages(store) > 1000:  # (pruned, reclaimed)
                assert time.monotonic() < deadline, (await store.used_bytes(), await free_pages(store))
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
        assert (await store.used_bytes() or 0) <= MAX
        left = await store.list_activations(function="loud", limit=1000)
        assert 0 < len(left) < 300 and min(a.start for a in left) == 300 - len(left)  # the oldest went
    finally:
        await rec.stop()
        await store.close()
    assert path.stat().st_size < peak * 0.6, (peak, path.stat().st_size)  # the space went back


class SlowStore:
    """A store whose writes wait on `gate` (a write in progress when its flush is cancelled)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.rows: dict[str, Activation] = {}

    async def add_activations(self, acts: list[Activation]) -> None:
        await self.gate.wait()
        self.rows.update((a.id, a) for a in acts)


async def test_a_flush_cancelled_mid_write_keeps_its_records_for_the_next() -> None:
    """A node stopping cancels the async queue's completion task while it flushes: the records that write held
    must still be stored by the next flush (which the queue awaits before it acknowledges the jobs)."""
    store = SlowStore()
    rec = ActivationRecorder(store)  # (not started: no background writer)
    rec.record(Activation(id="job-1", function="f", revision=1, trigger="invoke", start=1.0))
    first = asyncio.create_task(rec.flush())
    await asyncio.sleep(0.05)  # the write is under way
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert store.rows == {}
    store.gate.set()
    await rec.flush()
    assert list(store.rows) == ["job-1"]
