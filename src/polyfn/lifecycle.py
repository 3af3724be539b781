"""One ordered list of what a node starts, and the stop that undoes exactly what started, in reverse.

The composition root (`node.py`) builds every part complete first; this list only runs their `start`s in
dependency order. Stopping walks the parts that started, last first, so a start that fails halfway still
stops what it had started (and never what it had not). A stop that fails is logged and the earlier parts
still stop: activation records are flushed and the store is closed whatever happened before.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("polyfn")

#: a start or stop: a plain call or a coroutine function
Action = Callable[[], Awaitable[object] | object]


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    start: Action | None = None
    stop: Action | None = None


async def _run(action: Action) -> None:
    out = action()
    if inspect.isawaitable(out):
        await out


class Lifecycle:
    """`add` steps in the order they must start; `start()` runs them; `stop()` undoes those that started."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.started: list[Step] = []

    def add(self, name: str, start: Action | None = None, stop: Action | None = None) -> None:
        self.steps.append(Step(name, start, stop))

    async def start(self) -> None:
        """Start every step in order. When one fails, the steps already started are stopped (in reverse) and
        the failure is raised: nothing is left running that no `stop()` would reach. A step that fails is
        not stopped: its own start cleans up what it had begun."""
        for step in self.steps:
            if step in self.started:
                continue
            try:
                if step.start is not None:
                    await _run(step.start)
            except BaseException:
                log.error("start: %s failed; stopping the %d part(s) started before it", step.name,
                          len(self.started))
                await self.stop()
                raise
            self.started.append(step)

    async def stop(self) -> None:
        """Stop what started, last first. A failing stop is logged and the earlier steps still stop."""
        while self.started:
            step = self.started.pop()
            if step.stop is None:
                continue
            try:
                await _run(step.stop)
            except Exception:
                log.exception("shutdown: %s failed; continuing", step.name)
