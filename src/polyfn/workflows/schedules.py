"""Cron schedules that start a state machine (what an EventBridge schedule targeting a state machine does on AWS).

A state machine's `schedules` (`[{"cron": "*/5 * * * *", "timezone": "UTC", "input": {...}}]`, the cron trigger's
syntax: `triggers/cron.py`) become durable work items of kind `schedule`, one per schedule, due at its next tick.
When one is due, the node holding it starts an execution named after the tick (`cron-<n>-<epoch>`: a tick never
starts two executions, even when two nodes fire it) and the item moves to the next tick. Ticks missed while no
node ran are run once (the latest), never as a burst.
"""

from __future__ import annotations

from typing import Any

from polyfn.triggers.base import TriggerConfigError
from polyfn.triggers.cron import next_fire
from polyfn.triggers.cron import validate as validate_cron

MAX_SCHEDULES = 10


def validate(raw: Any) -> list[dict[str, Any]]:
    """Checked schedules (ValueError naming the schedule and what is wrong)."""
    if not isinstance(raw, list):
        raise ValueError("schedules must be a list of {cron, timezone?, input?}")
    if len(raw) > MAX_SCHEDULES:
        raise ValueError(f"a state machine has at most {MAX_SCHEDULES} schedules")
    out = []
    for i, s in enumerate(raw):
        if not isinstance(s, dict) or set(s) - {"cron", "timezone", "input"}:
            raise ValueError(f"schedules[{i}] must be an object with cron, and optionally timezone and input")
        try:
            checked = validate_cron({"schedule": s.get("cron"), "timezone": s.get("timezone", "UTC")})
        except TriggerConfigError as e:
            raise ValueError(f"schedules[{i}]: {e}") from None
        out.append({"cron": checked["schedule"], "timezone": checked["timezone"], "input": s.get("input", {})})
    return out


def item_id(namespace: str, machine: str, index: int) -> str:
    return f"schedule/{namespace}/{machine}/{index}"


def next_tick(schedule: dict[str, Any], after: float) -> float:
    return next_fire(schedule["cron"], schedule["timezone"], after)


def execution_name(index: int, tick: float) -> str:
    return f"cron-{index}-{int(tick)}"
