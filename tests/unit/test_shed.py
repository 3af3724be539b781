"""Load shedding (scheduler/shed.py): a call is refused at once when the queue is full, or when the function
is at full capacity with a standing queue (one waiter per slot already, the oldest waiting past the target);
never while instances are starting for the waiters. Table-driven, then through a pool with a fake manager."""

from __future__ import annotations

import asyncio

import pytest

from polyfn.scheduler import shed
from polyfn.scheduler.pool import Throttled

from .test_pool import FakeManager, make_pool


@pytest.mark.parametrize(("queued", "slots", "head_wait", "saturated", "max_queue", "expected"), [
    (0, 10, 0.0, True, 1000, None),  # nobody waits
    (5, 10, 1.0, True, 1000, None),  # fewer waiters than slots: each is next on an instance
    (10, 10, 0.005, True, 1000, None),  # a standing queue, but not waiting long (a short burst)
    (40, 10, 0.0, True, 1000, shed.OVERLOADED),  # ... up to BURST waiters per slot
    (10, 10, 0.05, True, 1000, shed.OVERLOADED),  # standing, long, at full capacity
    (500, 10, 5.0, False, 1000, None),  # instances may still start: the wait is productive
    (1000, 10, 0.0, False, 1000, shed.QUEUE_FULL),
    (0, 0, 0.0, False, 0, shed.QUEUE_FULL),  # max_queue 0: never wait
])
def test_refusal(queued: int, slots: int, head_wait: float, saturated: bool, max_queue: int,
                 expected: str | None) -> None:
    assert shed.refusal(queued, slots, head_wait, saturated, max_queue, target=0.01) == expected


async def test_a_standing_queue_at_full_capacity_sheds_and_recovers() -> None:
    m = FakeManager()
    m.shedding = {}  # type: ignore[attr-defined]
    pool = make_pool(m, max_instances=2)
    running = [await pool.acquire(5) for _ in range(2)]  # full capacity: 2 instances busy
    queued = [asyncio.create_task(pool.acquire(5)) for _ in range(2)]  # one waiter per slot
    await asyncio.sleep(shed.WAIT_TARGET + 0.05)  # they have waited past the target
    with pytest.raises(Throttled) as e:
        await pool.acquire(5)
    assert e.value.reason == shed.OVERLOADED and e.value.status == 429
    assert m.shedding == {"f": pool} and pool.refusing()  # type: ignore[attr-defined]  # the HTTP protocol asks it
    for inst in running:
        pool.release(inst)  # each goes to a waiter
    got = [await t for t in queued]
    assert not pool.refusing()  # the queue is empty again: new calls come in
    assert m.shedding == {"f": pool}  # type: ignore[attr-defined]  # ... still checked, for `recover_after`
    pool.recover_after = 0.0  # (it refused no one since: calm)
    for inst in got:
        pool.release(inst)
    assert m.shedding == {}  # type: ignore[attr-defined]
    pool.release(await pool.acquire(5))


async def test_calls_let_in_count_until_they_reach_the_queue() -> None:
    """Under a flood one read brings a request on every connection: the protocol's `admits` counts the calls
    it let in until the loop runs their tasks, so BURST callers per slot come in, not every one read."""
    m = FakeManager()
    pool = make_pool(m, max_instances=2)
    running = [await pool.acquire(5) for _ in range(2)]  # full capacity
    let_in = sum(pool.admits() for _ in range(100))  # one read's worth, before any task ran
    assert let_in == shed.BURST * 2
    await asyncio.sleep(0)  # their tasks would have reached `acquire` now: the count starts again
    assert pool.admits()
    for inst in running:
        pool.release(inst)


async def test_a_flood_at_a_cold_start_queues_a_bounded_number() -> None:
    """While instances start, callers wait for them, but no more than BURST per slot to come (not max_queue)."""
    m = FakeManager()
    m.gate = asyncio.Event()
    pool = make_pool(m, max_instances=2)
    waiting = [asyncio.create_task(pool.acquire(5)) for _ in range(20)]
    await asyncio.sleep(0.05)
    refused = [t for t in waiting if t.done() and isinstance(t.exception(), Throttled)]
    assert len(refused) == 20 - shed.BURST * 2
    m.gate.set()
    for t in waiting:
        if t not in refused:
            pool.release(await t)


async def test_callers_wait_while_instances_start() -> None:
    m = FakeManager()
    m.gate = asyncio.Event()
    pool = make_pool(m, max_instances=2)
    waiting = [asyncio.create_task(pool.acquire(5)) for _ in range(5)]
    await asyncio.sleep(0.05)  # a cold start takes long: still, nobody is refused
    late = asyncio.create_task(pool.acquire(5))
    await asyncio.sleep(0)
    assert not late.done()
    m.gate.set()
    for t in [*waiting, late]:
        pool.release(await t)


class _Clock:
    """A loop's `time` and `call_later`, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, object]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, fn) -> object:  # type: ignore[no-untyped-def]
        self.timers.append((self.now + delay, fn))
        return fn  # (a handle: anything but None)

    def run_until(self, t: float) -> None:
        while self.timers and min(self.timers, key=lambda x: x[0])[0] <= t:
            due, fn = min(self.timers, key=lambda x: x[0])
            self.timers.remove((due, fn))
            self.now = due
            fn()  # type: ignore[operator]
        self.now = t


class _Held:
    def __init__(self, answered: list[int], i: int) -> None:
        self.answered, self.i = answered, i

    def _answer_shed(self) -> None:
        self.answered.append(self.i)


def test_the_tarpit_answers_at_a_rate_tied_to_the_served_requests() -> None:
    """Held 429s leave after SHED_PAUSE, in order, at RATIO per request served meanwhile plus FLOOR a second,
    and none later than MAX_HOLD: however many connections a flood holds, refusals cost a bounded share."""
    from polyfn.gateway.http import SHED_PAUSE, Tarpit

    clock, served, answered = _Clock(), [0], []  # type: ignore[var-annotated]
    pit = Tarpit(clock, lambda: served[0])  # type: ignore[arg-type]
    for i in range(1000):
        pit.hold(_Held(answered, i))
    clock.run_until(SHED_PAUSE - 0.01)
    assert answered == []  # held a second at least
    clock.run_until(SHED_PAUSE)  # nothing served: the floor alone
    assert answered == list(range(int(Tarpit.FLOOR * SHED_PAUSE)))
    served[0] += 400  # the node served 400 requests: 100 more answers may leave
    clock.run_until(SHED_PAUSE + Tarpit.TICK)
    assert len(answered) == int(Tarpit.FLOOR * (SHED_PAUSE + Tarpit.TICK)) + 400 * Tarpit.RATIO
    clock.run_until(Tarpit.MAX_HOLD)  # the rest: none is held longer than MAX_HOLD
    assert answered == list(range(1000)) and len(pit) == 0
