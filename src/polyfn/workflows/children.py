"""Nested executions: a `states:startExecution` Task of a parent starts a child execution. With `.sync` (`:2`) the
parent's task waits for the child's end (the engine's `resume` work item tells it); without, it ends at once with the
child's ARN and start date.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from polyfn.workflows import arns
from polyfn.workflows.errors import WorkflowError
from polyfn.workflows.history import dumps
from polyfn.workflows.store import FINAL, Execution, WorkflowStore

#: the service's `start_execution(machine, name, input_text, namespace, parent=...)`
StartExecution = Callable[..., Awaitable[Execution]]


async def start_child(start_execution: StartExecution, store: WorkflowStore, parent_id: str,
                      command: dict[str, Any]) -> dict[str, Any] | None:
    """A `states:startExecution` Task: start the child (named after the task unless `Name` is given, so a task
    run again after a crash finds the child it started); the event that tells the parent (None: nothing yet)."""
    params = command["payload"] if isinstance(command["payload"], dict) else {}
    token = command["token"]
    parent = await store.get_execution(parent_id)
    namespace = parent.namespace if parent is not None else "default"
    fail = {"type": "task_result", "token": token, "ok": False}
    name = arns.machine_name(str(params.get("StateMachineArn", "")))
    if name is None:
        return {**fail, "error": "StepFunctions.InvalidArnException", "cause": f"Invalid Arn: {params.get('StateMachineArn')!r}"}
    value = params.get("Input", {})
    text = value if isinstance(value, str) else dumps(value)
    child_name = params.get("Name") or f"{(parent.name if parent else 'task')[:40]}-{token.rsplit('.', 1)[-1][:16]}"
    try:
        child = await start_execution(name, child_name, text, namespace,
                                           parent={"execution": parent_id, "token": token, "pattern": command["pattern"]})
    except WorkflowError as e:
        return {**fail, "error": f"StepFunctions.{e.code}Exception" if not e.code.endswith("Exception") else
                f"StepFunctions.{e.code}", "cause": e.message}
    started = {"ExecutionArn": arns.execution_arn(child.machine, child.name, namespace=child.namespace), "StartDate": int(child.started_at * 1000)}
    if command["pattern"].startswith(".sync"):
        if child.status in FINAL:  # ended within its first step: the resume item is already on its way
            return None
        return {"type": "task_result", "token": token, "ok": True, "submitted": True, "output": started}
    return {"type": "task_result", "token": token, "ok": True, "output": started}
