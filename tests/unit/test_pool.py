"""The pool's scheduling logic against a fake manager (no processes): hand-out order, queueing, scale-up
bounds, init-error back-off, keep-alive reaping with an injected clock."""

from __future__ import annotations

import asyncio

import pytest

from polyfn.model import FunctionSpec, Revision
from polyfn.scheduler.instance import Instance, State
from polyfn.scheduler.pool import Pool, StartFailed, Throttled


class FakeManager:
    """Starts fake instances; `gate` lets a test decide when starts complete."""

    def __init__(self, fail: dict | None = None):
        self.started = 0
        self.fail = fail
        self.gate: asyncio.Event | None = None

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
    pool.ensure_min()  # as InstanceManager.new_pool does
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
