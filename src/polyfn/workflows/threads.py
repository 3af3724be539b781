"""How an execution runs, whatever its states do: its threads, the events that wake them, their failures
(Retry, Catch), the history events and timers they leave, and the execution's end.

An execution is a set of *threads*: the root runs the top-level states; each Parallel branch and each Map
iteration is a child thread running its nested machine, and its parent waits for its children. A thread runs
states until one has to wait (a task, a timer, children); Pass and Choice chains run within one step. What each
state Type does when a thread enters it is `states.py`'s (`Interpreter`, a `Threads`); `machine.step` is the face.
"""

from __future__ import annotations

import functools
import random
from datetime import UTC, datetime
from typing import Any

from polyfn.workflows import errors
from polyfn.workflows.dataflow import merge_result, select
from polyfn.workflows.definition import Machine, Retrier, State
from polyfn.workflows.errors import StatesError
from polyfn.workflows.history import DETAILS, FINAL, data, error_details
from polyfn.workflows.retry import delay as retry_delay

MAX_EVENTS = 25_000  # history events per execution (AWS's limit)
MAX_STEP_TRANSITIONS = 10_000  # states one step may run without waiting (a Pass/Choice loop)
EXECUTION_TIMEOUT_TIMER = "execution-timeout"


class Step:
    __slots__ = ("accepted", "changed", "commands", "events", "reply")

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.accepted = True  # False: the event named a token or timer this execution no longer waits for
        self.reply: dict[str, Any] | None = None  # what the caller of the event gets back (a durable checkpoint)
        self.changed: list[str] = []  # the operations a durable function's step changed (stored one row each)

@functools.lru_cache(maxsize=1024)  # (a state's context is built several times with its one entered time)
def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"

class Fail(Exception):
    """A thread's current state failed with (error, cause)."""

    def __init__(self, error: str | None, cause: str | None):
        self.error, self.cause = error, cause

class Threads:
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
            except Fail as f:
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
            raise Fail(resume.get("error"), resume.get("cause"))

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

    # -- what the state types add (states.py) ------------------------------------------------------

    def _task_event(self, kind: str, ev: dict[str, Any]) -> None:
        """A task's result, the answer to its token, or its heartbeat."""
        raise NotImplementedError

    def _end_task(self, th: dict[str, Any], wait: dict[str, Any], what: str, output: Any, error: str | None,
                  cause: str | None) -> None:
        """The task of thread `th` ended (Succeeded, Failed or TimedOut)."""
        raise NotImplementedError

    def _map_fill(self, th: dict[str, Any], s: State) -> None:
        """Start a Map's next iterations, up to its concurrency."""
        raise NotImplementedError

    def _child_done(self, parent: dict[str, Any], child: dict[str, Any], output: Any,
                    failure: tuple[str | None, str | None] | None) -> None:
        """A Parallel branch or a Map iteration of `parent` ended."""
        raise NotImplementedError
