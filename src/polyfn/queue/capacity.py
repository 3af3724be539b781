"""How many async jobs this node holds and runs, per function and in all: pure accounting, no I/O, no clock.

A node holds at most `max_held` jobs (claimed from the queue file or pulled from the cluster's stream, not yet
settled), and of their payloads' bytes at most `max_bytes` plus one job's: a job is taken while the bytes held are
under `max_bytes` (so a payload larger than the whole budget still runs, once the bytes held are under it). Of one
function it holds up to its capacity (max_instances × concurrency) plus a prefetch, so claims
and pulls come in batches while one function's backlog leaves room to the others; of those, at most its
capacity invoke at once and the rest wait in order. The dispatcher (dispatcher.py) asks and tells this ledger;
it owns the tasks, the wake-ups and the queue file.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Generic, TypeVar

#: Jobs of one function a node holds beyond its capacity (claimed, waiting in memory for a free instance):
#: enough that claims and completions go in batches, few enough that one function's backlog leaves
#: `async_max_inflight` slots to the others.
PREFETCH = 64

J = TypeVar("J")


class Ledger(Generic[J]):
    """`capacity(function)`: how many of its jobs may invoke at once (the function's instances × concurrency)."""

    def __init__(self, max_held: int, capacity: Callable[[str], int], max_bytes: int = 1 << 62):
        self.max_held = max_held
        self.max_bytes = max_bytes
        self.capacity = capacity
        self.held: dict[str, int] = {}  # function → jobs held (claimed, not completed)
        self.nheld = 0
        self.nbytes = 0  # payload bytes of the held jobs (completing ones too)
        self.invoking: dict[str, int] = {}  # function → jobs invoking now
        self.waiting: dict[str, collections.deque[J]] = {}  # function → held jobs waiting for capacity

    def limit(self, function: str) -> tuple[int, int]:
        """(capacity, jobs this node may hold) of `function`."""
        cap = self.capacity(function)
        return cap, min(self.max_held, cap + max(cap, PREFETCH))

    def room(self, function: str) -> int:
        """How many more jobs of `function` this node may hold now."""
        return min(self.limit(function)[1] - self.held.get(function, 0), self.max_held - self.nheld)

    def free(self) -> int:
        """How many more jobs this node may hold now, of any function."""
        return self.max_held - self.nheld

    def spare(self) -> int:
        """How many more payload bytes this node may hold now (> 0: a job of any size may be taken, the one that
        passes the budget included)."""
        return self.max_bytes - self.nbytes

    def takes(self, function: str) -> bool:
        """One more job of `function` may be held now (a job of any size: see `spare`)."""
        return self.nbytes < self.max_bytes and self.room(function) > 0

    def refill(self, function: str) -> int:
        """Claim for `function` again once this many of its slots are free (half its prefetch): in batches."""
        cap, limit = self.limit(function)
        return max(1, (limit - cap) // 2)

    def refill_due(self, function: str) -> bool:
        """A claim would take jobs of `function` now: room for `refill(function)` of them, or for what the node has
        left (`room` ≥ that, computed with one capacity look-up: asked at every finished job behind a backlog)."""
        free = self.max_held - self.nheld
        if free <= 0:
            return False
        # and half the payload budget free (claims of large jobs come in batches too)
        if self.nbytes > self.max_bytes // 2:
            return False
        cap, limit = self.limit(function)
        room = min(limit - self.held.get(function, 0), free)
        return room >= max(1, min(max(1, (limit - cap) // 2), free))

    def hold(self, function: str, size: int = 0) -> None:
        """One more job of `function` is held, with a `size`-byte payload."""
        self.held[function] = self.held.get(function, 0) + 1
        self.nheld += 1
        self.nbytes += size

    def release(self, function: str, size: int = 0, completing: bool = False) -> None:
        """A held job (its payload `size` bytes) is settled. A job entering the completion batch stops counting
        against its function (its instance is free) but still counts against the node, with its payload (the
        batch keeps the job), until `completed`."""
        n = self.held.get(function, 1) - 1
        if n > 0:
            self.held[function] = n
        else:
            self.held.pop(function, None)
        if not completing:
            self.nheld -= 1
            self.nbytes -= size

    def completed(self, n: int, size: int = 0) -> None:
        """`n` jobs of the completion batch, `size` payload bytes in all, are done."""
        self.nheld -= n
        self.nbytes -= size

    def start(self, function: str, job: J) -> bool:
        """True when `job` may invoke now (its slot is taken); else it waits in its function's line."""
        if self._take(function):
            return True
        self.waiting.setdefault(function, collections.deque()).append(job)
        return False

    def reserve(self, function: str) -> bool:
        """A slot of `function` taken now for a job about to be held, which will then invoke without waiting
        (`invoked` gives the slot back): True when one was free and none of its jobs waits for one."""
        return function not in self.waiting and self._take(function)

    def _take(self, function: str) -> bool:
        """One of `function`'s slots, if one is free."""
        n = self.invoking.get(function, 0)
        if n >= self.capacity(function):
            return False
        self.invoking[function] = n + 1
        return True

    def invoked(self, function: str, stopping: bool = False) -> list[J]:
        """An invocation of `function` ended. The waiting jobs that may invoke now, in order (their slots are
        taken): one, or more when the function's capacity grew while they waited; none while stopping."""
        n = self.invoking.get(function, 1) - 1
        if n > 0:
            self.invoking[function] = n
        else:
            self.invoking.pop(function, None)
        q = self.waiting.get(function)
        out: list[J] = []
        if not q:
            if q is not None:
                del self.waiting[function]
            return out
        cap = self.capacity(function)
        while q and not stopping and self.invoking.get(function, 0) < cap:
            out.append(q.popleft())
            self.invoking[function] = self.invoking.get(function, 0) + 1
        if not q:
            self.waiting.pop(function, None)
        return out

    def withdraw(self, match: Callable[[J], bool]) -> J | None:
        """The first held job waiting for capacity that `match`es, out of its line (a cancel): it will not
        invoke. Still held: the caller releases it."""
        for function, q in self.waiting.items():
            for j in q:
                if match(j):
                    q.remove(j)
                    if not q:
                        del self.waiting[function]
                    return j
        return None

    def drop_waiting(self) -> list[J]:
        """Every job still waiting for capacity (the node stops: they go back to the queue)."""
        out = [j for q in self.waiting.values() for j in q]
        self.waiting.clear()
        return out
