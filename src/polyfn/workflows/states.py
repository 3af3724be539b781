"""What each state Type does when a thread enters it, and how its wait ends: Pass, Succeed, Fail, Choice, Wait,
Task (its result, token answer, heartbeat and timeouts), Parallel and Map (their children's ends, a Map's
tolerated failures). The threads, history and timers these use are `threads.py`'s.
"""

from __future__ import annotations

import random
from typing import Any

from polyfn.workflows import errors
from polyfn.workflows.choice import parse_timestamp
from polyfn.workflows.dataflow import merge_result, select
from polyfn.workflows.definition import State
from polyfn.workflows.errors import StatesError
from polyfn.workflows.history import data, dumps, error_details
from polyfn.workflows.threads import Fail, Threads

MAX_PAYLOAD = 256 * 1024  # bytes of a task's input or result (AWS's limit)


class Interpreter(Threads):
    # -- data flow and the simple types ------------------------------------------------------------------------------

    def _effective(self, th: dict[str, Any], s: State, ctx: dict[str, Any] | None = None) -> Any:
        """InputPath, then Parameters."""
        ctx = ctx or self._ctx(th)
        value = select(s.input_path, th["input"], ctx, "InputPath")
        if s.parameters is not None:
            value = s.parameters.render(value, ctx, self.rng)
        return value

    def _result(self, th: dict[str, Any], s: State, result: Any) -> Any:
        """ResultSelector, then ResultPath: the state's output before OutputPath."""
        if s.result_selector is not None:
            result = s.result_selector.render(result, self._ctx(th), self.rng)
        return merge_result(th["input"], result, s.result_path)

    def _state_pass(self, th: dict[str, Any], s: State) -> None:
        result = s.result if s.has_result else self._effective(th, s)
        self._exit_state(th, s, merge_result(th["input"], result, s.result_path))

    def _state_succeed(self, th: dict[str, Any], s: State) -> None:
        self._exit_state(th, s, select(s.input_path, th["input"], self._ctx(th), "InputPath"))

    def _state_fail(self, th: dict[str, Any], s: State) -> None:
        ctx = self._ctx(th)
        error = s.error if s.error_path is None else _text(s.error_path, th["input"], ctx, self.rng)
        cause = s.cause if s.cause_path is None else _text(s.cause_path, th["input"], ctx, self.rng)
        raise Fail(error, cause)

    def _state_choice(self, th: dict[str, Any], s: State) -> None:
        ctx = self._ctx(th)
        value = select(s.input_path, th["input"], ctx, "InputPath")
        target = next((nxt for rule, nxt in s.choices if rule.evaluate(value, ctx)), s.default)
        if target is None:
            raise StatesError(errors.NO_CHOICE_MATCHED, f"No Choice Rule matched and there is no Default in state '{s.name}'")
        self._exit_state(th, s, select(s.output_path, value, ctx, "OutputPath"), target)

    def _state_wait(self, th: dict[str, Any], s: State) -> None:
        ctx = self._ctx(th)
        value = select(s.input_path, th["input"], ctx, "InputPath")
        if s.seconds is not None:
            at = self.now + s.seconds
        elif s.timestamp is not None:
            at = parse_timestamp(s.timestamp) or self.now
        elif s.seconds_path is not None:
            at = self.now + _positive(s.seconds_path, value, ctx, "SecondsPath", allow_zero=True)
        else:
            assert s.timestamp_path is not None
            ts = s.timestamp_path.get(value, ctx, "TimestampPath")
            parsed = parse_timestamp(ts)
            if parsed is None:
                raise StatesError(errors.RUNTIME, f"TimestampPath '{s.timestamp_path.text}' must select an RFC 3339 "
                                  f"timestamp, not {dumps(ts)}")
            at = parsed
        if at <= self.now:  # a time already past fires at once
            self._exit_state(th, s, value)
            return
        th["effective"] = value
        th["wait"] = {"kind": "timer", "id": self._set_timer(self._id("w"), th["id"], at)}

    def _state_task(self, th: dict[str, Any], s: State) -> None:
        res = s.resource
        assert res is not None
        token = f"{self.st['key']}.{self._id('k')}.{self.rng.getrandbits(96):024x}"
        ctx = self._ctx(th)
        if res.pattern == ".waitForTaskToken":
            ctx["Task"] = {"Token": token}
        value = self._effective(th, s, ctx)
        size = len(dumps(value))
        if size > MAX_PAYLOAD:
            raise StatesError(errors.DATA_LIMIT_EXCEEDED, f"the task input is {size} bytes; the limit is {MAX_PAYLOAD}")
        timeout = s.timeout if s.timeout_path is None else _positive(s.timeout_path, value, ctx, "TimeoutSecondsPath")
        heartbeat = s.heartbeat if s.heartbeat_path is None else _positive(s.heartbeat_path, value, ctx, "HeartbeatSecondsPath")
        wait: dict[str, Any] = {"kind": "task", "token": token, "pattern": res.pattern, "lambda": res.kind == "function",
                                "timeout": None, "heartbeat": None, "heartbeat_s": heartbeat}
        th["wait"] = wait
        self.st["tokens"][token] = th["id"]
        if timeout:
            wait["timeout"] = self._set_timer(self._id("o"), th["id"], self.now + timeout)
        if heartbeat and res.pattern == ".waitForTaskToken":
            wait["heartbeat"] = self._set_timer(self._id("h"), th["id"], self.now + heartbeat)
        if wait["lambda"]:
            details: dict[str, Any] = {"resource": res.text, **data("input", value)}
            if timeout:
                details["timeoutInSeconds"] = timeout
            self._event(th, "LambdaFunctionScheduled", details)
        else:
            details = {"resourceType": res.resource_type, "resource": res.resource_name, "region": self.st["region"],
                       "parameters": dumps(value)}
            if timeout:
                details["timeoutInSeconds"] = timeout
            if heartbeat:
                details["heartbeatInSeconds"] = heartbeat
            self._event(th, "TaskScheduled", details)
        self._task_history(th, wait, "Started", {})
        self.out.commands.append({"op": "invoke", "token": token, "kind": res.kind, "resource": res.text,
                                  "function": res.function, "qualifier": res.qualifier, "pattern": res.pattern,
                                  "payload": value, "timeout": timeout, "state": s.name})

    def _task_event(self, kind: str, ev: dict[str, Any]) -> None:
        token = ev["token"]
        tid = self.st["tokens"].get(token)
        th = self.st["threads"].get(tid) if tid else None
        wait = th.get("wait") if th else None
        if th is None or wait is None or wait.get("token") != token:
            self.out.accepted = False
            return
        callback = wait["pattern"] == ".waitForTaskToken"
        if kind == "heartbeat":
            if not callback:
                self.out.accepted = False
            elif wait.get("heartbeat"):
                self._cancel([wait["heartbeat"]])
                wait["heartbeat"] = self._set_timer(self._id("h"), th["id"], self.now + wait["heartbeat_s"])
            return
        if kind == "task_callback" and not callback:
            self.out.accepted = False
            return
        if kind == "task_result" and ev.get("ok") and (callback or ev.get("submitted")):
            # the function that received the token returned: the task now waits for the token's answer
            if not wait.get("submitted"):
                wait["submitted"] = True
                self._task_history(th, wait, "Submitted", data("output", ev.get("output")))
            return
        if ev.get("ok"):
            self._end_task(th, wait, "Succeeded", ev.get("output"), None, None)
        else:
            self._end_task(th, wait, "Failed", None, ev.get("error"), ev.get("cause"))

    def _task_history(self, th: dict[str, Any], wait: dict[str, Any], what: str, details: dict[str, Any]) -> None:
        if wait["lambda"]:
            if what != "Submitted":
                self._event(th, f"LambdaFunction{what}", details)
            return
        res = self._state_of(th).resource
        assert res is not None
        self._event(th, f"Task{what}", {"resourceType": res.resource_type, "resource": res.resource_name, **details})

    def _end_task(self, th: dict[str, Any], wait: dict[str, Any], what: str, output: Any, error: str | None,
                  cause: str | None) -> None:
        """The task of thread `th` ended (Succeeded, Failed or TimedOut): record it; the thread moves on."""
        self.st["tokens"].pop(wait["token"], None)
        th["wait"] = None
        timers = [t for t in (wait.get("timeout"), wait.get("heartbeat")) if t]
        if timers:
            self._cancel(timers)
        if what == "Succeeded":
            size = len(dumps(output))
            if size > MAX_PAYLOAD:
                what, error, cause = "Failed", errors.DATA_LIMIT_EXCEEDED, \
                    f"the task result is {size} bytes; the limit is {MAX_PAYLOAD}"
        if what == "Succeeded":
            self._task_history(th, wait, what, data("output", output))
            th["resume"] = {"result": output}
        else:
            self._task_history(th, wait, what, error_details(error, cause))
            th["resume"] = {"error": error, "cause": cause}
        self.ready.append(th["id"])

    # -- Parallel and Map -----------------------------------------------------------------------------

    def _state_parallel(self, th: dict[str, Any], s: State) -> None:
        value = self._effective(th, s)
        start = self._event(th, "ParallelStateStarted", {})
        th["wait"] = {"kind": "parallel", "results": [None] * len(s.branches), "pending": len(s.branches)}
        for i, branch in enumerate(s.branches):
            self._spawn(th["id"], [*th["loc"], (s.name, i)], branch.start_at, value, index=i, prev=start)

    def _state_map(self, th: dict[str, Any], s: State) -> None:
        ctx = self._ctx(th)
        value = select(s.input_path, th["input"], ctx, "InputPath")
        items = select(s.items_path, value, ctx, "ItemsPath")
        if not isinstance(items, list):
            raise StatesError(errors.RUNTIME, f"ItemsPath '{s.items_path.text if s.items_path else None}' of Map state "
                              f"'{s.name}' must select an array, not {dumps(items)[:200]}")
        limit = s.max_concurrency
        if s.max_concurrency_path is not None:
            limit = _positive(s.max_concurrency_path, value, ctx, "MaxConcurrencyPath", allow_zero=True)
        tol_count = s.raw.get("ToleratedFailureCount")
        tol_pct = s.raw.get("ToleratedFailurePercentage")
        if s.tolerated_count_path is not None:
            tol_count = _positive(s.tolerated_count_path, value, ctx, "ToleratedFailureCountPath", allow_zero=True)
        if s.tolerated_percentage_path is not None:
            tol_pct = s.tolerated_percentage_path.get(value, ctx, "ToleratedFailurePercentagePath")
        start = self._event(th, "MapStateStarted", {"length": len(items)})
        th["wait"] = {"kind": "map", "items": items, "effective": value, "next": 0, "running": 0,
                      "results": [None] * len(items), "done": 0, "failed": 0, "limit": limit or len(items) or 1,
                      "tol_count": tol_count, "tol_pct": tol_pct, "started": start}
        if not items:
            th["wait"] = None
            self._event(th, "MapStateSucceeded", {})
            self._exit_state(th, s, self._result(th, s, []))
            return
        self._map_fill(th, s)

    def _map_fill(self, th: dict[str, Any], s: State) -> None:
        wait = th["wait"]
        assert s.processor is not None
        while wait["next"] < len(wait["items"]) and wait["running"] < wait["limit"]:
            i = wait["next"]
            item = wait["items"][i]
            if s.item_selector is not None:
                ctx = self._ctx(th, Map={"Item": {"Index": i, "Value": item}})
                item = s.item_selector.render(wait["effective"], ctx, self.rng)
            wait["next"] += 1
            wait["running"] += 1
            self._event(th, "MapIterationStarted", {"name": s.name, "index": i})
            self._spawn(th["id"], [*th["loc"], (s.name, -1)], s.processor.start_at, item, index=i, prev=th["last"])

    def _child_done(self, parent: dict[str, Any], child: dict[str, Any], output: Any,
                    failure: tuple[str | None, str | None] | None) -> None:
        wait = parent["wait"]
        s = self._state_of(parent)
        if wait["kind"] == "parallel":
            if failure is not None:
                for t in [t for t in self.st["threads"].values() if t["parent"] == parent["id"]]:
                    self._abort(t)
                parent["wait"] = None
                self._event(parent, "ParallelStateFailed", {})
                parent["resume"] = {"error": failure[0], "cause": failure[1]}
                self.ready.append(parent["id"])
                return
            wait["results"][child["index"]] = output
            wait["pending"] -= 1
            if wait["pending"] == 0:
                parent["wait"] = None
                self._event(parent, "ParallelStateSucceeded", {})
                parent["resume"] = {"result": wait["results"]}
                self.ready.append(parent["id"])
            return
        i = child["index"]
        wait["running"] -= 1
        wait["done"] += 1
        if failure is not None:
            wait["failed"] += 1
            wait["results"][i] = {"Error": failure[0], "Cause": failure[1]}
            self._event(parent, "MapIterationFailed", {"name": s.name, "index": i})
            if self._map_intolerable(wait):
                for t in [t for t in self.st["threads"].values() if t["parent"] == parent["id"]]:
                    self._abort(t)
                    self._event(parent, "MapIterationAborted", {"name": s.name, "index": t["index"]})
                parent["wait"] = None
                self._event(parent, "MapStateFailed", {})
                if wait["tol_count"] is not None or wait["tol_pct"] is not None:
                    failure = (errors.EXCEED_TOLERATED_FAILURE, f"Map state '{s.name}': {wait['failed']} of "
                               f"{len(wait['items'])} iterations failed, more than it tolerates")
                parent["resume"] = {"error": failure[0], "cause": failure[1]}
                self.ready.append(parent["id"])
                return
        else:
            wait["results"][i] = output
            self._event(parent, "MapIterationSucceeded", {"name": s.name, "index": i})
        if wait["done"] == len(wait["items"]):
            parent["wait"] = None
            self._event(parent, "MapStateSucceeded", {})
            parent["resume"] = {"result": wait["results"]}
        else:
            parent["resume"] = {"fill": True}
        self.ready.append(parent["id"])

    @staticmethod
    def _map_intolerable(wait: dict[str, Any]) -> bool:
        count, pct, failed = wait["tol_count"], wait["tol_pct"], wait["failed"]
        if count is None and pct is None:
            return True
        if count is not None and failed > count:
            return True
        return pct is not None and failed * 100 > pct * len(wait["items"])


def _text(expr: Any, value: Any, ctx: Any, rng: random.Random) -> str:
    from polyfn.workflows.jsonpath import Path

    got = expr.get(value, ctx) if isinstance(expr, Path) else expr.evaluate(value, ctx, rng)
    return got if isinstance(got, str) else dumps(got)


def _positive(path: Any, value: Any, ctx: Any, field: str, allow_zero: bool = False) -> int:
    got = path.get(value, ctx, field)
    if isinstance(got, bool) or not isinstance(got, int) or got < (0 if allow_zero else 1):
        raise StatesError(errors.RUNTIME, f"{field} '{path.text}' must select a {'non-negative' if allow_zero else 'positive'} "
                          f"integer, not {dumps(got)}")
    return got
