"""Lambda durable functions (checkpoint and replay) as a pure step function, like `machine.step` for ASL.

The function itself (through AWS's SDK, unmodified) decides what to do; this core keeps its operations and says
when to run it again. An execution's state holds the operations the SDK checkpointed (in the wire shape of the
Lambda API's `Operation`, timestamps in epoch milliseconds), which invocation is current, and the timers and
callbacks that will make suspended work ready. Events:

* `start` — the first invocation is scheduled (its input: the durable invocation input, `DurableExecutionArn`,
  `CheckpointToken`, `InitialExecutionState` with every operation).
* `checkpoint` — `CheckpointDurableExecution`: updates from the running invocation. Each START/SUCCEED/FAIL/
  RETRY of a STEP, WAIT, CALLBACK, CONTEXT, CHAINED_INVOKE or the EXECUTION changes an operation; the reply
  (`Step.reply`) is the next checkpoint token and the operations changed.
* `task_result` — an invocation returned (`{"Status": SUCCEEDED|FAILED|PENDING, ...}`, or failed: retried twice,
  as Lambda retries, then the execution fails) or a chained invoke ended.
* `timer` — a wait ended, a step's retry is due, a callback timed out, an invocation retry is due.
* `callback` / `callback_heartbeat` — `SendDurableExecutionCallbackSuccess/Failure/Heartbeat`.
* `stop` — `StopDurableExecution`.

A suspended execution (its invocation returned PENDING) is invoked again as soon as one of its operations
changed since the invocation last saw them. The step is in two parts: `durable_run.py` (invocations, what makes
suspended work ready, history, the end) and `checkpoints.py` (the operation updates a checkpoint applies).
"""

from __future__ import annotations

import json
import random
from typing import Any

from polyfn.workflows.checkpoints import Durable
from polyfn.workflows.durable_run import CheckpointRefused
from polyfn.workflows.threads import Step

__all__ = ["CheckpointRefused", "DurableProgram", "execution_arn", "new_state", "step"]

def execution_arn(function_arn: str, name: str, key: str) -> str:
    """`…:function:NAME/durable-execution/<execution name>/<id>`: the SDK takes the EXECUTION operation's id from
    the ARN's last segment."""
    return f"{function_arn}/durable-execution/{name}/{key}"


def new_state(key: str, arn: str, function: str, input_payload: str, now: float, timeout: float | None = None) -> dict[str, Any]:
    ms = int(now * 1000)
    execution = {"Id": key, "Type": "EXECUTION", "Status": "STARTED", "StartTimestamp": ms,
                 "ExecutionDetails": {"InputPayload": input_payload}}
    return {"status": "RUNNING", "key": key, "arn": arn, "function": function, "ops": {key: execution}, "order": [key],
            "inv": 0, "seq": 0, "running": False, "attempts": 0, "updated": [], "timers": {}, "callbacks": {},
            "heartbeats": {}, "chained": {}, "event_id": 0, "timeout": timeout, "output": None, "error": None, "cause": None}


def step(state: dict[str, Any], event: dict[str, Any], now: float, rng: random.Random) -> Step:
    return Durable(state, now, rng).handle(event)


class DurableProgram:
    """The engine's program for a durable function (its "definition" is `{"function", "arn", "timeout"}`).

    Stored incrementally: the execution row keeps the state without its operations (small, whatever the number
    of steps), and each operation is a row of its own (`wf_ops`), written again only when a step changed it — a
    checkpoint costs the same at the 1,000th step as at the first."""

    stores_ops = True

    def __init__(self, text: str):
        d = json.loads(text)
        self.function, self.arn, self.timeout = d["function"], d["arn"], d.get("timeout")

    def new_state(self, ex: Any) -> dict[str, Any]:
        return new_state(ex.id, execution_arn(self.arn, ex.name, ex.id), self.function, ex.input, ex.started_at,
                         self.timeout)

    def step(self, state: dict[str, Any], event: dict[str, Any], now: float, rng: random.Random) -> Step:
        return step(state, event, now, rng)

    @staticmethod
    def input_again(state: dict[str, Any]) -> dict[str, Any]:
        """The parts of the current invocation's input that move as it checkpoints (for running it again): a
        token of the current invocation and every operation stored so far."""
        return {"CheckpointToken": f"{state['key']}.{state['inv']}.{state['seq']}",
                "InitialExecutionState": {"Operations": [state["ops"][i] for i in state["order"]], "NextMarker": ""}}

    @staticmethod
    def restore(text: str, op_bodies: list[str]) -> dict[str, Any]:
        """The state from the execution row and its operations' rows (in order)."""
        st: dict[str, Any] = json.loads(text)
        if "ops" in st:  # stored before operations had rows of their own: every operation is written at the next save
            st["~all"] = True
            return st
        ops = [json.loads(b) for b in op_bodies]
        st["ops"] = {o["Id"]: o for o in ops}
        st["order"] = [o["Id"] for o in ops]
        return st

    @staticmethod
    def persist(state: dict[str, Any], out: Step | None) -> tuple[str, list[tuple[str, int, str]]]:
        """What a step stores: the row's state text and the (id, place, JSON) of each operation it changed (all
        of them for a new execution, `out` None)."""
        order: list[str] = state["order"]
        ops: dict[str, Any] = state["ops"]
        ids = order if out is None or state.pop("~all", False) else out.changed
        rows = []
        last = len(order) - 1
        for op_id in ids:
            n = last
            while n >= 0 and order[n] != op_id:  # (changed operations are nearly always the newest)
                n -= 1
            rows.append((op_id, n, json.dumps(ops[op_id], separators=(",", ":"))))
        rest = {k: v for k, v in state.items() if k not in _NOT_IN_ROW}
        return json.dumps(rest, separators=(",", ":")), rows


_NOT_IN_ROW = frozenset({"ops", "order", "~all"})
