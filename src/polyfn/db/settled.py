"""`Settled`: a future for the outcome of a write to the tables, whose waiters resume as it is settled."""

from __future__ import annotations

import asyncio
from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]  # (the C module's: current_task() reads it)
from collections.abc import Callable
from typing import Any


class Settled:
    """A write's outcome, a future whose waiters resume as it is settled, not in a later turn of the loop.

    An `asyncio.Future` schedules its done callbacks with `call_soon`: a task awaiting a commit resumed one turn of
    the loop after it, and under a light load (one or two requests per wake-up of the node) that turn, its wake-up
    and the answer's write were a good part of a PutItem's CPU. Settled on the loop's thread (the commit runs there,
    or the writer thread's `call_soon_threadsafe` brings the outcome there), a `Settled` runs its callbacks at once
    (a task's wake-up: the task's next step runs right then, in its own context) — unless it is settled inside a
    task's step (a task cancelled by another): then, as a future's, in the loop's next turn. It is what `asyncio.isfuture` and
    a task accept from an `await`: the future protocol (`_asyncio_future_blocking`, `get_loop`, `add_done_callback`,
    `result`, `cancel` …)."""

    _asyncio_future_blocking = False
    _PENDING, _DONE, _CANCELLED = 0, 1, 2

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._state = 0
        self._result: Any = None
        self._exc: BaseException | None = None
        self._callbacks: list[tuple[Callable[[Any], None], Any]] | None = None

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def done(self) -> bool:
        return self._state != 0

    def cancelled(self) -> bool:
        return self._state == 2

    def result(self) -> Any:
        if self._state == 1:
            if self._exc is not None:
                raise self._exc
            return self._result
        if self._state == 2:
            raise asyncio.CancelledError(*((self._result,) if self._result is not None else ()))
        raise asyncio.InvalidStateError("Result is not ready.")

    def exception(self) -> BaseException | None:
        if self._state == 0:
            raise asyncio.InvalidStateError("Exception is not set.")
        if self._state == 2:
            self.result()
        return self._exc

    def add_done_callback(self, fn: Callable[[Any], None], *, context: Any = None) -> None:
        if self._state != 0:
            self._loop.call_soon(fn, self, context=context)
        elif self._callbacks is None:
            self._callbacks = [(fn, context)]
        else:
            self._callbacks.append((fn, context))

    def remove_done_callback(self, fn: Callable[[Any], None]) -> int:
        cbs = self._callbacks or []
        keep = [(f, c) for f, c in cbs if f != fn]
        self._callbacks = keep
        return len(cbs) - len(keep)

    def set_result(self, result: Any) -> None:
        self._settle(result, None)

    def set_exception(self, exc: BaseException) -> None:
        self._settle(None, exc)

    def _settle(self, result: Any, exc: BaseException | None) -> None:
        if self._state != 0:
            raise asyncio.InvalidStateError("invalid state")
        self._result, self._exc = result, exc
        self._state = 1
        self._run_callbacks()

    def cancel(self, msg: Any = None) -> bool:
        if self._state != 0:
            return False
        self._state = 2
        self._result = msg
        self._run_callbacks()
        return True

    def _run_callbacks(self) -> None:
        cbs, self._callbacks = self._callbacks, None
        if cbs is None:
            return
        if _current_tasks.get(self._loop) is not None:  # settled inside a task's step (a `cancel`): another task
            for fn, ctx in cbs:  # cannot step inside it, so its callbacks go to the loop as a future's do
                self._loop.call_soon(fn, self, context=ctx)
            return
        for fn, ctx in cbs:
            try:
                if ctx is None:
                    fn(self)
                else:
                    ctx.run(fn, self)
            except BaseException as e:  # (as the loop reports a callback's failure, and goes on)
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                self._loop.call_exception_handler({"message": "a write's done callback failed", "exception": e,
                                                   "future": self})

    def __await__(self) -> Any:
        if self._state == 0:
            self._asyncio_future_blocking = True
            yield self
        return self.result()

    __iter__ = __await__
