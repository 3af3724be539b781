"""quotas.py's async backlog admission (`QuotaGuard.admit_async`): the backlog is read at most once a second per
namespace while jobs are admitted; a refusal is given only on a count just read."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from polyfn.queue.dispatcher import Rejected
from polyfn.quotas import BACKLOG_FRESH, QuotaGuard


class Backlog:
    def __init__(self, n: int) -> None:
        self.n = n
        self.reads = 0

    async def __call__(self, namespace: str) -> int:
        self.reads += 1
        return self.n


def guard(backlog: Backlog, limit: int | None, clock: list[float]) -> QuotaGuard:
    return QuotaGuard(lambda ns: SimpleNamespace(async_backlog=limit), lambda: [], None, None, backlog,
                      clock=lambda: clock[0])


async def test_a_read_backlog_admits_for_a_second_then_is_read_again() -> None:
    backlog, clock = Backlog(10), [100.0]
    g = guard(backlog, 1000, clock)
    for _ in range(200):
        await g.admit_async("team~f")
    assert backlog.reads == 1  # (was one read per accepted job)
    clock[0] += BACKLOG_FRESH
    await g.admit_async("team~f")
    assert backlog.reads == 2


async def test_near_the_limit_each_job_reads_and_a_refusal_is_on_a_fresh_count() -> None:
    backlog, clock = Backlog(2), [100.0]
    g = guard(backlog, 4, clock)
    await g.admit_async("team~f")  # read: 2 (+1)
    await g.admit_async("team~f")  # counted: 4
    assert backlog.reads == 1
    backlog.n = 1  # jobs finished meanwhile: the count read now admits
    await g.admit_async("team~f")  # read: 1 (+1)
    await g.admit_async("team~f")  # counted: 3
    await g.admit_async("team~f")  # counted: 4
    assert backlog.reads == 2
    backlog.n = 4
    with pytest.raises(Rejected, match="async_backlog quota: 4 used of 4"):
        await g.admit_async("team~f")
    assert backlog.reads == 3


async def test_no_limit_reads_nothing() -> None:
    backlog, clock = Backlog(10**6), [100.0]
    await guard(backlog, None, clock).admit_async("team~f")
    assert backlog.reads == 0
