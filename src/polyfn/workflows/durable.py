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
changed since the invocation last saw them.
"""

from __future__ import annotations

import json
import random
from typing import Any

from polyfn.workflows.machine import Step

MAX_INVOCATION_ATTEMPTS = 3  # an invocation that fails runs twice more, as Lambda retries async invocations
RETRY_DELAYS = (1.0, 2.0)
FINAL = {"SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"}
_TERMINAL_OPS = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "STOPPED"}


class CheckpointRefused(Exception):
    """A checkpoint the execution cannot take: a stale token, an unknown operation, a bad update."""


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
    return _Durable(state, now, rng).handle(event)


class _Durable:
    def __init__(self, state: dict[str, Any], now: float, rng: random.Random):
        self.st, self.now, self.rng = state, now, rng
        self.ms = int(now * 1000)
        self.out = Step()
        self.reply: dict[str, Any] | None = None

    def handle(self, ev: dict[str, Any]) -> Step:
        kind = ev["type"]
        st = self.st
        if kind == "start":
            self._event("ExecutionStarted", st["key"], {"Input": {"Payload": st["ops"][st["key"]]["ExecutionDetails"]["InputPayload"]}})
            if st.get("timeout"):
                self._timer("execution-timeout", {"kind": "timeout"}, now_plus=st["timeout"])
            self._invoke()
        elif st["status"] != "RUNNING":
            self.out.accepted = False
            if kind == "checkpoint":
                raise CheckpointRefused("the durable execution has ended")
        elif kind == "checkpoint":
            self._checkpoint(ev["token"], ev.get("updates") or [])
        elif kind == "task_result":
            self._task_result(ev)
        elif kind == "timer":
            self._fire(ev["id"])
        elif kind in ("callback", "callback_heartbeat"):
            self._callback(kind, ev)
        elif kind == "stop":
            err = ev.get("error") or {}
            self._finish("ABORTED", error=err.get("ErrorType") or ev.get("error_type"), cause=err.get("ErrorMessage"))
        else:
            raise ValueError(f"unknown event type {kind!r}")
        self.out.reply = self.reply
        return self.out

    # -- invocations ----------------------------------------------------------------------------------

    def _token(self) -> str:
        self.st["seq"] += 1
        return f"{self.st['key']}.{self.st['inv']}.{self.st['seq']}"

    def _invoke(self) -> None:
        """Run the function again (or for the first time) with every operation."""
        st = self.st
        st["inv"] += 1
        st["running"] = True
        updated, st["updated"] = st["updated"], []
        payload = {"DurableExecutionArn": st["arn"], "CheckpointToken": self._token(),
                   "InitialExecutionState": {"Operations": [st["ops"][i] for i in st["order"]], "NextMarker": ""},
                   "UpdatedOperationIds": updated}
        self.out.commands.append({"op": "invoke", "token": f"{st['key']}.i{st['inv']}.{st['attempts']}", "kind": "durable",
                                  "function": st["function"], "payload": payload, "state": "invocation"})

    def _task_result(self, ev: dict[str, Any]) -> None:
        st = self.st
        token: str = ev["token"]
        if token in st["chained"]:
            self._chained_done(token, ev)
            return
        if token != f"{st['key']}.i{st['inv']}.{st['attempts']}" or not st["running"]:
            self.out.accepted = False
            return
        st["running"] = False
        out = ev.get("output") if ev.get("ok") else None
        status = out.get("Status") if isinstance(out, dict) else None
        execution = st["ops"][st["key"]]
        if status == "SUCCEEDED" or execution["Status"] == "SUCCEEDED":
            result = out.get("Result") if isinstance(out, dict) and out.get("Result") else \
                execution.get("Result", out.get("Result") if isinstance(out, dict) else None)
            self._event("InvocationCompleted", st["key"], {})
            self._finish("SUCCEEDED", output=result)
        elif status == "FAILED" or execution["Status"] == "FAILED":
            err = (out or {}).get("Error") or execution.get("Error") or {}
            self._event("InvocationCompleted", st["key"], {"Error": {"Payload": err}})
            self._finish("FAILED", error=err.get("ErrorType"), cause=err.get("ErrorMessage"), error_object=err)
        elif status == "PENDING":
            st["attempts"] = 0
            self._event("InvocationCompleted", st["key"], {})
            if st["updated"]:
                self._invoke()
        else:  # the invocation itself failed (an unhandled error, a crash, a timeout): Lambda retries it
            error = ev.get("error") or "Runtime.Unknown"
            cause = ev.get("cause") or (json.dumps(out) if out is not None else "")
            self._event("InvocationCompleted", st["key"], {"Error": {"Payload": {"ErrorType": error, "ErrorMessage": cause}}})
            if st["attempts"] + 1 >= MAX_INVOCATION_ATTEMPTS:
                self._finish("FAILED", error=error, cause=cause)
                return
            st["attempts"] += 1
            self._timer(f"retry-{st['inv']}-{st['attempts']}", {"kind": "invoke"},
                        now_plus=RETRY_DELAYS[min(st["attempts"] - 1, len(RETRY_DELAYS) - 1)])

    # -- checkpoints ----------------------------------------------------------------------------------

    def _checkpoint(self, token: str, updates: list[dict[str, Any]]) -> None:
        st = self.st
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 3 or parts[0] != st["key"] or parts[1] != str(st["inv"]) or not st["running"]:
            raise CheckpointRefused("Invalid checkpoint token: it is not the current invocation's")
        changed: list[str] = []
        ended = False
        for u in updates:
            op_id = u.get("Id")
            kind, action = u.get("Type"), u.get("Action")
            if not op_id or kind not in _APPLY or action not in ("START", "SUCCEED", "FAIL", "RETRY", "CANCEL"):
                raise CheckpointRefused(f"invalid operation update {json.dumps(u)[:200]}")
            _APPLY[kind](self, u)
            if op_id not in changed:
                changed.append(op_id)
            ended = ended or kind == "EXECUTION"
        # operations that changed meanwhile (a callback answered, a wait ended) go back with this reply
        for op_id in st["updated"]:
            if op_id not in changed:
                changed.append(op_id)
        st["updated"] = []
        reply: dict[str, Any] = {"NewExecutionState": {"Operations": [st["ops"][i] for i in changed]}}
        if not ended or st["status"] == "RUNNING":
            reply["CheckpointToken"] = self._token()
        self.reply = reply

    def _op(self, u: dict[str, Any], status: str, **details: Any) -> dict[str, Any]:
        st = self.st
        op = st["ops"].get(u["Id"])
        if op is None:
            op = {"Id": u["Id"], "Type": u["Type"], "StartTimestamp": self.ms}
            for f in ("ParentId", "Name", "SubType"):
                if u.get(f):
                    op[f] = u[f]
            st["ops"][u["Id"]] = op
            st["order"].append(u["Id"])
        elif op["Type"] != u["Type"]:
            raise CheckpointRefused(f"operation {u['Id']} is a {op['Type']}, not a {u['Type']}")
        self._touch(u["Id"])
        op["Status"] = status
        if status in _TERMINAL_OPS:
            op["EndTimestamp"] = self.ms
        for k, v in details.items():
            op.setdefault(k, {}).update(v)
        return op

    def _apply_step(self, u: dict[str, Any]) -> None:
        action = u["Action"]
        prev = self.st["ops"].get(u["Id"])
        attempt = (prev or {}).get("StepDetails", {}).get("Attempt", 0)
        if action == "START":
            self._op(u, "STARTED", StepDetails={"Attempt": attempt})
            self._event("StepStarted", u["Id"], {}, u)
        elif action == "SUCCEED":
            self._op(u, "SUCCEEDED", StepDetails={"Result": u.get("Payload")})
            self._event("StepSucceeded", u["Id"], {"Result": {"Payload": u.get("Payload")}}, u)
        elif action == "FAIL":
            self._op(u, "FAILED", StepDetails={"Error": u.get("Error") or {}})
            self._event("StepFailed", u["Id"], {"Error": {"Payload": u.get("Error") or {}}}, u)
        elif action == "RETRY":
            delay = max(1, int((u.get("StepOptions") or {}).get("NextAttemptDelaySeconds") or 1))
            details: dict[str, Any] = {"Attempt": attempt + 1, "NextAttemptTimestamp": self.ms + delay * 1000}
            if u.get("Error"):
                details["Error"] = u["Error"]
            if u.get("Payload") is not None:
                details["Result"] = u["Payload"]
            self._op(u, "PENDING", StepDetails=details)
            self._event("StepFailed", u["Id"], {"Error": {"Payload": u.get("Error") or {}}, "RetryDetails": {
                "CurrentAttempt": attempt + 1, "NextAttemptDelaySeconds": delay}}, u)
            self._timer(f"step-{u['Id']}-{attempt + 1}", {"kind": "step", "op": u["Id"]}, now_plus=delay)
        else:
            raise CheckpointRefused(f"a STEP cannot {action}")

    def _apply_wait(self, u: dict[str, Any]) -> None:
        if u["Action"] == "START":
            secs = int((u.get("WaitOptions") or {}).get("WaitSeconds") or 0)
            self._op(u, "STARTED", WaitDetails={"ScheduledEndTimestamp": self.ms + secs * 1000})
            self._event("WaitStarted", u["Id"], {"Duration": secs, "ScheduledEndTimestamp": self.now + secs}, u)
            self._timer(f"wait-{u['Id']}", {"kind": "wait", "op": u["Id"]}, now_plus=secs)
        elif u["Action"] == "CANCEL":
            self._op(u, "CANCELLED")
            self._cancel_for(u["Id"])
            self._event("WaitCancelled", u["Id"], {}, u)
        else:
            raise CheckpointRefused(f"a WAIT cannot {u['Action']}")

    def _apply_callback(self, u: dict[str, Any]) -> None:
        if u["Action"] != "START":
            raise CheckpointRefused(f"a CALLBACK cannot {u['Action']} (answer it with SendDurableExecutionCallback*)")
        if u["Id"] in self.st["ops"]:
            return  # started already (a replayed START)
        callback_id = f"{self.st['key']}.{u['Id']}.{self.rng.getrandbits(64):016x}"
        self._op(u, "STARTED", CallbackDetails={"CallbackId": callback_id})
        self.st["callbacks"][callback_id] = u["Id"]
        opts = u.get("CallbackOptions") or {}
        if opts.get("TimeoutSeconds"):
            self._timer(f"cb-timeout-{u['Id']}", {"kind": "callback", "op": u["Id"], "why": "Callback.Timeout"},
                        now_plus=opts["TimeoutSeconds"])
        if opts.get("HeartbeatTimeoutSeconds"):
            self.st["heartbeats"][u["Id"]] = opts["HeartbeatTimeoutSeconds"]
            self._timer(f"cb-heartbeat-{u['Id']}", {"kind": "callback", "op": u["Id"], "why": "Callback.Heartbeat"},
                        now_plus=opts["HeartbeatTimeoutSeconds"])
        self._event("CallbackStarted", u["Id"], {"CallbackId": callback_id, "Timeout": opts.get("TimeoutSeconds"),
                                                 "HeartbeatTimeout": opts.get("HeartbeatTimeoutSeconds")}, u)

    def _apply_context(self, u: dict[str, Any]) -> None:
        action = u["Action"]
        if action == "START":
            self._op(u, "STARTED")
            self._event("ContextStarted", u["Id"], {}, u)
        elif action == "SUCCEED":
            details: dict[str, Any] = {"Result": u.get("Payload")}
            if (u.get("ContextOptions") or {}).get("ReplayChildren"):
                details["ReplayChildren"] = True
            self._op(u, "SUCCEEDED", ContextDetails=details)
            self._event("ContextSucceeded", u["Id"], {"Result": {"Payload": u.get("Payload")}}, u)
        elif action == "FAIL":
            self._op(u, "FAILED", ContextDetails={"Error": u.get("Error") or {}})
            self._event("ContextFailed", u["Id"], {"Error": {"Payload": u.get("Error") or {}}}, u)
        else:
            raise CheckpointRefused(f"a CONTEXT cannot {action}")

    def _apply_invoke(self, u: dict[str, Any]) -> None:
        if u["Action"] != "START":
            raise CheckpointRefused(f"a CHAINED_INVOKE cannot {u['Action']}")
        if u["Id"] in self.st["ops"]:
            return
        fn = str((u.get("ChainedInvokeOptions") or {}).get("FunctionName") or "")
        if not fn:
            raise CheckpointRefused("a CHAINED_INVOKE needs ChainedInvokeOptions.FunctionName")
        self._op(u, "STARTED", ChainedInvokeDetails={})
        token = f"{self.st['key']}.c.{u['Id']}"
        self.st["chained"][token] = u["Id"]
        try:
            payload = json.loads(u["Payload"]) if u.get("Payload") else None
        except ValueError:
            payload = u["Payload"]
        self.out.commands.append({"op": "invoke", "token": token, "kind": "lambda:invoke", "function": "",
                                  "payload": {"FunctionName": fn, "Payload": payload}, "state": u.get("Name") or u["Id"]})
        self._event("ChainedInvokeStarted", u["Id"], {"FunctionName": fn}, u)

    def _apply_execution(self, u: dict[str, Any]) -> None:
        execution = self.st["ops"][self.st["key"]]
        self._touch(self.st["key"])
        if u["Action"] == "SUCCEED":
            execution.update(Status="SUCCEEDED", Result=u.get("Payload"))
        elif u["Action"] == "FAIL":
            execution.update(Status="FAILED", Error=u.get("Error") or {})
        else:
            raise CheckpointRefused(f"the EXECUTION cannot {u['Action']}")

    # -- what makes suspended work ready ----------------------------------------------------------------

    def _ready(self, op_id: str) -> None:
        """Operation `op_id` changed while the function did not see it: run the function again if it is
        suspended (or it learns with its next checkpoint)."""
        if op_id not in self.st["updated"]:
            self.st["updated"].append(op_id)
        if not self.st["running"]:
            self._invoke()

    def _fire(self, timer_id: str) -> None:
        t = self.st["timers"].pop(timer_id, None)
        if t is None:
            self.out.accepted = False
            return
        ops = self.st["ops"]
        kind = t["kind"]
        if t.get("op"):
            self._touch(t["op"])
        if kind == "timeout":
            self._finish("TIMED_OUT", error="Execution.TimedOut", cause="the durable execution ran longer than its "
                         "ExecutionTimeout")
        elif kind == "invoke":
            self._invoke()
        elif kind == "wait" and ops.get(t["op"], {}).get("Status") == "STARTED":
            ops[t["op"]]["Status"], ops[t["op"]]["EndTimestamp"] = "SUCCEEDED", self.ms
            self._event("WaitSucceeded", t["op"], {}, ops[t["op"]])
            self._ready(t["op"])
        elif kind == "step" and ops.get(t["op"], {}).get("Status") == "PENDING":
            ops[t["op"]]["Status"] = "READY"
            self._ready(t["op"])
        elif kind == "callback" and ops.get(t["op"], {}).get("Status") == "STARTED":
            op = ops[t["op"]]
            op["Status"], op["EndTimestamp"] = "TIMED_OUT", self.ms
            op["CallbackDetails"]["Error"] = {"ErrorType": t["why"], "ErrorMessage": "the callback timed out" if
                                              t["why"] == "Callback.Timeout" else "the callback sent no heartbeat in time"}
            self._cancel_for(t["op"])
            self._event("CallbackTimedOut", t["op"], {"Error": {"Payload": op["CallbackDetails"]["Error"]}}, op)
            self._ready(t["op"])
        else:
            self.out.accepted = False

    def _callback(self, kind: str, ev: dict[str, Any]) -> None:
        op_id = self.st["callbacks"].get(ev["callback_id"])
        op = self.st["ops"].get(op_id) if op_id else None
        if op is None or op["Status"] != "STARTED":
            self.out.accepted = False
            return
        if kind == "callback_heartbeat":
            secs = self.st["heartbeats"].get(op_id)
            if secs:
                self._cancel([f"cb-heartbeat-{op_id}"])
                self._timer(f"cb-heartbeat-{op_id}", {"kind": "callback", "op": op_id, "why": "Callback.Heartbeat"},
                            now_plus=secs)
            return
        self._cancel_for(op_id)  # type: ignore[arg-type]
        self._touch(op_id)  # type: ignore[arg-type]
        op["EndTimestamp"] = self.ms
        if ev.get("ok"):
            op["Status"] = "SUCCEEDED"
            op["CallbackDetails"]["Result"] = ev.get("result")
            self._event("CallbackSucceeded", op_id, {"Result": {"Payload": ev.get("result")}}, op)  # type: ignore[arg-type]
        else:
            op["Status"] = "FAILED"
            op["CallbackDetails"]["Error"] = ev.get("error") or {}
            self._event("CallbackFailed", op_id, {"Error": {"Payload": ev.get("error") or {}}}, op)  # type: ignore[arg-type]
        self._ready(op_id)  # type: ignore[arg-type]

    def _chained_done(self, token: str, ev: dict[str, Any]) -> None:
        op_id = self.st["chained"].pop(token)
        op = self.st["ops"][op_id]
        self._touch(op_id)
        op["EndTimestamp"] = self.ms
        if ev.get("ok"):
            out = ev.get("output")
            payload = out.get("Payload") if isinstance(out, dict) and "Payload" in out else out
            op["Status"] = "SUCCEEDED"
            op["ChainedInvokeDetails"]["Result"] = json.dumps(payload)
            self._event("ChainedInvokeSucceeded", op_id, {"Result": {"Payload": op["ChainedInvokeDetails"]["Result"]}}, op)
        else:
            err = {"ErrorType": ev.get("error") or "Lambda.Unknown", "ErrorMessage": ev.get("cause") or ""}
            op["Status"] = "FAILED"
            op["ChainedInvokeDetails"]["Error"] = err
            self._event("ChainedInvokeFailed", op_id, {"Error": {"Payload": err}}, op)
        self._ready(op_id)

    # -- plumbing -------------------------------------------------------------------------------------

    def _touch(self, op_id: str) -> None:
        """Operation `op_id` changes in this step: it is stored again (`DurableProgram.persist`)."""
        if op_id not in self.out.changed:
            self.out.changed.append(op_id)

    def _timer(self, timer_id: str, what: dict[str, Any], now_plus: float) -> None:
        self.st["timers"][timer_id] = what
        self.out.commands.append({"op": "timer", "id": timer_id, "at": self.now + now_plus})

    def _cancel(self, ids: list[str]) -> None:
        ids = [i for i in ids if self.st["timers"].pop(i, None) is not None]
        if ids:
            self.out.commands.append({"op": "cancel", "ids": ids})

    def _cancel_for(self, op_id: str) -> None:
        self._cancel([t for t, what in self.st["timers"].items() if what.get("op") == op_id])

    def _finish(self, status: str, output: Any = None, error: str | None = None, cause: str | None = None,
                error_object: dict[str, Any] | None = None) -> None:
        st = self.st
        if st["timers"]:
            self._cancel(list(st["timers"]))
        st["status"], st["output"], st["error"], st["cause"] = status, output, error, cause
        st["running"] = False
        execution = st["ops"][st["key"]]
        self._touch(st["key"])
        execution["Status"] = {"ABORTED": "STOPPED"}.get(status, status)
        execution["EndTimestamp"] = self.ms
        kind = {"SUCCEEDED": "ExecutionSucceeded", "FAILED": "ExecutionFailed", "ABORTED": "ExecutionStopped",
                "TIMED_OUT": "ExecutionTimedOut"}[status]
        details: dict[str, Any] = {"Result": {"Payload": output}} if status == "SUCCEEDED" else {
            "Error": {"Payload": error_object or {"ErrorType": error, "ErrorMessage": cause}}}
        self._event(kind, st["key"], details)

    def _event(self, kind: str, op_id: str, details: dict[str, Any], u: dict[str, Any] | None = None) -> None:
        """A history event (GetDurableExecutionHistory's `Event`; `id`/`type`/`timestamp` for the store)."""
        self.st["event_id"] += 1
        ev: dict[str, Any] = {"id": self.st["event_id"], "type": kind, "timestamp": self.now, "Id": op_id}
        for f in ("Name", "SubType", "ParentId"):
            if u and u.get(f):
                ev[f] = u[f]
        ev[kind + "Details"] = details
        self.out.events.append(ev)


_APPLY = {"STEP": _Durable._apply_step, "WAIT": _Durable._apply_wait, "CALLBACK": _Durable._apply_callback,
          "CONTEXT": _Durable._apply_context, "CHAINED_INVOKE": _Durable._apply_invoke,
          "EXECUTION": _Durable._apply_execution}


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
