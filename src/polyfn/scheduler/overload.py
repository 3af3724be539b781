"""A pool under a flood (the pool is in pool.py): whether a new caller would be refused now (scheduler/shed.py
decides, from what the pool sees), and the HTTP protocol's early question (`admits`) for a function whose
callers wait, asked before a call costs a task. `Overload` is that part of `Pool` (a base class of it)."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from polyfn.instances.instance import Instance
from polyfn.model import Revision
from polyfn.scheduler import shed
from polyfn.scheduler.refusals import Throttled
from polyfn.scheduler.starts import Starter


class Overload:
    """Owns whether the pool is watched (`_shedding`, in the manager's `shedding`), when it last refused, and
    the calls let in that have not reached `acquire` yet (`_passing`); reads the pool's queue and counts."""

    revision: Revision
    manager: Starter
    concurrency: int
    max_instances: int
    max_queue: int
    instances: list[Instance]
    waiters: deque[asyncio.Future[Instance]]
    starting: int
    busy: int
    wait_target: float
    recover_after: float
    _since: dict[asyncio.Future[Instance], float]
    _shedding: bool
    _shed_at: float
    _passing: int
    _capped_until: float
    _loop: asyncio.AbstractEventLoop | None

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

    def _wait_expired(self, fut: asyncio.Future[Instance], timeout: float) -> None:
        """A caller's wait in the queue ran out (`Pool.acquire`'s deadline)."""
        if not fut.done():
            fut.set_exception(Throttled(
                f"no instance of {self.revision.function!r} became free within {timeout:.1f} s", retry_after=1,
                reason=shed.WAIT_TIMEOUT))

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
            self.manager.shedding[self.revision.function] = self  # type: ignore[assignment]

    def _recovered(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._shed_at < self.recover_after:
            return  # (a flood that pauses: leaving and coming back lets one read's worth of calls in unchecked)
        self._shedding = False
        shedding = self.manager.shedding
        if shedding.get(self.revision.function) is self:
            del shedding[self.revision.function]
