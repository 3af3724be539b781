"""Drive the pure interpreter like the engine does, with Python callables as functions and a simulated clock.

`run(definition, input, functions)` starts an execution and carries out its commands until it ends: an
`invoke` calls `functions[name](payload)` (an exception becomes a task failure named after its class), a
`timer` advances the clock to the earliest one. Returns the final state and every history event.
"""

from __future__ import annotations

import json
import random
from typing import Any

from polyfn.workflows import definition, machine

T0 = 1_800_000_000.0  # 2027-01-15: real-looking times, so RFC 3339 timestamps compare as they would


class TaskError(Exception):
    """Raised by a test function to fail its task with an explicit error name."""

    def __init__(self, error: str, cause: str = ""):
        super().__init__(cause)
        self.error, self.cause = error, cause


class Sim:
    def __init__(self, defn: Any, functions: dict[str, Any] | None = None, now: float = T0, seed: int = 7):
        self.machine = definition.parse(json.dumps(defn) if isinstance(defn, dict) else defn)
        self.functions = functions or {}
        self.now = now
        self.rng = random.Random(seed)
        self.state = machine.new_state("e1", {"Id": "arn:aws:states:us-east-1:000000000000:execution:sm:run",
                                              "Name": "run", "StartTime": machine.iso(now), "RoleArn": "arn:role"},
                                       {"Id": "arn:aws:states:us-east-1:000000000000:stateMachine:sm", "Name": "sm"})
        self.events: list[dict[str, Any]] = []
        self.timers: dict[str, float] = {}
        self.pending: list[dict[str, Any]] = []  # invoke commands not yet answered
        self.invocations: list[tuple[str, Any]] = []
        self.held: list[dict[str, Any]] = []  # waitForTaskToken invokes, answered by the test

    def apply(self, event: dict[str, Any]) -> machine.Step:
        out = machine.step(self.machine, self.state, event, self.now, self.rng)
        self.events.extend(out.events)
        for c in out.commands:
            if c["op"] == "timer":
                self.timers[c["id"]] = c["at"]
            elif c["op"] == "cancel":
                for i in c["ids"]:
                    self.timers.pop(i, None)
            else:
                self.pending.append(c)
        return out

    def start(self, value: Any) -> None:
        self.apply({"type": "start", "input": value})

    def run_pending(self) -> None:
        while self.pending:
            c = self.pending.pop(0)
            self.invocations.append((c["function"] or c["kind"], c["payload"]))
            name = c["function"] or c["payload"]["FunctionName"].rsplit(":function:", 1)[-1].split(":")[0]
            fn = self.functions[name]
            payload = c["payload"] if c["kind"] == "function" else c["payload"].get("Payload")
            try:
                result = fn(payload)
            except TaskError as e:
                self.apply({"type": "task_result", "token": c["token"], "ok": False, "error": e.error, "cause": e.cause})
                continue
            except Exception as e:
                self.apply({"type": "task_result", "token": c["token"], "ok": False, "error": type(e).__name__,
                            "cause": str(e)})
                continue
            if c["pattern"] == ".waitForTaskToken":
                self.held.append(c)
            if c["kind"] == "lambda:invoke":
                result = {"ExecutedVersion": "$LATEST", "Payload": result, "StatusCode": 200}
            self.apply({"type": "task_result", "token": c["token"], "ok": True, "output": result})

    def run(self, value: Any = None, max_rounds: int = 10_000) -> dict[str, Any]:
        self.start(value)
        return self.finish(max_rounds)

    def finish(self, max_rounds: int = 10_000) -> dict[str, Any]:
        for _ in range(max_rounds):
            self.run_pending()
            if self.state["status"] != "RUNNING" or not self.timers:
                break
            tid, at = min(self.timers.items(), key=lambda kv: (kv[1], kv[0]))
            del self.timers[tid]
            self.now = max(self.now, at)
            self.apply({"type": "timer", "id": tid})
        return self.state

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


def run(defn: Any, value: Any = None, functions: dict[str, Any] | None = None, **kw: Any) -> Sim:
    sim = Sim(defn, functions, **kw)
    sim.run(value)
    return sim
