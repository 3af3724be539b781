"""The activation recorder's retention by size: the store stays under `store_max` (the oldest activations go,
their logs with them) and the freed space goes back to the file system, without holding up storing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

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


class Gauge:
    """A sandbox's memory gauge (sandbox.cgroups.MemoryGauge) that counts its reads."""

    def __init__(self, mb: float) -> None:
        self.mb = mb
        self.reads = 0

    def peak_mb(self) -> float:
        self.reads += 1
        return self.mb


class Rows:
    def __init__(self) -> None:
        self.rows: dict[str, Activation] = {}

    async def add_activations(self, acts: list[Activation]) -> None:
        self.rows.update((a.id, msgspec.structs.replace(a)) for a in acts)  # (a copy, as a database keeps it)


async def test_the_memory_peak_is_read_once_per_instance_as_its_batch_is_stored() -> None:
    store = Rows()
    rec = ActivationRecorder(store)
    one, two = Gauge(12.0), Gauge(40.0)
    for i, gauge in enumerate((one, two, one, one, None)):
        act = Activation(id=f"a{i}", function="f", revision=1, trigger="http", start=float(i))
        if gauge is not None:
            rec.peak_of(act, gauge)
        rec.record(act)
    assert (one.reads, two.reads) == (0, 0)  # nothing read on the call's path
    one.mb = 20.0  # (the sandbox's peak grew before the batch was stored: the peak so far is what is stored)
    await rec.flush()
    assert [store.rows[f"a{i}"].max_memory_mb for i in range(5)] == [20.0, 40.0, 20.0, 20.0, 0.0]
    assert (one.reads, two.reads) == (1, 1)
    act = Activation(id="a5", function="f", revision=1, trigger="http", start=5.0)
    rec.peak_of(act, one)
    rec.record(act)
    await rec.flush()  # the next batch reads again
    assert store.rows["a5"].max_memory_mb == 20.0 and one.reads == 2


def test_a_closed_gauge_answers_its_last_peak(tmp_path: Path) -> None:
    from polyfn.sandbox.cgroups import MemoryGauge

    (tmp_path / "memory.max_usage_in_bytes").write_text(str(30 * 1_048_576))
    (tmp_path / "memory.oom_control").write_text("oom_kill 0\n")
    gauge = MemoryGauge(str(tmp_path), 1)
    assert gauge.peak_mb() == 30.0
    gauge.close()  # the instance ended: its calls are stored after it
    (tmp_path / "memory.max_usage_in_bytes").write_text(str(99 * 1_048_576))
    assert gauge.peak_mb() == 30.0
