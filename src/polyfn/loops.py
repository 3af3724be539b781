"""Background loops survive any one item: the exception is logged and the loop goes on with the next.

Every loop of the node that works through items (callbacks, queued jobs, pools, activation records, broker
messages, deadlines, idle connections) wraps each item in `one_item`, and each pass too, pausing after a
failed pass (`if guard.failed: await asyncio.sleep(…)`) so a failure that repeats cannot spin. An exception
in one item must never end a loop: a loop task that ends with an exception nobody awaits is a service the
node no longer provides, and nothing says so.

Tracebacks are rate-limited per call site (the full stack once a minute, then one line each), so a poison
item retried in a loop cannot flood the log either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from types import TracebackType

#: seconds between two full tracebacks from the same call site
TRACEBACK_EVERY = 60.0

_last_traceback: dict[str, float] = {}


class one_item:  # (lower case: used like a function, `with one_item(log, "…"):`)
    """`with one_item(log, "callback for %s", job_id) as guard:` runs the block; an `Exception` it raises
    (never a cancellation) is logged as "callback for … failed; going on" and swallowed, and
    `guard.failed` is True afterwards."""

    __slots__ = ("args", "failed", "log", "what")

    def __init__(self, log: logging.Logger, what: str, *args: object):
        self.log, self.what, self.args = log, what, args
        self.failed = False

    def __enter__(self) -> one_item:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        self.failed = True
        now = time.monotonic()
        last = _last_traceback.get(self.what)
        if last is None or now - last >= TRACEBACK_EVERY:
            _last_traceback[self.what] = now
            self.log.error(self.what + " failed; going on", *self.args, exc_info=(kind, exc, tb))
        else:
            self.log.error(self.what + " failed; going on: %s: %s", *self.args, type(exc).__name__, exc)
        return True


async def cancelled(task: asyncio.Task[object] | None) -> None:
    """Cancel a background loop's task and wait until it has ended (nothing when there is none): how every
    loop's `stop` ends it."""
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
