"""A pool of instances serving one revision: hand out free instances, start new ones when callers wait,
keep callers in a bounded queue, reap idle instances after their keep-alive.

All methods run on the server's event loop; nothing here blocks. The fast path (`try_acquire` /
`release` with a free instance) is a few list operations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from polyfn.model import Revision
from polyfn.scheduler import decisions, shed
from polyfn.scheduler.autoscaler import AutoscalerConfig, AutoscalerState, Decision, Stats, decide
from polyfn.scheduler.deadlines import Deadlines
from polyfn.scheduler.instance import InitFailed, Instance, InstanceGone, State
from polyfn.scheduler.keepalive import IdlePrior, Policy, make_policy

log = logging.getLogger("polyfn.pool")


class Starter(Protocol):
    """What a pool needs of the instance manager (scheduler/manager.py): a started instance of its revision.
    (The pool reads `shedding`, `memory_budget_mb`, `reserve` and `metrics` too, when present.)"""

    async def start_instance(self, pool: Pool) -> Instance: ...

INIT_BACKOFF_MIN = 1.0
INIT_BACKOFF_MAX = 30.0
KEEPALIVE_REASON = "keep-alive expired"
SCALEDOWN_REASON = "scaled down"
EVICTED_REASON = "evicted for memory"


class Throttled(Exception):
    """The function refused the call (`reason`: scheduler/shed.py); retry after `retry_after` seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int = 1, reason: str = shed.QUEUE_FULL):
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason


class NoCapacity(Throttled):
    """The node's memory budget has no room for another instance, even after evicting idle ones."""

    status = 503
    code = "node_memory_exhausted"

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message, retry_after, shed.NO_MEMORY)


class PoolClosed(Exception):
    pass


class StartFailed(Exception):
    """Starting an instance failed; `error` is the typed init error payload shown to callers. A failure
    remembered during the back-off (no start was tried for this call) has `retry_after` (seconds until the
    next start may be tried) and `age` (seconds since the start failed), and no logs (they were recorded
    with the activation whose start failed)."""

    def __init__(self, error: dict[str, Any], logs: list[tuple[float, str, str]] | None = None,
                 retry_after: float = 0.0, age: float = 0.0):
        super().__init__(error.get("errorMessage", "instance failed to start"))
        self.error = error
        self.logs = logs or []
        self.retry_after = retry_after
        self.age = age

    def remembered(self, retry_after: float, age: float) -> StartFailed:
        return StartFailed(self.error, None, retry_after, age)


