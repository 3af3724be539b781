"""Calls written behind others (the pool is in pool.py): an instance that runs its calls one at a time in the order
written (`Instance.ordered`: the Python runtime's blocking loop, a sync handler with concurrency 1) may be given a
second call while it runs one, once the function may start no more instances. It reads that frame as soon as the one
before has answered, without sleeping or waiting for the node: no wake-up, no hand-over through the pool's queue.

Kept right (what the rest relies on): a call is written behind another only when nobody waits in the queue, and a
freed place behind a call goes to the queue's oldest, so calls reach instances in the order they came and the
deadline of a call behind (from its acceptance) is never earlier than that of the one ahead: the one ahead is stopped
for its timeout first, never the other way round. A call behind that never started when its instance ended is tried
elsewhere (`NotStarted`: instance.py `kill` and `connection_lost`, invoker.py `_again`); its cancel stops nothing
(invoker.py `cancel`). `Behind` is that part of `Pool` (a base class of it)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

from polyfn.instances.instance import Instance, State

#: A function's calls are written behind others only while each has run within this many ms (the `run_ms` its
#: instance reports) — since its first call, and for LONG_HOLD_S after one that ran longer — so a call behind
#: waits for the one ahead about that long at most. (What it saves, a wake-up and a hand-over, is tens of µs:
#: worth it for short calls only.)
SHORT_MS = 5.0
LONG_HOLD_S = 60.0


class Behind:
    """Owns the list of ordered instances running one call (`ahead`, each checked when taken) and whether the pool
    writes calls behind others at all (`pipelines`: until the function's first streamed response)."""

    instances: list[Instance]
    waiters: deque[asyncio.Future[Instance]]
    starting: int
    max_instances: int
    busy: int
    concurrency: int
    _capped_until: float
    _hand_over: Callable[[Instance], bool]

    def __init__(self) -> None:
        self.ahead: list[Instance] = []
        self.pipelines = True
        # calls are written behind others from this monotonic time on: none until a call has answered short
        # (`ran_short`), LONG_HOLD_S after one that ran long (`ran_long`)
        self.short_from = math.inf

    def answered(self, run_ms: float) -> None:
        """A call answered after running `run_ms` (the instance's own figure): `ran_long` or `ran_short`."""
        if run_ms > SHORT_MS:
            self.ran_long()
        elif self.short_from:
            self.ran_short()

    def ran_short(self) -> None:
        """A call answered within SHORT_MS and the function had none yet (or only a long one, LONG_HOLD_S ago)."""
        if self.short_from == math.inf or time.monotonic() >= self.short_from:
            self.short_from = 0.0

    def ran_long(self) -> None:
        """A call ran longer than SHORT_MS: no call is written behind another for LONG_HOLD_S."""
        self.short_from = time.monotonic() + LONG_HOLD_S

    def _saturated(self) -> bool:
        """No further instance may start now: `max_instances` are up or starting, or the node's memory budget
        just refused one."""
        return (len(self.instances) + self.starting >= self.max_instances
                or (self._capped_until > 0 and time.monotonic() < self._capped_until))

    def _listed(self, inst: Instance) -> None:
        """`inst` (ordered) runs one call: a call may be written behind it."""
        if not inst.listed:
            inst.listed = True
            self.ahead.append(inst)

    def _behind(self) -> Instance | None:
        """An ordered instance running one call, with this call written behind it (see the module's docstring);
        None when there is none, or somebody waits, or an instance may still start."""
        if self.waiters or not self.pipelines or self.concurrency != 1 or not self._saturated():
            return None
        if self.short_from and time.monotonic() < self.short_from:  # (a function whose calls ran long: SHORT_MS)
            return None
        ahead = self.ahead
        while ahead:
            inst = ahead.pop()
            inst.listed = False
            if inst.inflight == 1 and inst.state is State.READY:
                inst.inflight = 2
                self.busy += 1
                return inst
        return None

    def _freed_behind(self, inst: Instance) -> None:
        """The call ahead on `inst` answered and the one behind it runs: the place behind goes to the queue's
        oldest when nothing may start (`_hand_over`), else `inst` is listed again."""
        if self.pipelines and not (self.waiters and self._saturated() and self._hand_over(inst)):
            self._listed(inst)

    def streamed(self) -> None:
        """The function streamed a response: no call is written behind another from now on (a stream runs under
        its own limits, not the timeout, so the call behind it could time out first: invoker.py `_on_deadline`)."""
        if self.pipelines:
            self.pipelines = False
            for inst in self.ahead:
                inst.listed = False
            self.ahead.clear()
