"""A durable execution's checkpoints (`CheckpointDurableExecution`): each START, SUCCEED, FAIL, RETRY or CANCEL of a
STEP, WAIT, CALLBACK, CONTEXT, CHAINED_INVOKE or the EXECUTION the SDK sends, applied to the execution's
operations (in the Lambda API's `Operation` shape); the reply is the next checkpoint token and the operations
that changed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from polyfn.workflows.durable_run import _TERMINAL_OPS, CheckpointRefused, DurableRun

# the limits of an OperationUpdate's fields as the Lambda API's model has them (botocore's lambda service-2.json)
MAX_PAYLOAD = 6_291_456  # characters of one update's Payload
MAX_RESULT = 1_048_576  # bytes of SendDurableExecutionCallbackSuccess's Result
MAX_SECONDS = 31_622_400  # a year: the longest wait or retry delay
_TEXT = {"Id": 64, "ParentId": 64, "Name": 256, "SubType": 32, "Payload": MAX_PAYLOAD}
_ID = re.compile(r"[a-zA-Z0-9_-]+")  # an Id, ParentId or SubType
_OPTIONS: dict[str, dict[str, Any]] = {
    "StepOptions": {"NextAttemptDelaySeconds": MAX_SECONDS}, "WaitOptions": {"WaitSeconds": MAX_SECONDS},
    "CallbackOptions": {"TimeoutSeconds": 99_999_999, "HeartbeatTimeoutSeconds": 99_999_999},
    "ChainedInvokeOptions": {"FunctionName": str, "TenantId": str}, "ContextOptions": {"ReplayChildren": bool}}
_ACTIONS = ("START", "SUCCEED", "FAIL", "RETRY", "CANCEL")


def error_problem(err: Any) -> str | None:
    """What is wrong with an `ErrorObject` (a checkpoint's or a callback's Error, a stop's error), or None."""
    if not isinstance(err, dict):
        return "Error must be an object"
    for f in ("ErrorType", "ErrorMessage", "ErrorData"):
        if err.get(f) is not None and not isinstance(err[f], str):
            return f"Error.{f} must be a string"
    trace = err.get("StackTrace")
    if trace is not None and (not isinstance(trace, list) or not all(isinstance(t, str) for t in trace)):
        return "Error.StackTrace must be a list of strings"
    return None


def _option_problem(name: str, opts: Any) -> str | None:
    if not isinstance(opts, dict):
        return f"{name} must be an object"
    for f, kind in _OPTIONS[name].items():
        v = opts.get(f)
        if v is None:
            continue
        if isinstance(kind, int):  # (its largest value)
            if isinstance(v, bool) or not isinstance(v, int | float) or v != v or v in (float("inf"), float("-inf")) \
                    or v != int(v) or not 0 <= v <= kind:
                return f"{name}.{f} must be a whole number of seconds from 0 to {kind}"
        elif not isinstance(v, kind):
            return f"{name}.{f} must be a {'boolean' if kind is bool else 'string'}"
    return None


def update_problem(u: Any) -> str | None:
    """What is wrong with one `OperationUpdate` of a checkpoint (its shape: types, lengths, numbers), or None:
    each is checked before any is applied, so that nothing is stored the SDK or a reader could not take back."""
    if not isinstance(u, dict):
        return "each update must be an object"
    if not isinstance(u.get("Type"), str) or not isinstance(u.get("Action"), str) or u["Type"] not in _APPLY \
            or u["Action"] not in _ACTIONS:
        return f"an update's Type must be one of {', '.join(_APPLY)} and its Action one of {', '.join(_ACTIONS)}"
    for f, most in _TEXT.items():
        v = u.get(f)
        if v is None and f != "Id":
            continue
        if not isinstance(v, str) or not (v or f != "Id"):
            return f"an update's {f} must be a string (a non-empty one for Id)"
        if len(v) > most:
            return f"an update's {f} is longer than {most} characters"
        if f in ("Id", "ParentId", "SubType") and v and not _ID.fullmatch(v):
            return f"an update's {f} must be letters, digits, '-' or '_'"
    problem = error_problem(u["Error"]) if u.get("Error") is not None else None
    for name in _OPTIONS:
        if problem is None and u.get(name) is not None:
            problem = _option_problem(name, u[name])
    return problem


def _check_updates(updates: list[Any], key: str) -> None:
    """Refuse the checkpoint (before it changed anything) if one of its updates is malformed."""
    for n, u in enumerate(updates):
        problem = update_problem(u)
        if problem is None and u["Type"] == "EXECUTION" and u["Id"] != key:
            problem = "the EXECUTION operation's Id is the execution's (the last part of its ARN)"
        if problem:
            raise CheckpointRefused(f"Updates[{n}]: {problem}")


class Durable(DurableRun):
    # -- the checkpoint and its operations ------------------------------------------------------------------------------

    def _checkpoint(self, token: str, updates: list[dict[str, Any]]) -> None:
        st = self.st
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 3 or parts[0] != st["key"] or parts[1] != str(st["inv"]) or not st["running"]:
            raise CheckpointRefused("Invalid checkpoint token: it is not the current invocation's")
        if parts[2] != str(st["seq"]):  # (each checkpoint consumes its token, as on AWS: an old one is out of order)
            raise CheckpointRefused("Invalid checkpoint token: a later checkpoint consumed it")
        _check_updates(updates, st["key"])
        changed: list[str] = []
        ended = False
        for u in updates:
            op_id, kind = u["Id"], u["Type"]
            if st["ops"][st["key"]]["Status"] != "STARTED":  # (the EXECUTION succeeded or failed: nothing follows)
                raise CheckpointRefused("the durable execution has ended: its EXECUTION operation is "
                                        + st["ops"][st["key"]]["Status"])
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
        except (ValueError, RecursionError):  # (not JSON, or nested too deeply: passed on as the text it is)
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


_APPLY = {"STEP": Durable._apply_step, "WAIT": Durable._apply_wait, "CALLBACK": Durable._apply_callback,
          "CONTEXT": Durable._apply_context, "CHAINED_INVOKE": Durable._apply_invoke,
          "EXECUTION": Durable._apply_execution}
