"""How a durable execution runs, besides what its checkpoints change: its invocations (retried as Lambda retries
async invocations), what makes suspended work ready again (a wait's or a retry's timer, a callback's answer or
timeout, a chained invoke's end), its history events and its end. The checkpoints (the SDK's operation updates)
are `checkpoints.py`'s (`Durable`, a `DurableRun`); `durable.step` is the face.
"""

from __future__ import annotations

import json
import random
from typing import Any

from polyfn.workflows.threads import Step

MAX_INVOCATION_ATTEMPTS = 3  # an invocation that fails runs twice more, as Lambda retries async invocations
RETRY_DELAYS = (1.0, 2.0)
FINAL = {"SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"}
_TERMINAL_OPS = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "STOPPED"}

class CheckpointRefused(Exception):
    """A checkpoint the execution cannot take: a stale token, an unknown operation, a bad update."""

class DurableRun:
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
            self.reply = None if op else {"unknown": True}  # (no such callback: not found, not timed out)
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


    # -- what the checkpoints add (checkpoints.py) ------------------------------------------------------

    def _checkpoint(self, token: str, updates: list[dict[str, Any]]) -> None:
        """`CheckpointDurableExecution` from the running invocation: apply its updates, set the reply."""
        raise NotImplementedError
