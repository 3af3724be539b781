"""Deadlines for futures on the hot path, checked by one periodic sweep instead of a timer each.

Every invocation has a timeout, and so does every wait for a free instance. A timer per future
(`loop.call_later`, then `cancel`) measured ~2 µs of the event loop's time each, per request; a dict insert
and delete are ~0.1 µs. A sweep runs every `SWEEP` seconds while anything is registered (a single timer
handle, no task), so an idle node does no work. The price is precision: a deadline is noticed up to `SWEEP`
late, which no timeout of whole seconds notices.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from polyfn.loops import one_item

log = logging.getLogger("polyfn.scheduler")

SWEEP = 0.02


class Deadlines:
    """`add(fut, due, expire, *args)`: unless `discard(fut)` comes first, `expire(*args)` is called once
    `time.perf_counter()` has passed `due`."""

    __slots__ = ("_due", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._due: dict[asyncio.Future[Any], tuple[Any, ...]] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._loop = loop

    def add(self, fut: asyncio.Future[Any], due: float, expire: Callable[..., None], *args: Any) -> None:
        self._due[fut] = (due, expire, args)
        if self._handle is None:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            self._handle = loop.call_later(SWEEP, self._sweep)

    def discard(self, fut: asyncio.Future[Any]) -> None:
        self._due.pop(fut, None)

    def __len__(self) -> int:
        return len(self._due)

    def _sweep(self) -> None:
        self._handle = None
        now = time.perf_counter()
        due = self._due
        for fut in [f for f, entry in due.items() if entry[0] <= now]:
            _, expire, args = due.pop(fut)
            with one_item(log, "deadline sweep: expiring %r", expire):  # the next sweeps still come
                expire(*args)
        if due and self._loop is not None:
            self._handle = self._loop.call_later(SWEEP, self._sweep)
