"""A pool of instances serving one revision: hand out free instances, start new ones when callers wait
(starts.py), keep callers in a bounded queue and refuse early under a flood (overload.py), reap idle instances
after their keep-alive.

All methods run on the server's event loop; nothing here blocks. The fast path (`try_acquire` /
`release` with a free instance) is a few list operations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from polyfn.instances.instance import Instance, State
from polyfn.model import Revision
from polyfn.scheduler import decisions, shed
from polyfn.scheduler.autoscaler import AutoscalerConfig, AutoscalerState, Decision, Stats, decide
from polyfn.scheduler.behind import Behind
from polyfn.scheduler.deadlines import Deadlines
from polyfn.scheduler.keepalive import IdlePrior, Policy, make_policy
from polyfn.scheduler.overload import Overload
from polyfn.scheduler.refusals import PoolClosed, StartFailed, Throttled
from polyfn.scheduler.starts import INIT_BACKOFF_MIN, Starter, Starts

log = logging.getLogger("polyfn.pool")

KEEPALIVE_REASON = "keep-alive expired"
SCALEDOWN_REASON = "scaled down"
EVICTED_REASON = "evicted for memory"


class Pool(Starts, Overload, Behind):
    """One revision's instances and callers. Its parts: handing out instances (here), starting them
    (`Starts`, starts.py), refusing early under a flood (`Overload`, overload.py), writing calls behind others on
    ordered instances (`Behind`, behind.py), and the ticker's autoscaler
    and keep-alive steps (here, applying scheduler/autoscaler.py and decisions.py)."""

    def __init__(self, revision: Revision, manager: Starter, max_queue: int, keepalive: float,
                 keepalive_policy: str = "fixed", idle_prior: IdlePrior | None = None, time_scale: float = 1.0):
        self.revision = revision
        self.manager = manager
        spec = revision.spec
        self.concurrency = spec.concurrency
        self.min_instances = spec.min_instances
        self.max_instances = spec.max_instances
        self.keepalive = spec.keepalive if spec.keepalive is not None else keepalive
        self.policy: Policy = make_policy(getattr(spec, "keepalive_policy", None) or keepalive_policy,
                                          self.keepalive, spec.memory, idle_prior, time_scale)
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
        Behind.__init__(self)  # (calls written behind others: behind.py)
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
                if inst.ordered:
                    self._listed(inst)
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

    def _without_wait(self) -> Instance | None:
        """A free instance; else a place behind a running call when none may start (behind.py: asked before a
        start, which would count as one that may not); else a function zygote's offered child, at once."""
        return self.try_acquire() or (self._behind() if self.ahead else None) or self._start_at_once()

    async def acquire(self, timeout: float) -> Instance:
        inst = self._without_wait()
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
            inst = await fut
        except BaseException as e:
            if (isinstance(e, asyncio.CancelledError) and fut.done() and not fut.cancelled()
                    and fut.exception() is None):
                self.release(fut.result())  # we were handed an instance as we were cancelled
            if fut in self.waiters:  # (a timeout, a cancellation, a refusal: it may still be queued)
                self.waiters.remove(fut)
            raise
        finally:
            deadlines.discard(fut)
            del self._since[fut]
        # Handed an instance, it was taken off the queue (`_hand_over`'s popleft): the queue is not searched (a
        # scan of every waiter).
        return inst

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
        if inst.inflight >= self.concurrency:  # (an ordered instance whose call behind now runs: its place is free)
            self._freed_behind(inst)
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
                if inst.ordered and inst.inflight == 1:
                    self._listed(inst)
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

    # --- autoscaler and keep-alive (called by the ticker, ticker.py, with the monotonic clock) ---------

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

    def on_lost(self, inst: Instance) -> None:
        """An instance ended (crash, kill, keep-alive expiry): forget it, replace it if needed."""
        metrics = self.manager.metrics
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
