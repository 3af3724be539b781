"""The durable engine: applies events to executions through their program's pure step function, stores each
transition (state, history, work) in one transaction, then carries out the work.

* `start` creates an execution with its first step; `apply(execution, event)` runs one step under a per-execution
  lock, with a compare-and-set on the stored version (another node may have moved the execution: read again).
* Work is durable (`wf_work`): an `invoke` item is run here at once (leased to this node, the lease renewed while it
  runs); a `timer` item fires from an in-memory heap at its time (leased to this node until then); a `resume` item
  tells a parent execution that a child it waits for (`startExecution.sync`) ended. A poll takes due work nobody
  holds: items of a node that died (after their lease) and of this node before a restart (at once). When each item
  runs is `work.py`'s (`Work`); what running it means is here.
* So a task runs at least once: a node killed after a function returned but before the transition was stored runs
  it again at restart (with the same activation id, which the function sees as its idempotency key).

Programs: `asl` (States Language, `machine.step`) and `durable` (Lambda durable functions, `durable.step`), both
`(state, event, now, rng) -> Step`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from polyfn.tenancy import DEFAULT, SEP, namespace_of, qualify
from polyfn.workflows import arns, definition, machine
from polyfn.workflows.durable import DurableProgram
from polyfn.workflows.store import FINAL, Conflict, Execution, OpRow, WorkflowStore, WorkItem
from polyfn.workflows.tasks import InvokeFn, TaskOutcome, lambda_invoke_output
from polyfn.workflows.work import LEASE, POLL, Work

log = logging.getLogger("polyfn.workflows")

MAX_CONFLICTS = 20


class Program(Protocol):
    stores_ops: bool  # True: the state's operations are rows of their own (`store.get_ops`), see `persist`

    def new_state(self, ex: Execution) -> dict[str, Any]: ...

    def step(self, state: dict[str, Any], event: dict[str, Any], now: float, rng: random.Random) -> machine.Step: ...

    def restore(self, text: str, op_bodies: list[str]) -> dict[str, Any]: ...

    def persist(self, state: dict[str, Any], out: machine.Step | None) -> tuple[str, list[OpRow]]: ...


class AslProgram:
    """States Language: the whole state is one JSON text in the execution's row."""

    stores_ops = False

    def __init__(self, text: str):
        self.machine = definition.parse(text)

    @staticmethod
    def restore(text: str, _op_bodies: list[str]) -> dict[str, Any]:
        return json.loads(text)  # type: ignore[no-any-return]

    @staticmethod
    def persist(state: dict[str, Any], _out: machine.Step | None) -> tuple[str, list[OpRow]]:
        return json.dumps(state, separators=(",", ":")), []

    def new_state(self, ex: Execution) -> dict[str, Any]:
        return machine.new_state(ex.id, {"Id": arns.execution_arn(ex.machine, ex.name, namespace=ex.namespace), "Name": ex.name,
                                         "RoleArn": "",
                                         "StartTime": machine.iso(ex.started_at), "RedriveCount": 0},
                                 {"Id": arns.machine_arn(ex.machine, namespace=ex.namespace), "Name": ex.machine}, arns.REGION)

    def step(self, state: dict[str, Any], event: dict[str, Any], now: float, rng: random.Random) -> machine.Step:
        return machine.step(self.machine, state, event, now, rng)


def task_function(name: str, namespace: str) -> str:
    """The function a Task of a machine of `namespace` runs: `name` in the machine's own namespace (a held name
    from elsewhere names no function: `~` is in no function's local name)."""
    if SEP in name:
        return f"{namespace}{SEP}{SEP}{name}"  # (no function is held under a name with two `~`)
    return qualify(namespace, name)


def activation_id(token: str) -> str:
    """The activation id of a task (32 hex digits), the same whenever the same task runs again."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def describe_child(ex: Execution, json_output: bool) -> dict[str, Any]:
    """What a `startExecution.sync` Task returns: the child's DescribeExecution (Input/Output as JSON text, or
    as JSON with `.sync:2`), dates in epoch milliseconds as Step Functions' integrations give them."""
    out: dict[str, Any] = {"ExecutionArn": arns.execution_arn(ex.machine, ex.name, namespace=ex.namespace),
                           "StateMachineArn": arns.machine_arn(ex.machine, namespace=ex.namespace),
                           "Name": ex.name, "Status": ex.status, "StartDate": int(ex.started_at * 1000)}
    if ex.stopped_at:
        out["StopDate"] = int(ex.stopped_at * 1000)
    out["Input"] = json.loads(ex.input) if json_output else ex.input
    out["InputDetails"] = {"Included": True}
    if ex.output is not None:
        out["Output"] = json.loads(ex.output) if json_output else ex.output
        out["OutputDetails"] = {"Included": True}
    if ex.error is not None:
        out["Error"] = ex.error
    if ex.cause is not None:
        out["Cause"] = ex.cause
    return out


