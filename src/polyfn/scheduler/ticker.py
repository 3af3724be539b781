"""The pools' ticker: each second (of the keep-alive policies' clock) the keep-alive reaper, every
`autoscale_interval` one autoscaler decision per pool — over the awake pools only (the instance manager's
`awake`: a pool joins when it asks for room to start an instance, instances/manager.py `reserve`, and leaves
when the tick finds it `dormant`), so a node of 10,000 mostly idle functions pays for its live ones.
"""

from __future__ import annotations

import asyncio
import logging
import time

from polyfn.config import Settings
from polyfn.loops import one_item
from polyfn.scheduler.pool import Pool

log = logging.getLogger("polyfn.manager")


def dormant(pool: Pool) -> bool:
    """Nothing for the autoscaler or the reaper to do: no instance, none starting, no caller, no minimum, no
    pre-warm planned or possible, and the autoscaler never ran (a pool never used) or settled at zero. Such a
    pool's tick would decide 0 and close nothing; skipping it keeps the once-a-second tick proportional to the
    functions in use, not to those deployed."""
    if pool.instances or pool.starting or pool.waiters or pool.busy or pool.min_instances or pool.prewarm_at \
            or pool.draining or pool._shedding:
        return False
    if pool.last_end == 0.0:
        return True
    d = pool.decision
    return d is not None and d.valid and d.desired == 0 and pool.policy.window().prewarm == 0


class Ticker:
    """Runs the ticker over `awake` (a live set the instance manager keeps) from `start` until `stop`."""

    def __init__(self, settings: Settings, awake: set[Pool]):
        self.settings = settings
        self.awake = awake
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        """Each second: keep-alive reaping; every `autoscale_interval`: one autoscaler decision per pool."""
        next_scale = 0.0
        tick = 1.0 / self.settings.keepalive_time_scale  # (a second of the keep-alive policies' clock)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            scale = now >= next_scale
            if scale:
                next_scale = now + self.settings.autoscale_interval - 0.5
            for n, pool in enumerate(list(self.awake)):
                if dormant(pool):  # (it comes back through `reserve`)
                    self.awake.discard(pool)
                    continue
                # one pool's bug must not stop scaling for every other function
                with one_item(log, "%s: autoscaler/reaper", pool.revision.key):
                    if scale:
                        pool.autoscale(now)
                    pool.reap(now)
                if n % 256 == 255:
                    await asyncio.sleep(0)  # many live pools: calls are served between slices of the tick
