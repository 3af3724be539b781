"""The pool's scheduling logic against a fake manager (no processes): hand-out order, queueing, scale-up
bounds, init-error back-off, keep-alive reaping with an injected clock."""

from __future__ import annotations

import asyncio
import itertools
import time
from types import SimpleNamespace

import pytest

from polyfn.instances.instance import Instance, State
from polyfn.model import FunctionSpec, Revision
from polyfn.scheduler.pool import Pool, StartFailed, Throttled


class FakeManager:
    """Starts fake instances (the pool's whole `Starter` interface, with room for every start); `gate` lets a
    test decide when starts complete."""

    memory_budget_mb = 1 << 20
    metrics = None

    def __init__(self, fail: dict | None = None):
        self.started = 0
        self.fail = fail
        self.gate: asyncio.Event | None = None
        self.shedding: dict[str, Pool] = {}

    def reserve(self, pool: Pool) -> bool:
        return True

    def start_now(self, pool: Pool) -> Instance | None:
        return None

    async def start_instance(self, pool: Pool) -> Instance:
        self.started += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise StartFailed(self.fail)
        inst = Instance(f"i{self.started}", pool.revision.key, pool.on_lost)
        inst.state = State.READY
        return inst


def make_pool(manager: FakeManager, max_queue: int = 100, keepalive: float = 600, **spec) -> Pool:  # type: ignore[no-untyped-def]
    rev = Revision(function="f", number=1, spec=FunctionSpec(name="f", **spec), code_sha256="x", code_dir="/nonexistent")
    pool = Pool(rev, manager, max_queue, keepalive)  # type: ignore[arg-type]
    pool.ensure_min()  # as FunctionRegistry.new_pool does
    return pool


async def test_cold_then_warm_reuses_the_instance() -> None:
    m = FakeManager()
    pool = make_pool(m)
    assert pool.try_acquire() is None
    inst = await pool.acquire(1)
    pool.release(inst)
    assert pool.try_acquire() is inst
    pool.release(inst)
    assert m.started == 1


async def test_burst_scales_to_max_instances_and_queues() -> None:
    m = FakeManager()
    m.gate = asyncio.Event()
    pool = make_pool(m, max_instances=3)
    tasks = [asyncio.create_task(pool.acquire(5)) for _ in range(10)]
    await asyncio.sleep(0.01)
    assert pool.starting == 3 and len(pool.waiters) == 10  # never above max_instances
    m.gate.set()
    await asyncio.sleep(0.01)
    got = [t for t in tasks if t.done()]
    assert len(got) == 3  # one caller per ready instance (concurrency 1)
    for t in got:
        pool.release(t.result())
    await asyncio.sleep(0.01)
    assert sum(t.done() for t in tasks) == 6  # released instances go straight to waiting callers
    for t in tasks:
        if t.done():
            pool.release(t.result())
    await asyncio.gather(*tasks)
    assert m.started == 3


async def test_concurrency_shares_one_instance() -> None:
    m = FakeManager()
    pool = make_pool(m, concurrency=4)
    insts = await asyncio.gather(*(pool.acquire(1) for _ in range(4)))
    assert len({i.id for i in insts}) == 1 and insts[0].inflight == 4
    assert m.started == 1


