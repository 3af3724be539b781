"""What a stored step means for the execution's row and its durable work, as pure functions of the step
(workflows/engine.py `fold` and `work_of`); the engine that stores them is tests/workflows/test_engine.py."""

from __future__ import annotations

import json
from typing import Any

from polyfn.workflows.engine import AslProgram, fold, work_of
from polyfn.workflows.store import Execution
from polyfn.workflows.threads import Step

NOW = 1_000.0


def _ex(status: str = "RUNNING", parent: dict[str, Any] | None = None, kind: str = "asl") -> Execution:
    return Execution(id="e1", namespace="default", machine="m", revision=1, name="run", kind=kind, status=status,
                     input="{}", output=None, error=None, cause=None, started_at=NOW - 5, stopped_at=None, state="{}",
                     version=1, parent=json.dumps(parent) if parent else None)


def _step(*commands: dict[str, Any]) -> Step:
    out = Step()
    out.commands.extend(commands)
    return out


def test_each_command_becomes_work_held_by_this_node_for_a_lease() -> None:
    invoke = {"op": "invoke", "token": "e1.k1.ab", "payload": {"n": 1}}
    items, cancel = work_of(_ex(), _step(invoke, {"op": "timer", "id": "w2", "at": NOW + 30},
                                         {"op": "cancel", "ids": ["o3", "h4"]}), NOW, "node-a", 60.0)
    assert [(i.id, i.execution, i.kind, i.due, i.owner, i.lease) for i in items] == [
        ("e1.k1.ab", "e1", "invoke", NOW, "node-a", NOW + 60),  # a task runs now
        ("e1/w2", "e1", "timer", NOW + 30, "node-a", NOW + 90),  # a timer is held until it is due, and a lease on
    ]
    assert items[0].payload == invoke and items[0].payload is not invoke  # a snapshot: the state changes on
    assert items[1].payload == {"timer": "w2"}
    assert cancel == ["e1/o3", "e1/h4"]


def test_a_child_that_ended_tells_a_parent_waiting_with_sync() -> None:
    parent = {"execution": "p1", "token": "p1.k7.cd", "pattern": ".sync:2"}
    items, _ = work_of(_ex("SUCCEEDED", parent), _step(), NOW, "node-a", 60.0)
    assert [(i.id, i.execution, i.kind, i.payload) for i in items] == [
        ("e1/resume", "p1", "resume", {"token": "p1.k7.cd", "child": "e1", "pattern": ".sync:2"})]
    # a parent that did not wait (no .sync), or a child still running: nothing to tell
    assert work_of(_ex("SUCCEEDED", {**parent, "pattern": ""}), _step(), NOW, "node-a", 60.0)[0] == []
    assert work_of(_ex("RUNNING", parent), _step(), NOW, "node-a", 60.0)[0] == []


def test_the_row_shows_the_states_status_output_and_end() -> None:
    prog = AslProgram('{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}')
    ex = _ex()
    state = {"status": "SUCCEEDED", "output": {"n": 2}, "error": None, "cause": None}
    assert fold(ex, state, prog, None, NOW) == []  # a States Language program stores no operations
    assert (ex.status, json.loads(ex.output or ""), ex.stopped_at, json.loads(ex.state)) == \
        ("SUCCEEDED", {"n": 2}, NOW, state)
    failed = _ex()
    fold(failed, {"status": "FAILED", "output": None, "error": "E", "cause": "C"}, prog, None, NOW)
    assert (failed.status, failed.output, failed.error, failed.cause) == ("FAILED", None, "E", "C")
    running = _ex()
    fold(running, {"status": "RUNNING", "output": None, "error": None, "cause": None}, prog, None, NOW)
    assert (running.status, running.stopped_at) == ("RUNNING", None)
