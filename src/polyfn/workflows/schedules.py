"""Cron schedules that start a state machine (what an EventBridge schedule targeting a state machine does on AWS).

A state machine's `schedules` (`[{"cron": "*/5 * * * *", "timezone": "UTC", "input": {...}}]`, the cron trigger's
syntax: `triggers/cron.py`) become durable work items of kind `schedule`, one per schedule, due at its next tick.
When one is due, the node holding it starts an execution named after the tick (`cron-<n>-<epoch>`: a tick never
starts two executions, even when two nodes fire it) and the item moves to the next tick. Ticks missed while no
node ran are run once (the latest), never as a burst.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from polyfn.triggers.base import TriggerConfigError
from polyfn.triggers.cron import next_fire
from polyfn.triggers.cron import validate as validate_cron
from polyfn.workflows.errors import WorkflowError
from polyfn.workflows.history import dumps
from polyfn.workflows.store import Machine, WorkflowStore, WorkItem

if TYPE_CHECKING:
    from polyfn.workflows.engine import Engine

log = logging.getLogger("polyfn.workflows")

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


class Schedules:
    """A state machine's schedules as durable work: `put` stores an item per schedule at its next tick (replacing
    the previous ones); `due` (the engine's `on_schedule`) starts the tick's execution and moves the item on."""

    def __init__(self, store: WorkflowStore, engine: Engine, start_execution: Callable[..., Awaitable[Any]],
                 clock: Callable[[], float]):
        self.store, self.engine, self.start_execution, self.clock = store, engine, start_execution, clock

    async def put(self, m: Machine) -> None:
        now = self.clock()
        items = [WorkItem(item_id(m.namespace, m.name, i), "", "schedule", next_tick(s, now),
                          {"namespace": m.namespace, "machine": m.name, "index": i}, self.engine.owner,
                          next_tick(s, now) + self.engine.work.lease)
                 for i, s in enumerate(m.meta.get("schedules", []))]
        await self.store.replace_work(item_id(m.namespace, m.name, 0)[:-1], items)
        for item in items:
            self.engine.hold(item)

    async def due(self, item: WorkItem) -> None:
        p = item.payload
        m = await self.store.get_machine(p["namespace"], p["machine"])
        rules = m.meta.get("schedules", []) if m is not None else []
        if m is None or p["index"] >= len(rules):
            await self.store.drop_work([item.id])
            return
        rule = rules[p["index"]]
        try:
            await self.start_execution(m.name, execution_name(p["index"], item.due), dumps(rule.get("input", {})),
                                       m.namespace)
        except WorkflowError as e:
            if e.code != "ExecutionAlreadyExists":  # (another node fired this tick already)
                log.warning("workflows: schedule %s of %s did not start an execution: %s", p["index"], m.name, e.message)
        nxt = next_tick(rule, max(self.clock(), item.due))
        await self.store.postpone(item.id, nxt, self.engine.owner, nxt + self.engine.work.lease)
        item.due = nxt
        self.engine.hold(item)
