"""Which pools the once-a-second autoscaler/reaper tick may skip (`manager.dormant`): table-driven, fake pools."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from polyfn.scheduler.autoscaler import Decision
from polyfn.scheduler.keepalive import Window
from polyfn.scheduler.manager import dormant


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