def fold(ex: Execution, state: dict[str, Any], prog: Program, out: machine.Step | None, now: float) -> list[OpRow]:
    """Copy what the row shows of a state (its text, status, output, error) into the execution; the
    operations to store with it (`out` None: all of them)."""
    ex.state, op_rows = prog.persist(state, out)
    ex.status = state["status"]
    if ex.status in FINAL:
        ex.stopped_at = ex.stopped_at or now
        out = state.get("output")
        if ex.kind != "durable":  # (a durable function's result is JSON text already)
            out = json.dumps(out, separators=(",", ":"))
        ex.output = out if ex.status == "SUCCEEDED" else None
        ex.error, ex.cause = state.get("error"), state.get("cause")
    return op_rows


def work_of(ex: Execution, out: machine.Step, now: float, owner: str, lease: float) -> tuple[list[WorkItem], list[str]]:
    """The work items a step's commands make (held by `owner` until `now + lease`), and the work ids it cancels."""
    items: list[WorkItem] = []
    cancel: list[str] = []
    for c in out.commands:
        op = c["op"]
        if op == "invoke":
            # a snapshot: the command shares objects with the state, which the engine keeps and the next
            # steps change in place, while the task may run later (it waits for a slot)
            text = json.dumps(c, separators=(",", ":"))
            items.append(WorkItem(c["token"], ex.id, "invoke", now, json.loads(text), owner, now + lease,
                                  text))
        elif op == "timer":
            items.append(WorkItem(f"{ex.id}/{c['id']}", ex.id, "timer", c["at"], {"timer": c["id"]}, owner,
                                  c["at"] + lease))
        elif op == "cancel":
            cancel.extend(f"{ex.id}/{i}" for i in c["ids"])
    if ex.status in FINAL and ex.parent:
        parent = json.loads(ex.parent)
        if parent.get("execution") and parent.get("pattern", "").startswith(".sync"):
            items.append(WorkItem(f"{ex.id}/resume", parent["execution"], "resume", now,
                                  {"token": parent["token"], "child": ex.id, "pattern": parent["pattern"]},
                                  owner, now + lease))
    return items, cancel


