"""scheduler/deadlines.py: one sweep for many futures' deadlines."""

from __future__ import annotations

import asyncio
import time

from polyfn.scheduler.deadlines import SWEEP, Deadlines


async def test_expired_entries_fire_once_and_discarded_ones_never() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    fired: list[str] = []
    soon, later, kept = loop.create_future(), loop.create_future(), loop.create_future()
    now = time.perf_counter()
    deadlines.add(soon, now + 0.01, fired.append, "soon")
    deadlines.add(later, now + 60, fired.append, "later")
    deadlines.add(kept, now + 0.01, fired.append, "kept")
    deadlines.discard(kept)  # finished in time
    await asyncio.sleep(0.01 + 3 * SWEEP)
    assert fired == ["soon"]
    assert len(deadlines) == 1
    deadlines.discard(later)
    await asyncio.sleep(3 * SWEEP)
    assert fired == ["soon"]
    assert len(deadlines) == 0
    assert deadlines._handle is None  # nothing registered: no sweep keeps running


async def test_a_sweep_restarts_when_entries_come_back() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    fired: list[int] = []
    for i in range(2):
        fut = loop.create_future()
        deadlines.add(fut, time.perf_counter(), fired.append, i)
        await asyncio.sleep(3 * SWEEP)
    assert fired == [0, 1]
