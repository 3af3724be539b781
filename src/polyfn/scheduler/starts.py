"""A pool's instance starts (the pool is in pool.py): enough for the callers waiting (within `max_instances` and
the node's memory budget), `min_instances` and pre-warms, a start lost before it was ready tried once more, and
an init error reported to the waiting callers and backed off (1 s → 30 s) so a broken function never spins.

`Starter` is what a pool needs of the instance manager (instances/manager.py), and all it uses of it; `Starts`
is the part of `Pool` that starts instances (a base class of it: it works on the pool's own counts and queue).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any, Protocol

from polyfn.instances.instance import InitFailed, Instance, InstanceGone, State
from polyfn.model import Revision
from polyfn.scheduler.refusals import NoCapacity, StartFailed, Throttled

log = logging.getLogger("polyfn.pool")

INIT_BACKOFF_MIN = 1.0
INIT_BACKOFF_MAX = 30.0


class Starter(Protocol):
    """What a pool needs of the instance manager: a started instance of its revision (`start_instance`; at once
    when one needs no wait, `start_now`),
    room for one in the node's memory budget (`reserve`: False when there is none, the pool's `refusal` then
    saying why when a quota refused it), the budget's size for that refusal's message, the node's table of
    functions that shed load (`shedding`, read by the HTTP protocol) and the metrics (or None)."""

    shedding: dict[str, Any]
    metrics: Any
    memory_budget_mb: int

    async def start_instance(self, pool: Any) -> Instance: ...  # (pool: a scheduler.pool.Pool)

    def start_now(self, pool: Any) -> Instance | None: ...  # a start with no wait, or None (then `start_instance`)

    def reserve(self, pool: Any) -> bool: ...


class Starts:
    """The pool's starts. Owns `starting` (counted when a start is decided, before its task runs), the init
    error back-off and the start tasks; reads the pool's queue and instances and hands a ready instance to
    the pool's `_offer`."""

    revision: Revision
    manager: Starter
    concurrency: int
    min_instances: int
    max_instances: int
    instances: list[Instance]
    waiters: deque[asyncio.Future[Instance]]
    draining: bool
    refusal: Throttled | None
    starting: int
    cold_starts: int
    _capped_until: float
    _init_error: StartFailed | None
    _init_error_until: float
    _init_error_at: float
    _init_backoff: float
    _tasks: set[asyncio.Task[None]]

    def _scale_up(self) -> None:
        """Start enough instances for the callers now waiting, within max_instances and the node's memory."""
        room = self.max_instances - len(self.instances) - self.starting
        if room <= 0:  # (none may start: every waiting call of a full pool comes here)
            return
        wanted = -(-(len(self.waiters) - self.starting * self.concurrency) // self.concurrency)
        for _ in range(max(0, min(wanted, room))):
            if not self._start_background():
                self._capped_until = time.monotonic() + 1.0
                self._no_capacity()
                break

    def _start_at_once(self) -> Instance | None:
        """A caller finds no free instance: when nobody is queued or starting (nor was a start failing, and the pool
        has a queue and is not draining), its start, as `_scale_up`'s for one waiter; when that start needs no
        wait (`Starter.start_now`), the new instance handed to it in this turn, without a place in the queue (a
        future, a deadline, the shedding watch: steps run once per start, each slow on a loop just woken from
        idle, before the call's `Invoke` is written). None when not, when there is no room, or when the start is a
        task: the caller then queues (`acquire`), and `_scale_up` counts that start as coming."""
        if (self.waiters or self.starting or self._init_error is not None or not self.max_queue or self.draining
                or len(self.instances) >= self.max_instances or not self._start_background()):
            return None
        return self.try_acquire()

    def _no_capacity(self) -> None:
        """The memory budget refused a start: if nothing is coming for the waiters, refuse them now."""
        if self.starting or any(i.state is State.READY for i in self.instances):
            return  # they will be served by what exists or is starting
        budget = self.manager.memory_budget_mb
        err: Throttled = self.refusal or NoCapacity(
            f"the node's memory budget ({budget} MB) has no room for another {self.revision.spec.memory} MB "
            f"instance of {self.revision.function!r}, even after evicting idle instances of other functions",
            retry_after=5)
        self.refusal = None
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(err)

    def ensure_min(self) -> None:
        missing = self.min_instances - len(self.instances) - self.starting
        for _ in range(max(0, missing)):
            if not self._start_background(prewarm=True):
                break

    def prewarm(self, n: int) -> int:
        """Start instances now until `n` are live or starting (bounded by max_instances and the memory
        budget). Returns how many were started."""
        if self.draining:
            return 0
        live = sum(1 for i in self.instances if i.state is State.READY) + self.starting
        started = 0
        for _ in range(max(0, min(n, self.max_instances) - live)):
            if not self._start_background(prewarm=True):
                break
            started += 1
        return started

    def _start_background(self, prewarm: bool = False) -> bool:
        """Start one instance in the background; False if the node's memory budget has no room for it. A start
        that needs no wait (a function zygote's offered child: `Starter.start_now`) is made at once, in this turn
        of the loop: a caller queued for it is handed it before it waits, and writes its call behind the start's
        `Take` (instances/fnzygote.py) without a turn of the loop for a start task and one for its hand-over."""
        if not self.manager.reserve(self):
            return False
        inst = self.manager.start_now(self)
        if inst is not None:
            self._started(inst, prewarm)
            return True
        self.starting += 1  # counted now, so concurrent scale-ups see it before the task runs
        self._spawn_task(self._start_one(prewarm))
        return True

    async def _start_instance(self) -> Instance:
        """The manager's start, tried a second time when the process vanished before it was ready without
        reporting an init error (`InstanceGone`): that is the platform's failure, not the function's (the
        function's own import errors come back as InitFailed and are not retried), and a caller should not
        see it when a second process starts fine. A second loss is reported as usual."""
        try:
            return await self.manager.start_instance(self)
        except InstanceGone as e:
            log.warning("%s: a starting instance was lost (%s); starting another", self.revision.key, e)
            return await self.manager.start_instance(self)

    def _spawn_task(self, coro: Awaitable[None]) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _start_one(self, prewarm: bool) -> None:
        """Start one instance. A pre-warmed one (min_instances) gives no caller a cold start."""
        try:
            inst = await self._start_instance()
        except StartFailed as e:
            self._start_failed(e)
            return
        except (InitFailed, InstanceGone, TimeoutError, OSError) as e:
            err = e.error if isinstance(e, InitFailed) else {
                "errorType": "Runtime.StartFailed",
                "errorMessage": f"instance failed to start: {e or type(e).__name__}",
                "stackTrace": [],
            }
            self._start_failed(StartFailed(err, getattr(e, "logs", [])))
            return
        except Exception as e:  # a bug of ours: still an answer for the callers, not a wait until their timeout
            log.exception("%s: starting an instance failed", self.revision.key)
            self._start_failed(StartFailed({"errorType": "Runtime.StartFailed",
                                            "errorMessage": f"instance failed to start: internal error: {e!r}",
                                            "stackTrace": []}))
            return
        finally:
            self.starting -= 1
        self._started(inst, prewarm)

    def _started(self, inst: Instance, prewarm: bool) -> None:
        """A started instance joins the pool and serves its waiters (a pre-warmed one gives no caller a cold start)."""
        self._init_error = None
        self._init_backoff = INIT_BACKOFF_MIN
        if self.draining and not self.waiters:
            inst.close()
            return
        if inst.state is not State.READY:  # died between ready and now
            return
        self.instances.append(inst)
        metrics = self.manager.metrics
        if metrics is not None:
            metrics.instance_starts.inc(self.revision.function)
        inst.cold_claimed = prewarm
        self.cold_starts += 1
        self._offer(inst)

    def _start_failed(self, err: StartFailed) -> None:
        """Report the init error to everyone waiting and back off, so a broken function does not spin."""
        self._init_error = err
        self._init_error_at = time.monotonic()
        self._init_error_until = self._init_error_at + self._init_backoff
        self._init_backoff = min(self._init_backoff * 2, INIT_BACKOFF_MAX)
        log.warning("%s: instance failed to start: %s", self.revision.key, err)
        if not any(i.state is State.READY for i in self.instances):
            while self.waiters:
                fut = self.waiters.popleft()
                if not fut.done():
                    fut.set_exception(err)
