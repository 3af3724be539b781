"""The States Language interpreter as a pure step function.

    step(machine, state, event, now, rng) -> Step(commands, events, accepted)

`state` is an execution's whole runtime state as plain JSON (it is stored as is); `step` updates it in place
(callers pass a copy they can drop if storing fails). `event` is what happened: the execution started, a task
returned or failed, a timer fired, a task token was answered or heart-beaten, a stop was asked for. The result
lists the commands to carry out (`invoke` a task, set a `timer`, `cancel` timers) and the history events to
record. No clock is read and no randomness is drawn here except from `now` and `rng`, so executions replay
identically in tests.

An execution is a set of *threads*: the root runs the top-level states; each Parallel branch and each Map
iteration is a child thread running its nested machine, and its parent waits for its children. A thread runs
states until one has to wait (a task, a timer, children); Pass and Choice chains run within one step.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from polyfn.workflows import errors
from polyfn.workflows.choice import parse_timestamp
from polyfn.workflows.dataflow import merge_result, select
from polyfn.workflows.definition import Machine, Retrier, State
from polyfn.workflows.errors import StatesError
from polyfn.workflows.history import DETAILS, FINAL, data, dumps, error_details
from polyfn.workflows.retry import delay as retry_delay

MAX_EVENTS = 25_000  # history events per execution (AWS's limit)
MAX_STEP_TRANSITIONS = 10_000  # states one step may run without waiting (a Pass/Choice loop)
MAX_PAYLOAD = 256 * 1024  # bytes of a task's input or result (AWS's limit)
EXECUTION_TIMEOUT_TIMER = "execution-timeout"


class Step:
    __slots__ = ("accepted", "changed", "commands", "events", "reply")

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.accepted = True  # False: the event named a token or timer this execution no longer waits for
        self.reply: dict[str, Any] | None = None  # what the caller of the event gets back (a durable checkpoint)
        self.changed: list[str] = []  # the operations a durable function's step changed (stored one row each)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def new_state(key: str, execution: dict[str, Any], state_machine: dict[str, Any], region: str = "us-east-1") -> dict[str, Any]:
    """A fresh execution state. `key` prefixes its task tokens (the engine finds the execution from a token);
    `execution` and `state_machine` are the context object's `Execution` (Id, Name, RoleArn, StartTime) and
    `StateMachine` (Id, Name)."""
    return {"status": "RUNNING", "key": key, "seq": 0, "event_id": 0, "threads": {}, "tokens": {}, "timers": {},
            "ctx": {"Execution": execution, "StateMachine": state_machine}, "region": region,
            "output": None, "error": None, "cause": None}


def step(machine: Machine, state: dict[str, Any], event: dict[str, Any], now: float, rng: random.Random) -> Step:
    return _Interpreter(machine, state, now, rng).handle(event)


class _Fail(Exception):
    """A thread's current state failed with (error, cause)."""

    def __init__(self, error: str | None, cause: str | None):
        self.error, self.cause = error, cause