class Engine:
    def __init__(self, store: WorkflowStore, invoke: InvokeFn, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None, owner: str = "node", function_name: Callable[[str], str] = str,
                 max_inflight: int = 2000, poll: float = POLL, lease: float = LEASE):
        self.store = store
        self.invoke = invoke
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self.owner = owner
        self.function_name = function_name  # a Lambda function name or ARN's name → polyfn function name
        self.work = Work(store, self._run, clock, owner, poll, lease)
        self.programs: dict[str, Callable[[str], Program]] = {"asl": AslProgram, "durable": DurableProgram}
        self._compiled: dict[tuple[str, str, int], Program] = {}
        self._compiling: dict[tuple[str, str, int], asyncio.Future[Program]] = {}
        self._cache: dict[str, Execution] = {}  # running executions this node has touched, as last stored
        # their states, parsed, with the version they belong to: a step reads no JSON (a durable function's
        # operations are not read back from the store at each checkpoint)
        self._states: dict[str, tuple[int, dict[str, Any]]] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._slots = asyncio.Semaphore(max_inflight)
        self._freed: dict[str, asyncio.Event] = {}  # function → set when one of its invocations ends
        self._waiters: dict[str, list[asyncio.Future[Execution]]] = {}
        self.on_final: list[Callable[[Execution], None]] = []  # observers (metrics)
        self.on_events: list[Callable[[int], None]] = []  # observers of history events recorded (metrics)
        self.on_step: list[Callable[[Execution, list[dict[str, Any]]], None]] = []  # a step's events (metering)
        self.ended: dict[tuple[str, str, str, str], int] = {}  # (namespace, machine, kind, status) → ended here
        self.transitions = 0

    # -- life -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.work.start()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop taking work; running tasks get `timeout` seconds, then the rest run again at the next start."""
        await self.work.stop(timeout)

    # -- programs -------------------------------------------------------------------------------------

    async def program(self, ex: Execution) -> Program:
        """The compiled program of an execution's definition revision (compiled once per node, however many
        executions ask at once)."""
        key = (ex.namespace, ex.machine, ex.revision)
        prog = self._compiled.get(key)
        if prog is not None:
            return prog
        pending = self._compiling.get(key)
        if pending is None:
            pending = self._compiling[key] = asyncio.ensure_future(self._compile(ex))
            pending.add_done_callback(lambda _f: self._compiling.pop(key, None))
        return await asyncio.shield(pending)

    async def _compile(self, ex: Execution) -> Program:
        found = await self.store.get_definition(ex.namespace, ex.machine, ex.revision)
        if found is None:
            raise LookupError(f"the definition of {ex.machine} revision {ex.revision} is gone")
        prog = self.programs["durable" if ex.kind == "durable" else "asl"](found[1])
        if len(self._compiled) > 1000:
            self._compiled.clear()
        self._compiled[(ex.namespace, ex.machine, ex.revision)] = prog
        return prog

    # -- executions -----------------------------------------------------------------------------------

    async def begin(self, ex: Execution, value: Any, role: str = "") -> bool:
        """Store a new execution after its first step; False when its name is taken."""
        prog = await self.program(ex)
        state = prog.new_state(ex)
        out = prog.step(state, {"type": "start", "input": value, "role": role}, self.clock(), self.rng)
        op_rows = fold(ex, state, prog, None, self.clock())
        items, _cancel = work_of(ex, out, self.clock(), self.owner, self.work.lease)
        if not await self.store.insert_execution(ex, out.events, items, op_rows):
            return False
        self._count(len(out.events), ex, out.events)
        if ex.status not in FINAL:
            self._states[ex.id] = (ex.version, state)
        self._after(ex, items)
        return True

    async def current(self, execution_id: str) -> Execution | None:
        """The execution as last stored (from this node's cache while it runs here)."""
        return self._cache.get(execution_id) or await self.store.get_execution(execution_id)

    async def _state(self, ex: Execution, prog: Program) -> dict[str, Any]:
        """The execution's state, parsed; taken out of the cache (a step changes it in place: it goes back
        only once the changed state is stored)."""
        held = self._states.pop(ex.id, None)
        if held is not None and held[0] == ex.version:
            return held[1]
        return prog.restore(ex.state, await self.store.get_ops(ex.id) if prog.stores_ops else [])

    async def apply(self, execution_id: str, event: dict[str, Any], done: str | None = None) -> machine.Step | None:
        """Apply one event to an execution; None when it does not exist. `done` is the work item the event
        comes from, deleted with the transition."""
        lock = self._lock(execution_id)
        try:
            async with lock:
                for _ in range(MAX_CONFLICTS):
                    ex = self._cache.get(execution_id) or await self.store.get_execution(execution_id)
                    if ex is None:
                        if done:
                            await self.store.drop_work([done])
                        return None
                    prog = await self.program(ex)
                    state = await self._state(ex, prog)
                    out = prog.step(state, event, self.clock(), self.rng)
                    if not out.accepted:
                        if done:
                            await self.store.drop_work([done])
                        return out
                    new = Execution(**{c: getattr(ex, c) for c in Execution.__slots__})
                    op_rows = fold(new, state, prog, out, self.clock())
                    items, cancel = work_of(new, out, self.clock(), self.owner, self.work.lease)
                    try:
                        await self.store.save(new, ex.version, out.events, items, cancel, done, op_rows)
                    except Conflict:
                        self._cache.pop(execution_id, None)
                        continue
                    if new.status not in FINAL:
                        self._states[execution_id] = (new.version, state)
                    self._count(len(out.events), new, out.events)
                    self.work.cancelled(cancel)
                    self._after(new, items)
                    return out
                raise RuntimeError(f"execution {execution_id}: too many concurrent changes")
        finally:
            self._unlock(execution_id)

    def _count(self, n: int, ex: Execution, events: list[dict[str, Any]]) -> None:
        self.transitions += n
        for obs in self.on_events:
            obs(n)
        for step in self.on_step:
            step(ex, events)

    def _lock(self, key: str) -> asyncio.Lock:
        lock, n = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, n + 1)
        return lock

    def _unlock(self, key: str) -> None:
        lock, n = self._locks[key]
        if n <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, n - 1)

    def _after(self, ex: Execution, items: list[WorkItem]) -> None:
        """A transition is stored: keep the execution while it runs, start its work, wake who waits for its end."""
        if ex.status in FINAL:
            self._cache.pop(ex.id, None)
            self._states.pop(ex.id, None)
            key = (ex.namespace, ex.machine, ex.kind, ex.status)
            self.ended[key] = self.ended.get(key, 0) + 1
            for f in self._waiters.pop(ex.id, []):
                if not f.done():
                    f.set_result(ex)
            for obs in self.on_final:
                obs(ex)
        else:
            self._cache[ex.id] = ex
        for item in items:
            self.work.dispatch(item)

    async def wait(self, execution_id: str, timeout: float) -> Execution | None:
        """The execution once it has ended (None after `timeout`)."""
        ex = self._cache.get(execution_id) or await self.store.get_execution(execution_id)
        if ex is None or ex.status in FINAL:
            return ex
        fut: asyncio.Future[Execution] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(execution_id, []).append(fut)
        ex = await self.store.get_execution(execution_id)  # it may have ended on another node meanwhile
        if ex is not None and ex.status in FINAL:
            return ex
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            waiting = self._waiters.get(execution_id, [])
            if fut in waiting:
                waiting.remove(fut)
            if not waiting:
                self._waiters.pop(execution_id, None)

    # -- running work ---------------------------------------------------------------------------------

    async def _run(self, item: WorkItem) -> None:
        try:
            if item.kind == "timer":
                await self.apply(item.execution, {"type": "timer", "id": item.payload["timer"]}, done=item.id)
            elif item.kind == "resume":
                await self._resume(item)
            elif item.kind == "schedule":
                await self.on_schedule(item)
            else:
                async with self._slots:
                    event = await self._task(item)
                if event is not None:
                    await self.apply(item.execution, event, done=item.id)
                elif not self.work.stopping:  # nothing to report (a child execution now runs): the item is done
                    await self.store.drop_work([item.id])
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("workflows: work item %s of execution %s failed; it is tried again later", item.id,
                          item.execution)
            with contextlib.suppress(Exception):
                await self.store.postpone(item.id, self.clock() + 5, "", 0)

    async def _task(self, item: WorkItem) -> dict[str, Any] | None:
        """Run a task: the event that reports how it ended (None: nothing to report now)."""
        c = item.payload
        token = c["token"]
        if c["kind"] == "states:startExecution":
            return await self.start_child(item.execution, c)
        params = c["payload"]
        if c["kind"] == "lambda:invoke":
            name = str(params.get("FunctionName", "")) if isinstance(params, dict) else ""
            payload = params.get("Payload") if isinstance(params, dict) else None
        else:  # a function named in the resource, or a durable function's own invocation
            name, payload = c["function"], params
            if c["kind"] == "durable" and c.get("again"):
                payload = await self._durable_input_again(item.execution, params)
        function = self.function_name(name)
        if c["kind"] != "durable":  # (a durable function's own invocation names it by its held name already)
            ex = await self.current(item.execution)  # (a durable function's chained invoke: its function's namespace)
            function = task_function(function, DEFAULT if ex is None else namespace_of(ex.machine)
                                     if ex.kind == "durable" else ex.namespace)
        body = json.dumps(payload, separators=(",", ":")).encode()
        while True:
            res: TaskOutcome = await self.invoke(function, body, activation_id(token))
            freed = self._freed.pop(function, None)
            if freed is not None:
                freed.set()  # another task of this function waits for room: there is some now
            if res.retry_after is None:
                break
            if self.work.stopping:
                return None  # the item stays with this node: it runs again at the next start
            # throttled (the function is at its capacity): try again as soon as one of its invocations ends
            event = self._freed.setdefault(function, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(res.retry_after, 1.0))
        if not res.ok:
            return {"type": "task_result", "token": token, "ok": False, "error": res.error, "cause": res.cause}
        output = lambda_invoke_output(res.output) if c["kind"] == "lambda:invoke" else res.output
        return {"type": "task_result", "token": token, "ok": True, "output": output}

    async def _durable_input_again(self, execution_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A durable function's invocation run again (this node restarted, or another node died holding it): its
        input as stored names the operations of when it was first made; the function gets every operation
        stored since (so it replays the steps that succeeded instead of running them again)."""
        ex = await self.current(execution_id)
        if ex is None or ex.status in FINAL:
            return payload
        prog = await self.program(ex)
        held = self._states.get(ex.id)
        state = held[1] if held is not None and held[0] == ex.version else \
            prog.restore(ex.state, await self.store.get_ops(ex.id) if prog.stores_ops else [])
        return {**payload, **DurableProgram.input_again(state)}

    #: set by the service: starts a child execution for `states:startExecution` (parent execution id, command)
    start_child: Callable[[str, dict[str, Any]], Any]
    #: set by the service: a schedule's tick is due (starts an execution, moves the item to the next tick)
    on_schedule: Callable[[WorkItem], Any]

    def hold(self, item: WorkItem) -> None:
        """Take a work item this node has just stored (a schedule) as if it had claimed it."""
        self.work.dispatch(item)

    async def _resume(self, item: WorkItem) -> None:
        p = item.payload
        child = await self.store.get_execution(p["child"])
        if child is None:
            await self.store.drop_work([item.id])
            return
        out = describe_child(child, p["pattern"] == ".sync:2")
        event: dict[str, Any] = {"type": "task_result", "token": p["token"]}
        if child.status == "SUCCEEDED":
            event.update(ok=True, output=out)
        else:
            event.update(ok=False, error="States.TaskFailed", cause=json.dumps(out, separators=(",", ":")))
        await self.apply(item.execution, event, done=item.id)