async def test_queue_overflow_throttles() -> None:
    m = FakeManager()
    m.gate = asyncio.Event()
    pool = make_pool(m, max_queue=2, max_instances=1)
    waiting = [asyncio.create_task(pool.acquire(5)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Throttled):
        await pool.acquire(5)
    m.gate.set()
    first = await waiting[0]
    pool.release(first)
    pool.release(await waiting[1])


async def test_wait_longer_than_timeout_is_throttled() -> None:
    m = FakeManager()
    m.gate = asyncio.Event()
    pool = make_pool(m)
    with pytest.raises(Throttled):
        await pool.acquire(0.05)
    assert not pool.waiters


async def test_init_failure_reaches_waiters_and_backs_off() -> None:
    err = {"errorType": "Runtime.ImportModuleError", "errorMessage": "boom", "stackTrace": []}
    m = FakeManager(fail=err)
    pool = make_pool(m)
    results = await asyncio.gather(*(pool.acquire(1) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, StartFailed) and r.error == err for r in results)
    assert m.started == 3  # one start per waiting caller, each failing the same way
    with pytest.raises(StartFailed):
        await pool.acquire(1)
    assert m.started == 3  # within the back-off window: no new attempt
    pool._init_error_until = 0  # the window has passed
    m.fail = None
    inst = await pool.acquire(1)
    assert inst.state is State.READY and m.started == 4


async def test_keepalive_reaps_idle_but_keeps_min_instances() -> None:
    m = FakeManager()
    pool = make_pool(m, keepalive=10, min_instances=1)
    await asyncio.sleep(0.01)  # min_instances pre-warms one
    a = await pool.acquire(1)
    b = await pool.acquire(1)
    assert len(pool.instances) == 2
    pool.release(a)
    pool.release(b)
    now = max(a.last_used, b.last_used)
    assert pool.reap(now + 5) == 0  # not idle long enough
    assert pool.reap(now + 11) == 1  # one reaped, one kept for min_instances
    assert pool.reap(now + 100) == 0


async def test_lost_instance_is_replaced_for_min_instances() -> None:
    m = FakeManager()
    pool = make_pool(m, min_instances=1)
    await asyncio.sleep(0.01)
    inst = pool.instances[0]
    inst.state = State.DEAD
    pool.on_lost(inst)
    await asyncio.sleep(0.01)
    assert len(pool.instances) == 1 and pool.instances[0] is not inst


# --- autoscaler runner, keep-alive policies, memory budget, prewarm (fake clock: `now` passed in) --------


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_autoscaler_prestarts_up_to_desired_on_a_burst() -> None:
    m = FakeManager()
    m.gate = asyncio.Event()
    pool = make_pool(m, max_instances=50)
    tasks = [asyncio.create_task(pool.acquire(5)) for _ in range(20)]
    await settle()
    assert pool.starting == 20  # reactive scale-up on queueing
    d = pool.autoscale(1000.0)
    assert d.desired == 20 and pool.starting == 20  # the autoscaler agrees and starts no duplicates
    m.gate.set()
    insts = await asyncio.gather(*tasks)
    assert m.started == 20 and pool.busy == 20
    for i in insts:
        pool.release(i)
    assert pool.busy == 0


async def test_autoscaler_panics_on_a_spike_and_starts_no_duplicates() -> None:
    m = FakeManager()
    pool = make_pool(m, max_instances=50, concurrency=2)
    held = [await pool.acquire(1) for _ in range(2)]  # one instance, full
    assert m.started == 1
    pool.autoscale(1000.0)
    m.gate = asyncio.Event()
    more = [asyncio.create_task(pool.acquire(5)) for _ in range(8)]  # spike: 10 in flight or queued
    await settle()
    assert pool.starting == 4  # reactive: ceil(8 queued / concurrency 2)
    d = pool.autoscale(1002.0)
    assert d.panic and d.desired == 5  # ≥ 2× the ready instance: panic; 10 / 2 per instance
    assert pool.starting == 4  # 1 ready + 4 starting = desired: nothing more
    m.gate.set()
    got = await asyncio.gather(*more)
    for i in held + got:
        pool.release(i)
    assert m.started == 5


async def test_autoscaler_scales_down_gradually_through_the_reaper() -> None:
    m = FakeManager()
    pool = make_pool(m, max_instances=50, keepalive=10_000)
    insts = await asyncio.gather(*(pool.acquire(1) for _ in range(16)))
    t = 1000.0
    for k in range(30):  # 60 s of 16 busy
        pool.autoscale(t + 2 * k)
    for i in insts:
        pool.release(i)
    for i in pool.instances:
        i.last_used = t  # idle since t (fake clock)
    counts = []
    for k in range(30, 150):
        now = t + 2 * k
        pool.autoscale(now)
        pool.reap(now)
        pool.instances = [i for i in pool.instances if i.state is State.READY]  # the fake processes exit
        counts.append(len(pool.instances))
    assert counts[0] == 16  # the stable window still remembers the load
    assert all(b >= a // 2 for a, b in itertools.pairwise(counts))  # never more than halving
    assert counts[-1] == 1  # down to the one instance the keep-alive keeps warm


async def test_autoscaler_respects_init_backoff() -> None:
    err = {"errorType": "Runtime.ImportModuleError", "errorMessage": "boom", "stackTrace": []}
    m = FakeManager(fail=err)
    pool = make_pool(m, min_instances=0)
    with pytest.raises(StartFailed):
        await pool.acquire(1)
    started = m.started
    import time as _time
    now = _time.monotonic()
    for k in range(10):  # the failed burst is in the autoscaler's window, but the back-off holds it
        pool.scaler_state.samples.append((now - 1, 5))
        pool.autoscale(now + k * 0.01)
    await settle()
    assert m.started == started


async def test_hybrid_policy_unloads_after_use_and_prewarms() -> None:
    from polyfn.scheduler.keepalive import HybridPolicy

    m = FakeManager()
    pool = make_pool(m, keepalive_policy="hybrid")
    assert isinstance(pool.policy, HybridPolicy)
    for _ in range(20):  # a function called every ~10 minutes: a representative histogram
        pool.policy.observe_idle(600.0)
    w = pool.policy.window()
    assert w.prewarm > 0
    inst = await pool.acquire(1)
    pool.release(inst)
    end = pool.last_end
    assert pool.reap(end + 1) == 1  # unloaded right after use
    pool.instances.clear()
    pool.idle.clear()
    pool.reap(end + w.prewarm / 2)
    assert pool.prewarm_at == end + w.prewarm and m.started == 1
    pool.reap(end + w.prewarm + 1)  # due: one pre-warmed instance
    await settle()
    assert m.started == 2 and len(pool.instances) == 1 and pool.instances[0].cold_claimed
    assert pool.reap(end + w.prewarm + 2) == 0  # kept during the window
    assert pool.reap(end + w.prewarm + w.keepalive + 1) == 1  # and unloaded after it


async def test_fixed_policy_is_the_default() -> None:
    pool = make_pool(FakeManager())
    assert pool.policy.name == "fixed" and pool.policy.window().keepalive == 600


class BudgetManager(FakeManager):
    """A fake manager with the real memory budget (instances/budget.py)."""

    def __init__(self, budget: int, share: float = 100.0):
        from polyfn.instances.budget import MemoryBudget

        super().__init__()
        self.pools: set[Pool] = set()
        self.memory_budget_mb = budget
        # (no function zygotes here: tests/e2e/test_function_zygote.py has their eviction)
        self.budget = MemoryBudget(SimpleNamespace(memory_budget_mb=budget, function_memory_share=share),  # type: ignore[arg-type]
                                   self.pools)

    def reserved_mb(self) -> int:
        return self.budget.reserved_mb()

    def reserve(self, pool: Pool) -> bool:
        return self.budget.reserve(pool)


def budget_pool(m: BudgetManager, name: str, **spec) -> Pool:  # type: ignore[no-untyped-def]
    rev = Revision(function=name, number=1, spec=FunctionSpec(name=name, **spec), code_sha256="x", code_dir="/x")
    pool = Pool(rev, m, 100, 600)  # type: ignore[arg-type]
    m.pools.add(pool)
    return pool


async def test_memory_budget_evicts_idle_instances_of_other_functions_lru() -> None:
    m = BudgetManager(budget=1024)
    a = budget_pool(m, "a", memory=256)
    b = budget_pool(m, "b", memory=256)
    c = budget_pool(m, "c", memory=512)
    for p in (a, b):
        for i in await asyncio.gather(*(p.acquire(1) for _ in range(2))):
            p.release(i)
    assert m.reserved_mb() == 1024
    a.instances[0].last_used -= 100  # a's first instance is the least recently used
    oldest = a.instances[0]
    b.instances[0].last_used -= 50
    inst = await c.acquire(1)  # needs 512: evicts the two least recently used idle instances
    assert oldest.state is State.STOPPING and b.instances[0].state is State.STOPPING
    assert a.evictions == 1 and b.evictions == 1 and a.stats()["evictions"] == 1
    c.release(inst)


async def test_memory_budget_refuses_when_nothing_is_idle() -> None:
    from polyfn.scheduler.refusals import NoCapacity

    m = BudgetManager(budget=512)
    a = budget_pool(m, "a", memory=512)
    b = budget_pool(m, "b", memory=256)
    held = await a.acquire(1)  # busy: cannot be evicted
    with pytest.raises(NoCapacity) as e:
        await b.acquire(1)
    assert e.value.status == 503 and e.value.code == "node_memory_exhausted" and "512 MB" in str(e.value)
    assert not b.waiters and b.starting == 0
    a.release(held)
    big = budget_pool(m, "big", memory=1024)  # larger than the whole budget: never fits
    with pytest.raises(NoCapacity):
        await big.acquire(1)


async def test_one_function_reserves_at_most_its_share_of_the_budget() -> None:
    """The default cap on a function's instances: half the budget here, whatever its max_instances; the
    other functions keep their room, and nothing of theirs is evicted for it."""
    m = BudgetManager(budget=2048, share=50)
    greedy = budget_pool(m, "greedy", memory=256, max_instances=10)
    other = budget_pool(m, "other", memory=256)
    kept = await other.acquire(1)
    other.release(kept)
    held = await asyncio.gather(*(greedy.acquire(1) for _ in range(4)))  # 4 × 256 = 1024: the share
    late = asyncio.create_task(greedy.acquire(1))
    await settle()
    assert len(greedy.instances) == 4 and greedy.starting == 0 and not late.done()  # waits for one of the four
    assert kept.state is State.READY and other.evictions == 0
    greedy.release(held[0])
    greedy.release(await late)
    for inst in held[1:]:
        greedy.release(inst)


async def test_prewarm_starts_n_bounded_by_max_instances() -> None:
    m = FakeManager()
    pool = make_pool(m, max_instances=3)
    assert pool.prewarm(5) == 3
    await settle()
    assert len(pool.instances) == 3 and all(i.cold_claimed for i in pool.instances)
    assert pool.prewarm(2) == 0  # already 3 live


async def test_pool_records_idle_times_into_the_policy() -> None:
    m = FakeManager()
    pool = make_pool(m, keepalive_policy="hybrid")
    inst = await pool.acquire(1)
    pool.release(inst)
    assert pool.policy.samples == 0  # the first use has no idle time before it
    pool.last_end -= 120  # two minutes idle (fake clock)
    inst = await pool.acquire(1)
    pool.release(inst)
    assert pool.policy.samples == 1 and pool.policy.bins[2] == 1  # in the 2-minute bin
    a = await pool.acquire(1)
    b = await pool.acquire(1)  # overlapping: the pool never went idle between them
    pool.release(a)
    pool.release(b)
    assert pool.policy.samples == 2 and pool.busy == 0


async def test_autoscaler_does_not_restart_what_the_keepalive_policy_unloaded() -> None:
    m = FakeManager()
    pool = make_pool(m, keepalive_policy="hybrid")
    for _ in range(20):
        pool.policy.observe_idle(600.0)  # representative: unload after use
    inst = await pool.acquire(1)
    pool.autoscale(1000.0)
    pool.autoscale(1002.0)  # in-flight 1 in the window: desired 1
    pool.release(inst)
    assert pool.reap(pool.last_end + 1) == 1
    pool.instances.clear()
    d = pool.autoscale(1004.0)
    await settle()
    assert d.desired >= 1 and m.started == 1  # the average still says 1, but nothing is running: no restart


async def test_min_instances_refused_by_the_budget_are_started_when_room_appears() -> None:
    m = BudgetManager(budget=256)
    busy = budget_pool(m, "busy", memory=256)
    held = await busy.acquire(1)
    warm = budget_pool(m, "warm", memory=256, min_instances=1)
    warm.ensure_min()  # no room: nothing starts (and nothing fails)
    await settle()
    assert not warm.instances and warm.starting == 0
    busy.release(held)
    busy.instances[0].close()  # the busy function's instance goes away (keep-alive, say)
    busy.instances.clear()
    warm.autoscale(1000.0)
    await settle()
    assert len(warm.instances) == 1


async def test_a_start_that_loses_its_process_is_tried_once_more() -> None:
    """A process that vanishes before it is ready (no init error of the function's) is the platform's
    failure: a second start is tried before any caller sees an error; a second loss is reported."""
    from polyfn.instances.instance import InstanceGone

    class Flaky(FakeManager):
        def __init__(self, losses: int):
            super().__init__()
            self.losses = losses

        async def start_instance(self, pool: Pool) -> Instance:
            if self.losses:
                self.losses -= 1
                self.started += 1
                raise InstanceGone("connection closed")
            return await super().start_instance(pool)

    m = Flaky(losses=1)
    pool = make_pool(m)
    inst = await pool.acquire(5)
    assert inst.state is State.READY and m.started == 2
    pool.release(inst)

    m2 = Flaky(losses=2)
    pool2 = make_pool(m2)
    with pytest.raises(StartFailed, match="connection closed"):
        await pool2.acquire(5)
    assert m2.started == 2


async def test_an_unexpected_error_while_starting_fails_the_waiters_at_once() -> None:
    """A bug in a start (any exception) must reach the callers waiting for that instance, not leave them
    queued until their wait times out."""

    class Broken(FakeManager):
        async def start_instance(self, pool: Pool) -> Instance:
            raise NameError("oops")

    pool = make_pool(Broken())
    with pytest.raises(StartFailed, match="internal error: NameError"):
        await asyncio.wait_for(pool.acquire(30), 2)


async def test_a_start_that_needs_no_wait_hands_its_instance_without_queueing_the_caller() -> None:
    """A caller with nobody ahead of it whose start needs no wait (a function zygote's offered child, made in the
    caller's turn: `Starter.start_now`) gets the new instance as its cold start without a place in the queue: no
    deadline sweep is left behind for it, no start task. A second caller meanwhile queues and starts as before."""
    m = FakeManager()
    m.gate = asyncio.Event()
    offered = [Instance("z1", "f:1", lambda i: None)]

    def start_now(pool: Pool) -> Instance | None:
        if not offered:
            return None
        inst = offered.pop()
        inst.state = State.READY
        return inst

    m.start_now = start_now  # type: ignore[method-assign]
    pool = make_pool(m)
    inst = await pool.acquire(1)
    assert inst.id == "z1" and not inst.cold_claimed and pool.stats()["busy"] == 1
    assert len(pool._deadlines) == 0 and pool._deadlines._handle is None  # nothing to sweep: it never waited
    assert m.started == 0 and not pool.waiters
    second = asyncio.ensure_future(pool.acquire(1))  # no offer left: it queues for a start task
    await asyncio.sleep(0)
    assert len(pool.waiters) == 1 and pool.starting == 1
    m.gate.set()
    assert (await second).id == "i1"


def test_the_memory_budget_reads_the_machines_memory_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every start asks for the memory budget: the machine's RAM (`os.sysconf`, a `sysinfo` system call) is read
    once, not at every start."""
    import os

    from polyfn.config import Settings

    settings = Settings()
    budget = settings.memory_budget_mb
    calls = []
    real = os.sysconf
    monkeypatch.setattr(os, "sysconf", lambda name: calls.append(name) or real(name))
    assert settings.memory_budget_mb == budget and 0 < Settings(memory_budget_percent=50).memory_budget_mb < budget
    assert calls == []


class OrderedManager(FakeManager):
    """Its instances run their calls one at a time in the order written (the Python runtime's blocking loop)."""

    async def start_instance(self, pool: Pool) -> Instance:
        inst = await super().start_instance(pool)
        inst.ordered = True
        return inst


async def test_a_call_is_written_behind_a_running_one_only_when_no_instance_may_start_and_nobody_waits() -> None:
    pool = make_pool(OrderedManager(), max_instances=2)
    pool.ran_short()  # (a call of the function has answered within SHORT_MS)
    a, b = await pool.acquire(1), await pool.acquire(1)  # (two instances, each running a call)
    assert a is not b and pool._saturated()
    c = await pool.acquire(1)  # nothing may start: behind one of them, not in the queue
    d = await pool.acquire(1)
    assert {c, d} == {a, b} and not pool.waiters and (a.inflight, b.inflight) == (2, 2) and pool.busy == 4
    e = asyncio.ensure_future(pool.acquire(1))  # both have a call behind: the queue
    await asyncio.sleep(0)
    assert not e.done() and len(pool.waiters) == 1
    pool.release(a)  # its call ahead answered: the one behind runs, its place behind goes to the queue's oldest
    await asyncio.sleep(0)
    assert e.result() is a and a.inflight == 2 and pool.busy == 4
    for inst in (a, a, b, b):
        pool.release(inst)
    assert (a.inflight, b.inflight, pool.busy) == (0, 0, 0) and set(pool.idle) == {a, b}


async def test_no_call_behind_another_where_an_instance_may_still_start_or_the_instance_is_not_ordered() -> None:
    m = OrderedManager()
    pool = make_pool(m, max_instances=2)
    a = await pool.acquire(1)
    b = await pool.acquire(1)  # a second instance may start: it does
    assert a is not b and m.started == 2
    plain = make_pool(FakeManager(), max_instances=1)  # not ordered: its calls start as they come
    plain.ran_short()
    x = await plain.acquire(1)
    y = asyncio.ensure_future(plain.acquire(1))
    await asyncio.sleep(0)
    assert not y.done() and x.inflight == 1
    plain.release(x)
    assert await y is x
    plain.release(x)


async def test_a_queue_keeps_its_order_and_a_stream_ends_writing_calls_behind() -> None:
    pool = make_pool(OrderedManager(), max_instances=1)
    pool.ran_short()
    a = await pool.acquire(1)
    first = asyncio.ensure_future(pool.acquire(1))
    await asyncio.sleep(0)
    assert first.done() and first.result() is a  # behind it
    second, third = asyncio.ensure_future(pool.acquire(1)), asyncio.ensure_future(pool.acquire(1))
    await asyncio.sleep(0)
    assert len(pool.waiters) == 2
    pool.release(a)
    await asyncio.sleep(0)
    assert second.done() and not third.done()  # the oldest first
    pool.streamed()  # the function streamed a response: a freed place behind a call goes to nobody
    pool.release(a)
    await asyncio.sleep(0)
    assert not third.done() and a.inflight == 1
    pool.release(a)
    await asyncio.sleep(0)
    assert third.result() is a and a.inflight == 1
    with pytest.raises(Throttled):  # (and a new caller waits in the queue: here until its wait times out)
        await pool.acquire(0.05)


async def test_calls_are_written_behind_others_only_for_a_function_whose_calls_are_short() -> None:
    """A call behind waits for the one ahead (the queue would give it the first instance to come free): only once a
    call has answered within SHORT_MS, and not for LONG_HOLD_S after one that ran longer."""
    pool = make_pool(OrderedManager(), max_instances=1)
    a = await pool.acquire(1)
    with pytest.raises(Throttled):  # no call has answered yet: the queue
        await pool.acquire(0.05)
    pool.ran_short()
    assert await pool.acquire(1) is a and a.inflight == 2  # behind it
    pool.release(a)
    pool.ran_long()  # a call ran longer than SHORT_MS
    with pytest.raises(Throttled):
        await pool.acquire(0.05)
    pool.ran_short()  # (short again, within LONG_HOLD_S of the long one: still the queue)
    with pytest.raises(Throttled):
        await pool.acquire(0.05)
    pool.short_from = time.monotonic() - 1  # (LONG_HOLD_S later)
    pool.ran_short()
    assert await pool.acquire(1) is a and pool.short_from == 0.0