class _Interpreter:
    def __init__(self, machine: Machine, state: dict[str, Any], now: float, rng: random.Random):
        self.root, self.st, self.now, self.rng = machine, state, now, rng
        self.out = Step()
        self.ready: list[str] = []  # threads to run before the step ends
        self.transitions = 0
        self.finishing = False

    # -- events ---------------------------------------------------------------------------------------

    def handle(self, ev: dict[str, Any]) -> Step:
        kind = ev["type"]
        st = self.st
        if kind == "start":
            if ev.get("role"):
                st["ctx"]["Execution"]["RoleArn"] = ev["role"]
            self._start(ev.get("input"))
        elif st["status"] != "RUNNING":
            self.out.accepted = False
        elif kind == "stop":
            self._finish("ABORTED", error=ev.get("error"), cause=ev.get("cause"))
        elif kind == "timer":
            self._timer(ev["id"])
        elif kind in ("task_result", "task_callback", "heartbeat"):
            self._task_event(kind, ev)
        else:
            raise ValueError(f"unknown event type {kind!r}")
        while self.ready and st["status"] == "RUNNING":
            self._run(self.ready.pop(0))
        return self.out

    def _start(self, value: Any) -> None:
        st = self.st
        st["ctx"]["Execution"]["Input"] = value
        self._event(None, "ExecutionStarted", {**data("input", value), "roleArn": st["ctx"]["Execution"].get("RoleArn", "")})
        if self.root.timeout:
            self._set_timer(EXECUTION_TIMEOUT_TIMER, "", self.now + self.root.timeout)
        self._spawn(None, [], self.root.start_at, value)

    def _timer(self, timer_id: str) -> None:
        tid = self.st["timers"].pop(timer_id, None)
        if tid is None:
            self.out.accepted = False
            return
        if timer_id == EXECUTION_TIMEOUT_TIMER:
            self._finish("TIMED_OUT", error=errors.TIMEOUT, cause="The execution ran longer than its TimeoutSeconds")
            return
        th = self.st["threads"].get(tid)
        wait = th.get("wait") if th else None
        if th is None or wait is None:
            self.out.accepted = False
        elif wait["kind"] in ("timer", "retry") and wait.get("id") == timer_id:
            th["wait"] = None
            if wait["kind"] == "timer":  # a Wait state's time has come
                th["resume"] = {"exit": th.pop("effective", None)}
            self.ready.append(tid)
        elif wait["kind"] == "task" and timer_id in (wait.get("timeout"), wait.get("heartbeat")):
            hb = timer_id == wait.get("heartbeat")
            err = errors.HEARTBEAT_TIMEOUT if hb else errors.TIMEOUT
            cause = ("The task sent no heartbeat for HeartbeatSeconds" if hb
                     else "The task did not finish within TimeoutSeconds")
            self._end_task(th, wait, "TimedOut", None, err, cause)
        else:
            self.out.accepted = False

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

    # -- threads --------------------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        self.st["seq"] += 1
        return f"{prefix}{self.st['seq']}"

    def _spawn(self, parent: str | None, loc: list[Any], start: str, value: Any, index: int | None = None,
               prev: int | None = None) -> str:
        tid = self._id("t")
        self.st["threads"][tid] = {"id": tid, "parent": parent, "loc": loc, "state": start, "input": value,
                                   "entered": self.now, "last": prev if prev is not None else self.st["event_id"],
                                   "retries": {}, "rc": 0, "wait": None, "index": index, "new": True}
        self.ready.append(tid)
        return tid

    def _machine(self, loc: list[Any]) -> Machine:
        m = self.root
        for name, branch in loc:
            s = m.states[name]
            m = s.branches[branch] if branch >= 0 else s.processor  # type: ignore[assignment]
        return m

    def _state_of(self, th: dict[str, Any]) -> State:
        return self._machine(th["loc"]).states[th["state"]]

    def _ctx(self, th: dict[str, Any], **extra: Any) -> dict[str, Any]:
        ctx = dict(self.st["ctx"])
        ctx["State"] = {"EnteredTime": iso(th["entered"]), "Name": th["state"], "RetryCount": th["rc"]}
        ctx.update(extra)
        return ctx

    def _run(self, tid: str) -> None:
        """Run thread `tid` until it waits, ends or fails."""
        st = self.st
        while st["status"] == "RUNNING":
            th = st["threads"].get(tid)
            if th is None or (th["wait"] is not None and "resume" not in th):
                return
            self.transitions += 1
            if self.transitions > MAX_STEP_TRANSITIONS:
                self._finish("FAILED", error=errors.RUNTIME, cause=f"the execution ran {MAX_STEP_TRANSITIONS} states "
                             "without waiting (a loop of Pass/Choice states?)")
                return
            s = self._state_of(th)
            try:
                resume = th.pop("resume", None)
                if resume is not None:
                    self._resume(th, s, resume)
                else:
                    if th["new"]:
                        th["new"] = False
                        th["entered"] = self.now
                        self._event(th, "FailStateEntered" if s.type == "Fail" else f"{s.type}StateEntered",
                                    {"name": s.name, **data("input", th["input"])})
                    getattr(self, "_state_" + s.type.lower())(th, s)
            except StatesError as e:
                self._failed(th, s, e.error, e.cause)
            except _Fail as f:
                self._failed(th, s, f.error, f.cause)

    def _resume(self, th: dict[str, Any], s: State, resume: dict[str, Any]) -> None:
        """Continue a state that waited: its Wait ended, its task or children returned or failed."""
        if "exit" in resume:
            self._exit_state(th, s, resume["exit"])
        elif "result" in resume:
            self._exit_state(th, s, self._result(th, s, resume["result"]))
        elif "fill" in resume:
            self._map_fill(th, s)
        else:
            raise _Fail(resume.get("error"), resume.get("cause"))

    def _exit_state(self, th: dict[str, Any], s: State, output: Any, next_state: str | None = None) -> None:
        """The state is done: OutputPath (not after a Catch), the Exited event, then Next or the thread's end."""
        if next_state is None:
            output = select(s.output_path, output, self._ctx(th), "OutputPath")
        if s.type != "Fail":
            self._event(th, f"{s.type}StateExited", {"name": s.name, **data("output", output)})
        target = next_state or (None if s.end else s.next)
        th["retries"], th["rc"] = {}, 0
        if target is None:
            self._thread_ended(th, output, None)
            return
        th["state"], th["input"], th["new"] = target, output, True

    def _thread_ended(self, th: dict[str, Any], output: Any, failure: tuple[str | None, str | None] | None) -> None:
        """Thread `th` ended with `output`, or with `failure` (error, cause): the execution or its parent learns."""
        st = self.st
        st["threads"].pop(th["id"], None)
        if th["parent"] is None:
            if failure is None:
                self._finish("SUCCEEDED", output=output, prev=th["last"])
            else:
                self._finish("FAILED", error=failure[0], cause=failure[1], prev=th["last"])
            return
        parent = st["threads"].get(th["parent"])
        if parent is not None and parent["wait"] is not None and parent["wait"]["kind"] in ("parallel", "map"):
            self._child_done(parent, th, output, failure)

    def _failed(self, th: dict[str, Any], s: State, error: str | None, cause: str | None) -> None:
        """State `s` of thread `th` failed: retry, catch, or fail the thread (terminal errors: the execution)."""
        name = error or ""
        th["wait"] = None
        th.pop("resume", None)
        for child in [t for t in self.st["threads"].values() if t["parent"] == th["id"]]:
            self._abort(child)  # a Parallel or Map that fails while some of its children still run
        if name in errors.TERMINAL:
            self._finish("FAILED", error=error, cause=cause, prev=th["last"])
            return
        for i, r in enumerate(s.retry):
            if errors.matches(r.error_equals, name):
                if self._retry(th, r, str(i)):
                    return
                break
        for c in s.catch:
            if errors.matches(c.error_equals, name):
                try:
                    out = merge_result(th["input"], {"Error": error, "Cause": cause}, c.result_path)
                except StatesError as e:
                    self._finish("FAILED", error=e.error, cause=e.cause, prev=th["last"])
                    return
                self._exit_state(th, s, out, c.next)
                self.ready.append(th["id"])
                return
        self._thread_ended(th, None, (error, cause))

    def _retry(self, th: dict[str, Any], r: Retrier, key: str) -> bool:
        done = th["retries"].get(key, 0)
        if done >= r.max_attempts:
            return False
        th["retries"][key] = done + 1
        th["rc"] += 1
        timer = self._set_timer(self._id("r"), th["id"], self.now + retry_delay(r, done, self.rng))
        th["wait"] = {"kind": "retry", "id": timer}
        return True

    # -- the end --------------------------------------------------------------------------------------

    def _finish(self, status: str, output: Any = None, error: str | None = None, cause: str | None = None,
                prev: int | None = None) -> None:
        st = self.st
        if st["status"] != "RUNNING" or self.finishing:
            return
        self.finishing = True
        for th in list(st["threads"].values()):
            self._aborted_event(th)
        if st["timers"]:
            self._cancel(list(st["timers"]))
        st["threads"], st["tokens"] = {}, {}
        st["status"], st["output"], st["error"], st["cause"] = status, output, error, cause
        details = data("output", output) if status == "SUCCEEDED" else error_details(error, cause)
        self._event(None, FINAL[status], details, prev=prev, force=True)

    def _aborted_event(self, th: dict[str, Any]) -> None:
        wait = th.get("wait")
        if wait is None:
            return
        s = self._state_of(th)
        if wait["kind"] == "task":
            self.st["tokens"].pop(wait["token"], None)
            self._event(th, "TaskStateAborted", {})
        elif s.type in ("Wait", "Parallel", "Map"):
            self._event(th, f"{s.type}StateAborted", {})

    def _abort(self, th: dict[str, Any]) -> None:
        """Stop thread `th` and its descendants (a sibling branch failed, a Map gave up)."""
        for child in [t for t in self.st["threads"].values() if t["parent"] == th["id"]]:
            self._abort(child)
        self.st["threads"].pop(th["id"], None)
        self._aborted_event(th)
        mine = [timer for timer, owner in self.st["timers"].items() if owner == th["id"]]
        if mine:
            self._cancel(mine)

    # -- history and timers ---------------------------------------------------------------------------

    def _event(self, th: dict[str, Any] | None, kind: str, details: dict[str, Any], prev: int | None = None,
               force: bool = False) -> int:
        st = self.st
        if st["status"] != "RUNNING" and not force:
            return 0
        st["event_id"] += 1
        eid: int = st["event_id"]
        ev: dict[str, Any] = {"id": eid, "previousEventId": prev if prev is not None else (th["last"] if th else eid - 1),
                              "timestamp": self.now, "type": kind}
        key = DETAILS.get(kind)
        if key is not None:
            ev[key] = details
        self.out.events.append(ev)
        if th is not None:
            th["last"] = eid
        if eid >= MAX_EVENTS - 1 and not self.finishing:
            self._finish("FAILED", error=errors.RUNTIME,
                         cause=f"The execution reached the maximum number of history events ({MAX_EVENTS}).")
        return eid

    def _set_timer(self, timer_id: str, tid: str, at: float) -> str:
        self.st["timers"][timer_id] = tid
        self.out.commands.append({"op": "timer", "id": timer_id, "at": at})
        return timer_id

    def _cancel(self, ids: list[str]) -> None:
        for i in ids:
            self.st["timers"].pop(i, None)
        self.out.commands.append({"op": "cancel", "ids": ids})

    # -- state types ----------------------------------------------------------------------------------

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
        raise _Fail(error, cause)

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