class Pool:
    def __init__(self, revision: Revision, manager: Starter, max_queue: int, keepalive: float,
                 keepalive_policy: str = "fixed", idle_prior: IdlePrior | None = None):
        self.revision = revision
        self.manager = manager
        spec = revision.spec
        self.concurrency = spec.concurrency
        self.min_instances = spec.min_instances
        self.max_instances = spec.max_instances
        self.keepalive = spec.keepalive if spec.keepalive is not None else keepalive
        self.policy: Policy = make_policy(getattr(spec, "keepalive_policy", None) or keepalive_policy,
                                          self.keepalive, spec.memory, idle_prior)
        self.max_queue = max_queue
        self.scaler_config = AutoscalerConfig(target=spec.concurrency, min_instances=spec.min_instances,
                                              max_instances=spec.max_instances)
        self.scaler_state = AutoscalerState()
        self.decision: Decision | None = None  # the autoscaler's last decision (None: it has not run yet)
        self.busy = 0  # invocations in flight over all instances (one integer update per request)
        self.last_end = 0.0  # monotonic time the pool last went from busy to idle (0: never used)
        self.prewarm_at = 0.0  # keep-alive policy: bring one instance back at this time (0: none planned)
        self.evictions = 0
        self.instances: list[Instance] = []  # every ready instance; starting ones are counted in `starting`
        self.idle: list[Instance] = []  # ready instances with a free slot (stack: warmest on top)
        self.refusal: Throttled | None = None  # why the manager refused the last start (a namespace's quota)
        self.waiters: deque[asyncio.Future[Instance]] = deque()
        self._since: dict[asyncio.Future[Instance], float] = {}  # waiter → when it began to wait (monotonic)
        self.wait_target = shed.WAIT_TARGET
        self._shedding = False  # callers wait or are refused: in `manager.shedding` (the HTTP protocol asks it)
        self._shed_at = 0.0  # when it last refused a caller (monotonic)
        self.recover_after = shed.RECOVER_AFTER  # it leaves `manager.shedding` after refusing no one this long
        self._passing = 0  # calls the HTTP protocol let in that have not reached `acquire` yet (see `admits`)
        self._capped_until = 0.0  # the memory budget refused a start: full capacity until then (monotonic)
        self.starting = 0
        self.draining = False
        self.cold_starts = 0
        self._init_error: StartFailed | None = None
        self._init_error_until = 0.0
        self._init_error_at = 0.0
        self._init_backoff = INIT_BACKOFF_MIN
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle_event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # cached: get_running_loop() is a getpid() call
        self._deadlines = Deadlines()

    # --- handing out instances ---------------------------------------------------------------------------

    def try_acquire(self) -> Instance | None:
        idle = self.idle
        while idle:
            inst = idle[-1]
            if inst.state is not State.READY:
                idle.pop()
                continue
            inst.inflight += 1
            if inst.inflight >= self.concurrency:
                idle.pop()
            if not self.busy:
                self._became_busy()
            self.busy += 1
            return inst
        return None

    def _became_busy(self) -> None:
        """The pool goes from idle to busy: record the idle time into the keep-alive policy."""
        if self.last_end:
            self.policy.observe_idle(time.monotonic() - self.last_end)
        self.prewarm_at = 0.0

    async def acquire(self, timeout: float) -> Instance:
        inst = self.try_acquire()
        if inst is not None:
            return inst
        if self._init_error is not None and (now := time.monotonic()) < self._init_error_until:
            raise self._init_error.remembered(self._init_error_until - now, now - self._init_error_at)
        waiters = self.waiters
        now = time.monotonic()
        if waiters or not self.max_queue:  # (the first waiter is let in: instances start for it)
            reason = self._refusal(now)
            if reason is not None:
                self._shed_at = now
                self._watch()
                raise Throttled(f"function {self.revision.function!r} is at capacity ({len(self.instances)} "
                                f"instances, {len(waiters)} queued)", reason=reason)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[Instance] = loop.create_future()
        waiters.append(fut)
        self._since[fut] = now
        if not self._shedding:
            self._watch()
        self._scale_up()
        # Not asyncio.wait_for: every request that finds all instances busy comes through here, and
        # wait_for's wrapping (a second future, callbacks, a timer) measured ~3x the cost of this.
        deadlines = self._deadlines
        deadlines.add(fut, time.perf_counter() + timeout, self._wait_expired, fut, timeout)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release(fut.result())  # we were handed an instance as we were cancelled
            raise
        finally:
            deadlines.discard(fut)
            del self._since[fut]
            # Handed an instance, it was taken off the queue (`_hand_over`'s popleft): the queue is not searched
            # (a scan of every waiter). Otherwise (a timeout, a cancellation, a refusal) it may still be queued.
            if (not fut.done() or fut.cancelled() or fut.exception() is not None) and fut in self.waiters:
                self.waiters.remove(fut)

    def _wait_expired(self, fut: asyncio.Future[Instance], timeout: float) -> None:
        if not fut.done():
            fut.set_exception(Throttled(
                f"no instance of {self.revision.function!r} became free within {timeout:.1f} s", retry_after=1,
                reason=shed.WAIT_TIMEOUT))

    def _refusal(self, now: float, coming: int = 0) -> str | None:
        """Why a new caller would be refused now (shed.refusal of what the pool sees, with `coming` more
        callers on their way to the queue), or None."""
        waiters = self.waiters
        head = self._since.get(waiters[0], now) if waiters else now
        # at full capacity: every instance it may have is up or starting, or the node's memory budget just
        # refused another (waiting for a starting instance is productive: shed.refusal bounds it by its slots)
        n = len(self.instances) + self.starting
        full = n >= self.max_instances or now < self._capped_until
        return shed.refusal(len(waiters) + coming, n * self.concurrency, now - head, full, self.max_queue,
                            self.wait_target, self.starting > 0)

    def refusing(self) -> bool:
        """Would a new call be refused now? (What `admits` decides, without counting the call.)"""
        return self._early_refusal(time.monotonic()) is not None

    def admits(self) -> bool:
        """May a new call come in now? Asked by the HTTP protocol for each call to a function that sheds load
        (`manager.shedding`), before the call costs a task, so it refuses before any work exactly when the pool
        would: a live check, not a flag — callers whose calls just ended find room as soon as there is some,
        and the instances never wait for callers the protocol turned away.

        A call let in is counted as on its way until the event loop next runs its ready callbacks (its task's
        first step reaches `acquire`, or leaves for good): under a flood one read of the sockets brings a
        request on every connection, and without the count all of them passed (the queue was empty while
        they were read) and were then refused by `acquire` one by one, each at the full cost of a call."""
        now = time.monotonic()
        if self._early_refusal(now) is not None:
            self._shed_at = now
            return False
        if not self._passing:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._arrived)
        self._passing += 1
        return True

    def _arrived(self) -> None:
        self._passing = 0

    def _early_refusal(self, now: float) -> str | None:
        free = len(self.instances) * self.concurrency - self.busy
        if not self.waiters and self._passing < free:
            return None  # (the common case: a free slot for it)
        return self._refusal(now, self._passing - max(0, free))

    def _watch(self) -> None:
        """Callers wait (or are refused): from now on the node's HTTP protocol asks this pool before each call
        of its function (`manager.shedding`, see `admits`), until its queue is empty and it has refused no one
        for `recover_after`. (Watched from the first wait, not the first refusal: a flood's first read then
        lets in only what the queue takes too, instead of every connection's call.)"""
        if not self._shedding:
            self._shedding = True
            shedding = getattr(self.manager, "shedding", None)  # (test fakes of the manager may have none)
            if shedding is not None:
                shedding[self.revision.function] = self

    def _recovered(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._shed_at < self.recover_after:
            return  # (a flood that pauses: leaving and coming back lets one read's worth of calls in unchecked)
        self._shedding = False
        shedding = getattr(self.manager, "shedding", None)
        if shedding is not None and shedding.get(self.revision.function) is self:
            del shedding[self.revision.function]

    def release(self, inst: Instance) -> None:
        inst.inflight -= 1
        inst.served += 1
        inst.last_used = now = time.monotonic()
        self.busy -= 1
        if not self.busy:
            self.last_end = now
        if self._shedding and not self.waiters:
            self._recovered()
        if inst.state is not State.READY:
            return
        if self.waiters and self._hand_over(inst):
            return
        if inst.inflight == self.concurrency - 1:  # it was full, so it is not on the idle stack
            self.idle.append(inst)
        if self.draining and not self.waiters and all(i.inflight == 0 for i in self.instances):
            self._idle_event.set()

    def _hand_over(self, inst: Instance) -> bool:
        """Give `inst` to the oldest live waiter; True if one took it."""
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                inst.inflight += 1
                if not self.busy:
                    self._became_busy()
                self.busy += 1
                fut.set_result(inst)
                if self._shedding and not self.waiters:
                    self._recovered()
                return True
        return False

    def _offer(self, inst: Instance) -> None:
        """A freshly ready instance: serve waiters first, then park it on the idle stack."""
        while inst.inflight < self.concurrency and self.waiters:
            if not self._hand_over(inst):
                break
        if inst.inflight < self.concurrency:
            self.idle.append(inst)

    # --- scaling ---------------------------------------------------------------------------------------------

    def _scale_up(self) -> None:
        """Start enough instances for the callers now waiting, within max_instances and the node's memory."""
        capacity_coming = self.starting * self.concurrency
        wanted = -(-(len(self.waiters) - capacity_coming) // self.concurrency)
        room = self.max_instances - len(self.instances) - self.starting
        for _ in range(max(0, min(wanted, room))):
            if not self._start_background():
                self._capped_until = time.monotonic() + 1.0
                self._no_capacity()
                break

    def _no_capacity(self) -> None:
        """The memory budget refused a start: if nothing is coming for the waiters, refuse them now."""
        if self.starting or any(i.state is State.READY for i in self.instances):
            return  # they will be served by what exists or is starting
        budget = getattr(self.manager, "memory_budget_mb", 0)
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
        """Start one instance in the background; False if the node's memory budget has no room for it."""
        reserve = getattr(self.manager, "reserve", None)  # test fakes of the manager may have none
        if reserve is not None and not reserve(self):
            return False
        self.starting += 1  # counted now, so concurrent scale-ups see it before the task runs
        self._spawn_task(self._start_one(prewarm))
        return True

    # --- autoscaler and keep-alive (called by the manager's ticker with the monotonic clock) -----------

    def autoscale(self, now: float) -> Decision:
        """One autoscaler tick: sample, decide, pre-start up to the desired count. Scale-down is left to
        `reap`, which closes idle instances above the desired count."""
        ready = [i for i in self.instances if i.state is State.READY]
        stats = Stats(inflight=self.busy, queued=len(self.waiters), ready=len(ready), starting=self.starting)
        d = decide(now, stats, self.scaler_state, self.scaler_config)
        self.decision = d
        if self.draining or (self._init_error is not None and now < self._init_error_until):
            return d  # a function failing to start is not retried faster by the autoscaler
        if len(ready) + self.starting < self.min_instances:
            self.ensure_min()  # e.g. the memory budget had no room when the pool was created
        if not stats.inflight and not stats.queued:
            # Nothing to serve right now: a remembered average is no reason to start instances (the
            # keep-alive policy decides what stays warm; starting here would fight its unloading).
            return d
        missing = d.desired - len(ready) - self.starting
        for _ in range(max(0, missing)):
            if not self._start_background(prewarm=True):
                break
        return d

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
        self._init_error = None
        self._init_backoff = INIT_BACKOFF_MIN
        if self.draining and not self.waiters:
            inst.close()
            return
        if inst.state is not State.READY:  # died between ready and now
            return
        self.instances.append(inst)
        metrics = getattr(self.manager, "metrics", None)  # test fakes of the manager may have none
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

    def on_lost(self, inst: Instance) -> None:
        """An instance ended (crash, kill, keep-alive expiry): forget it, replace it if needed."""
        metrics = getattr(self.manager, "metrics", None)
        if metrics is not None and inst in self.instances:
            reason = ("keepalive" if inst.kill_reason == KEEPALIVE_REASON else "stopped" if self.draining
                      else "scaledown" if inst.kill_reason == SCALEDOWN_REASON
                      else "evicted" if inst.kill_reason == EVICTED_REASON
                      else "killed" if inst.kill_reason else "exited")
            metrics.instance_stops.inc(self.revision.function, reason)
        try:
            self.instances.remove(inst)
        except ValueError:
            pass
        try:
            self.idle.remove(inst)
        except ValueError:
            pass
        if self.draining:
            if not self.instances:
                self._idle_event.set()
            return
        if self.waiters:
            self._scale_up()
        if len(self.instances) < self.min_instances:
            self.ensure_min()

    def reap(self, now: float) -> int:
        """Close idle instances the keep-alive policy and the autoscaler no longer want, keeping
        `min_instances`; start the policy's pre-warm instance when it is due. Returns how many closed.

        * keep-alive: an instance idle for the policy's keep-alive is closed; when the policy pre-warms
          (hybrid with a representative idle-time histogram, adaptive) idle instances are unloaded right after use
          and one is brought back at `last_end + prewarm`, kept for the window's keep-alive;
        * autoscaler: idle instances above its (gradually falling) desired count are closed at once."""
        live = sum(1 for i in self.instances if i.state is State.READY)  # closing ones don't count
        floor = self.min_instances
        w = self.policy.window()
        d = self.decision
        if w.prewarm > 0 and self.last_end and not self.busy and not self.draining:
            due = self.last_end + w.prewarm
            if now < due:
                self.prewarm_at = due
            elif now < due + w.keepalive:
                floor = max(floor, 1)  # the policy wants one warm instance in its window
                if self.prewarm_at and live == 0 and not self.starting:
                    self.prewarm_at = 0.0
                    self.prewarm(1)
        # the keep-alive policy keeps (at least) the most recently used instance while its window lasts;
        # the autoscaler trims the ones above that and above its desired count (decisions.reap)
        idle = list(self.idle)
        plan = decisions.reap(now, [(i.last_used, i.inflight) for i in idle], live, floor, w.prewarm, w.keepalive,
                              self.busy > 0, self.last_end, d.desired if d is not None and d.valid else None)
        for n, expired in plan:
            inst = idle[n]
            self.idle.remove(inst)
            inst.kill_reason = KEEPALIVE_REASON if expired else SCALEDOWN_REASON
            inst.close()
        return len(plan)

    def evict_one(self, inst: Instance) -> int:
        """Close idle `inst` to make room on the node; returns the MB it reserved (0 if it was not idle)."""
        if inst.inflight or inst.state is not State.READY or inst not in self.idle:
            return 0
        self.idle.remove(inst)
        inst.kill_reason = EVICTED_REASON
        inst.close()
        self.evictions += 1
        return self.revision.spec.memory

    def stats(self) -> dict[str, int]:
        ready = [i for i in self.instances if i.state is State.READY]
        busy = sum(1 for i in ready if i.inflight > 0)
        return {
            "starting": self.starting,
            "idle": len(ready) - busy,
            "busy": busy,
            "queued": len(self.waiters),
            "cold_starts": self.cold_starts,
            "evictions": self.evictions,
        }

    async def drain(self, timeout: float, on_done: Callable[[], None] | None = None) -> None:
        """Stop taking new work (the caller has routed it elsewhere), let in-flight invocations finish
        within `timeout`, then stop every instance."""
        self.draining = True
        if self._shedding:
            self._recovered(force=True)
        if any(i.inflight for i in self.instances) or self.waiters:
            self._idle_event.clear()
            try:
                await asyncio.wait_for(self._idle_event.wait(), timeout)
            except TimeoutError:
                log.warning("%s: %d invocations still running after %.0f s: stopping", self.revision.key,
                            sum(i.inflight for i in self.instances), timeout)
        for fut in self.waiters:
            if not fut.done():
                fut.set_exception(PoolClosed(f"function {self.revision.function!r} was removed"))
        self.waiters.clear()
        for t in list(self._tasks):
            t.cancel()
        for inst in list(self.instances):
            inst.kill("function stopped")
        self.idle.clear()
        if on_done:
            on_done()
