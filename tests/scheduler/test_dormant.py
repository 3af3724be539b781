"""Which pools the once-a-second autoscaler/reaper tick may skip (`ticker.dormant`): table-driven, fake pools."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import pytest

from polyfn.scheduler.autoscaler import Decision
from polyfn.scheduler.keepalive import Window
from polyfn.scheduler.ticker import Ticker, dormant


def pool(**changes: Any) -> Any:
    prewarm = changes.pop("policy_prewarm", 0.0)
    base = {"instances": [], "starting": 0, "waiters": [], "busy": 0, "min_instances": 0, "prewarm_at": 0.0,
            "draining": False, "_shedding": False, "last_end": 0.0, "decision": None,
            "policy": SimpleNamespace(window=lambda: Window(prewarm, 600.0))}
    return SimpleNamespace(**{**base, **changes})


SETTLED = Decision(desired=0, panic=False, valid=True)


@pytest.mark.parametrize(("changes", "skipped"), [
    ({}, True),  # never used
    ({"instances": [object()]}, False),
    ({"starting": 1}, False),
    ({"waiters": [object()]}, False),
    ({"busy": 1}, False),
    ({"min_instances": 1}, False),  # the tick keeps its minimum
    ({"prewarm_at": 5.0}, False),  # a pre-warm planned
    ({"draining": True}, False),
    ({"_shedding": True}, False),
    ({"last_end": 9.0}, False),  # used, the autoscaler has not settled yet
    ({"last_end": 9.0, "decision": Decision(desired=1, panic=False, valid=True)}, False),
    ({"last_end": 9.0, "decision": Decision(desired=0, panic=False, valid=False)}, False),
    ({"last_end": 9.0, "decision": SETTLED}, True),  # used, idle, settled at zero
    ({"last_end": 9.0, "decision": SETTLED, "policy_prewarm": 60.0}, False),  # the policy may pre-warm later
])
def test_dormant(changes: dict[str, Any], skipped: bool) -> None:
    assert dormant(pool(**changes)) is skipped


class TickedPool:
    """A pool as the ticker sees it (`dormant`'s fields), counting its ticks."""

    def __init__(self, name: str, **changes: Any):
        self.__dict__.update(vars(pool(**changes)))
        self.revision = SimpleNamespace(key=f"{name}@1")
        self.reaped = 0

    def autoscale(self, now: float) -> None:
        pass

    def reap(self, now: float) -> None:
        self.reaped += 1


async def test_the_ticker_visits_awake_pools_and_a_start_wakes_one() -> None:
    """The once-a-second tick walks `manager.awake`, not every pool: a dormant pool leaves it, and asking for
    room to start an instance (`reserve`: every start, pre-warm and waiting caller) brings it back."""
    from polyfn.config import Settings
    from polyfn.instances.manager import InstanceManager

    mgr = InstanceManager.__new__(InstanceManager)  # only what the ticker and `reserve` read
    mgr.settings = Settings(autoscale_interval=1)
    idle, live = TickedPool("idle"), TickedPool("live", instances=[object()])
    mgr.pools = {idle, live}  # type: ignore[assignment]
    mgr.awake = {idle, live}  # type: ignore[assignment]
    mgr.quota_room = lambda p: "refused"  # (reserve answers before the memory budget)
    task = asyncio.create_task(Ticker(mgr.settings, mgr.awake).run())  # type: ignore[arg-type]
    try:
        for _ in range(50):
            if live.reaped >= 1 and idle not in mgr.awake:
                break
            await asyncio.sleep(0.1)
        assert live.reaped >= 1 and idle not in mgr.awake and idle.reaped == 0
        idle.instances = [object()]  # (what a start makes of it)
        assert mgr.reserve(idle) is False  # type: ignore[arg-type]
        assert idle in mgr.awake
        before = live.reaped
        for _ in range(50):
            if idle.reaped >= 1 and live.reaped > before:
                break
            await asyncio.sleep(0.1)
        assert idle.reaped >= 1
        ghost = TickedPool("ghost")  # a pool the manager forgot: its late start does not come back
        mgr.reserve(ghost)  # type: ignore[arg-type]
        assert ghost not in mgr.awake
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
