"""The States Language interpreter as a pure step function.

    step(machine, state, event, now, rng) -> Step(commands, events, accepted)

`state` is an execution's whole runtime state as plain JSON (it is stored as is); `step` updates it in place
(callers pass a copy they can drop if storing fails). `event` is what happened: the execution started, a task
returned or failed, a timer fired, a task token was answered or heart-beaten, a stop was asked for. The result
lists the commands to carry out (`invoke` a task, set a `timer`, `cancel` timers) and the history events to
record. No clock is read and no randomness is drawn here except from `now` and `rng`, so executions replay
identically in tests.

The interpreter is in two parts: `threads.py` runs an execution (its threads, their failures, history and
timers, its end) and `states.py` says what each state Type does.
"""

from __future__ import annotations

import random
from typing import Any

from polyfn.workflows.definition import Machine
from polyfn.workflows.states import MAX_PAYLOAD, Interpreter
from polyfn.workflows.threads import EXECUTION_TIMEOUT_TIMER, MAX_EVENTS, MAX_STEP_TRANSITIONS, Step, iso

__all__ = ["EXECUTION_TIMEOUT_TIMER", "MAX_EVENTS", "MAX_PAYLOAD", "MAX_STEP_TRANSITIONS", "Step", "iso", "new_state",
           "step"]


def new_state(key: str, execution: dict[str, Any], state_machine: dict[str, Any], region: str = "us-east-1") -> dict[str, Any]:
    """A fresh execution state. `key` prefixes its task tokens (the engine finds the execution from a token);
    `execution` and `state_machine` are the context object's `Execution` (Id, Name, RoleArn, StartTime) and
    `StateMachine` (Id, Name)."""
    return {"status": "RUNNING", "key": key, "seq": 0, "event_id": 0, "threads": {}, "tokens": {}, "timers": {},
            "ctx": {"Execution": execution, "StateMachine": state_machine}, "region": region,
            "output": None, "error": None, "cause": None}


def step(machine: Machine, state: dict[str, Any], event: dict[str, Any], now: float, rng: random.Random) -> Step:
    return Interpreter(machine, state, now, rng).handle(event)
