"""The node's memory budget (`memory_budget_mb`, 75 % of RAM by default): each live or starting instance
reserves its function's `memory`; a start that does not fit evicts other functions' idle instances, least
recently used first, then idle function zygotes, and is refused when there is still no room. One function
never reserves more than `function_memory_share` % of it. What to evict is decided by the pure
`decisions.reserve`; this applies it to the pools."""

from __future__ import annotations

from typing import Any

from polyfn.config import Settings
from polyfn.instances import decisions
from polyfn.instances.instance import State


def reserved_by(pools: Any) -> int:
    """Memory promised to the instances of `pools`: each live (ready or starting) instance reserves its `memory`."""
    return sum(_reserved(p) for p in pools if p.instances or p.starting)  # (most pools of a big node have none)


def _reserved(p: Any) -> int:
    return p.revision.spec.memory * (p.starting + sum(1 for i in p.instances if i.state is State.READY))


class MemoryBudget:
    """Over the manager's `pools` (a live set: pools come and go) and its function zygotes (`fzs`, or None)."""

    def __init__(self, settings: Settings, pools: set[Any], fzs: Any = None):
        self.settings = settings
        self.pools = pools
        self.fzs = fzs

    @property
    def budget_mb(self) -> int:
        return self.settings.memory_budget_mb

    def reserved_mb(self) -> int:
        return reserved_by(self.pools) + (self.fzs.reserved_mb() if self.fzs is not None else 0)

    def reserve(self, pool: Any) -> bool:
        """Room for one more instance of `pool`? If not, evict idle instances of other functions, least
        recently used first; False if there still is no room. One function's instances never reserve more
        than `function_memory_share` % of the budget: a function scaling up (or crash-looping through memory)
        cannot take the node, nor evict every other function's warm instances to do so."""
        need = pool.revision.spec.memory
        function = pool.revision.function
        mine = reserved = 0
        for p in self.pools:  # (one pass for the function's reservations and the node's: `reserved_by`'s sum)
            if p.instances or p.starting:
                mb = _reserved(p)
                reserved += mb
                if p.revision.function == function:
                    mine += mb
        if self.fzs is not None:
            reserved += self.fzs.reserved_mb()
        room = decisions.reserve(need, mine, reserved, self.budget_mb, self.settings.function_memory_share,
                                 ((i.last_used, p.revision.spec.memory, (i, p)) for p in self.pools if p is not pool
                                  for i in p.idle if i.inflight == 0 and i.state is State.READY))
        if room.refused:
            return False
        for inst, p in room.evict:
            p.evict_one(inst)
        short = room.short
        if short > 0 and self.fzs is not None:  # then the zygotes of functions with nothing in flight
            busy = {p.revision.key for p in self.pools if p.busy or p.starting or p.waiters} | {pool.revision.key}
            short -= self.fzs.evict_idle(short, busy)
        return short <= 0
