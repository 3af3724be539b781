"""The registry's pinned pools (published versions, aliases) against a fake manager (no processes): made on
demand without warm instances, the current revision's pool reused, swept once empty for a keep-alive period
(injected clock), dropped with their version or function."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from polyfn.instances.instance import Instance, State
from polyfn.model import FunctionSpec, Revision
from polyfn.scheduler.pool import Pool
from polyfn.scheduler.registry import FunctionRegistry


class FakeManager:
    memory_budget_mb = 1 << 20
    metrics = None
    settings = SimpleNamespace(max_queue=100, keepalive=30.0, keepalive_policy="fixed", keepalive_time_scale=1.0)

    def __init__(self) -> None:
        self.pools: set[Pool] = set()
        self.started = 0
        self.shedding: dict[str, Pool] = {}

    def reserve(self, pool: Pool) -> bool:
        return True

    def add_pool(self, pool: Pool) -> None:
        self.pools.add(pool)

    def forget_pool(self, pool: Pool) -> None:
        self.pools.discard(pool)

    def succeed(self, old: Pool, new: Pool) -> None:
        pass

    def start_now(self, pool: Pool) -> Instance | None:
        return None

    async def start_instance(self, pool: Pool) -> Instance:
        self.started += 1
        inst = Instance(f"i{self.started}", pool.revision.key, pool.on_lost)
        inst.state = State.READY
        return inst


def rev(n: int, **spec: object) -> Revision:
    return Revision(function="f", number=n, spec=FunctionSpec(name="f", **spec), code_sha256=str(n),  # type: ignore[arg-type]
                    code_dir="/nonexistent")


async def settle(m: FakeManager, reg: FunctionRegistry) -> None:
    if reg._draining:
        await asyncio.wait(list(reg._draining), timeout=5)


async def test_pinned_pools_are_made_on_demand_and_swept_when_empty() -> None:
    m = FakeManager()
    reg = FunctionRegistry(m, 1.0)  # type: ignore[arg-type]
    reg.activate(rev(1, min_instances=1))
    reg.activate(rev(2, min_instances=1))  # current; revision 1's pool drains
    await settle(m, reg)
    cur = reg.get("f")
    assert cur is not None and reg.pinned(rev(2)) is cur  # the current revision: its own pool
    old = reg.pinned(rev(1, min_instances=1))
    assert old is not cur and old.pool.min_instances == 0 and old.pool.starting == 0  # nothing kept warm
    assert reg.pinned(rev(1)) is old  # one pool per revision
    assert [a.revision.number for a in reg.all_of("f")] == [2, 1]

    inst = await old.pool.acquire(1)
    assert reg.sweep(old.since + 1000) == 0  # busy
    old.pool.release(inst)
    t_idle = old.pool.last_end
    assert reg.sweep(t_idle + 1000) == 0  # idle but still has an instance (the keep-alive reaper closes it)
    assert old.pool.reap(t_idle + 31) == 1  # keep-alive expired: closed …
    inst.state = State.DEAD
    old.pool.on_lost(inst)  # … and gone (the manager reports the exit)
    assert not old.pool.instances
    assert reg.sweep(t_idle + 5) == 0  # empty, but not for a keep-alive period yet
    assert reg.sweep(t_idle + 31) == 1
    await settle(m, reg)
    assert ("f", 1) not in reg.pinned_pools and old.pool not in m.pools
    assert reg.pinned(rev(1)) is not old  # made again on the next invocation


async def test_deleting_a_version_or_the_function_drops_pinned_pools() -> None:
    m = FakeManager()
    reg = FunctionRegistry(m, 1.0)  # type: ignore[arg-type]
    reg.activate(rev(3))
    p1, p2 = reg.pinned(rev(1)).pool, reg.pinned(rev(2)).pool
    reg.remove_revision("f", 1)
    await settle(m, reg)
    assert p1 not in m.pools and p2 in m.pools
    reg.remove_revision("f", 3)  # the current revision is not a pinned pool: left alone
    assert reg.get("f") is not None
    reg.remove("f")
    await settle(m, reg)
    assert m.pools == set() and reg.pinned_pools == {}
