"""The workflow service: what every face calls (Step Functions API, OpenWhisk sequences, `/v1/workflows`, the CLI
through it). It knows no wire format: it takes names and JSON text, returns store records, and refuses bad
input with a `WorkflowError` whose `code` is a stable name each face maps to its own error shape.

Built from narrow dependencies, like every backend service of the node: the store's database engine, an
`InvokeFn` to run functions, a clock, the node's id (who holds leases), and how a Lambda function name maps
to a polyfn function name.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from polyfn import loops
from polyfn.tenancy import DEFAULT, local, owns, qualify
from polyfn.workflows import arns, children, definition, schedules
from polyfn.workflows.engine import Engine
from polyfn.workflows.errors import DefinitionError, WorkflowError
from polyfn.workflows.history import dumps
from polyfn.workflows.machine import MAX_PAYLOAD
from polyfn.workflows.store import FINAL, Execution, Machine, WorkflowStore
from polyfn.workflows.tasks import InvokeFn

log = logging.getLogger("polyfn.workflows")

TYPES = ("STANDARD", "EXPRESS")
STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
MAX_ERROR = 256  # characters of an error name given to StopExecution / SendTaskFailure
MAX_CAUSE = 32768
DURABLE_NAMESPACE = "lambda"  # where durable functions' executions live (apart from state machines)
RETENTION = 90 * 24 * 3600.0  # ended executions are kept 90 days by default, as Step Functions keeps them
SWEEP_BATCH = 500
MACHINE_TTL = 1.0  # seconds a state machine read to start executions is reused


def _json_input(text: str | None, what: str = "input") -> Any:
    raw = "{}" if text is None else text
    if len(raw.encode()) > MAX_PAYLOAD:
        raise WorkflowError("InvalidExecutionInput", f"the {what} is {len(raw.encode())} bytes; the limit is {MAX_PAYLOAD}")
    try:
        return json.loads(raw)
    except ValueError as e:
        raise WorkflowError("InvalidExecutionInput" if what == "input" else "InvalidOutput",
                            f"Invalid State Machine Execution {what}: the {what} is not JSON ({e})") from None


class WorkflowService:
    def __init__(self, db: AsyncEngine, invoke: InvokeFn, clock: Callable[[], float] = time.time,
                 owner: str = "node", function_name: Callable[[str], str] = str, rng: random.Random | None = None,
                 write_lock: asyncio.Lock | None = None, retention: float = RETENTION):
        self.store = WorkflowStore(db, write_lock)
        self.retention = retention  # seconds an ended execution is kept, with its history (docs/workflows.md)
        self._sweeper: asyncio.Task[None] | None = None
        self.clock = clock
        self.engine = Engine(self.store, invoke, clock, rng, owner, function_name)
        self.engine.start_child = functools.partial(children.start_child, self.start_execution, self.store)
        self.schedules = schedules.Schedules(self.store, self.engine, self.start_execution, clock)
        self.engine.on_schedule = self.schedules.due
        self._machines: dict[tuple[str, str], tuple[float, Machine]] = {}
        self._reading: dict[tuple[str, str], asyncio.Future[Machine | None]] = {}

    async def start(self) -> None:
        await self.store.create_tables()
        await self.engine.start()
        self._sweeper = asyncio.create_task(self._sweep_ended())

    async def sweep_ended(self) -> int:
        """Delete the executions that ended more than `retention` seconds ago; how many."""
        total = 0
        while (n := await self.store.delete_ended(self.clock() - self.retention, SWEEP_BATCH)) > 0:
            total += n
            if n < SWEEP_BATCH:
                break
        return total

    async def _sweep_ended(self) -> None:
        """Retention: a sweep at start, then every `retention / 4` seconds (at most an hour apart)."""
        while True:
            try:
                if n := await self.sweep_ended():
                    log.info("workflows: %d execution(s) ended more than %g s ago deleted (retention)", n, self.retention)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("workflows: the retention sweep failed; trying again later")
            await asyncio.sleep(min(3600.0, max(0.05, self.retention / 4)))

    # -- observing ------------------------------------------------------------------------------------

    def stats(self, namespace: str = DEFAULT) -> list[dict[str, Any]]:
        """Per workflow of `namespace` (by local name): executions running on this node, and how those that
        ended here since it started ended (what `polyfn top` shows)."""
        rows: dict[str, dict[str, Any]] = {}
        for ex in list(self.engine._cache.values()):
            held = label(ex.namespace, ex.machine)
            if owns(namespace, held):
                row = rows.setdefault(held, {"name": local(held), "kind": ex.kind, "running": 0})
                row["running"] += 1
        for (ns, machine, kind, status), n in self.engine.ended.items():
            held = label(ns, machine)
            if owns(namespace, held):
                row = rows.setdefault(held, {"name": local(held), "kind": kind, "running": 0})
                row[status.lower()] = n
        return sorted(rows.values(), key=lambda r: r["name"])

    def observe(self, metrics: Any) -> None:
        """Export to the node's Prometheus metrics: executions ended (by workflow and status), transitions
        (history events), executions running on this node."""
        ended = metrics.counter("polyfn_workflow_executions_total", "Workflow executions that ended on this node",
                                ("workflow", "status"))
        events = metrics.counter("polyfn_workflow_events_total", "Workflow history events recorded (state transitions)")
        self.engine.on_final.append(lambda ex: ended.inc(label(ex.namespace, ex.machine), ex.status))
        self.engine.on_events.append(lambda n: events.inc(n=n))

        def running() -> dict[tuple[str, ...], float]:
            out: dict[tuple[str, ...], float] = {}
            for ex in list(self.engine._cache.values()):
                key = (label(ex.namespace, ex.machine),)
                out[key] = out.get(key, 0) + 1
            return out

        metrics.gauge("polyfn_workflow_executions_running", "Workflow executions running on this node", ("workflow",),
                      running)

    async def stop(self, timeout: float = 5.0) -> None:
        if self._sweeper is not None:
            await loops.cancelled(self._sweeper)
        await self.engine.stop(timeout)
        await self.store.close()

    # -- state machines -------------------------------------------------------------------------------

    @staticmethod
    def validate(text: str) -> definition.Machine:
        try:
            return definition.parse(text)
        except DefinitionError as e:
            raise WorkflowError("InvalidDefinition", e.message) from None

    async def create_machine(self, name: str, text: str, role_arn: str = "", type_: str = "STANDARD",
                             namespace: str = "default", kind: str = "asl", meta: dict[str, Any] | None = None) -> Machine:
        """Create a state machine. Creating one again with the same definition, role and type returns it (as
        AWS does); anything else under a taken name is StateMachineAlreadyExists."""
        if not arns.valid_name(name):
            raise WorkflowError("InvalidName", f"Invalid Name: '{name}' (1-80 characters, no spaces, brackets, "
                                "wildcards, punctuation or control characters)")
        if type_ not in TYPES:
            raise WorkflowError("ValidationException", f"type {type_!r} must be one of {', '.join(TYPES)}")
        self.validate(text)
        now = self.clock()
        m = Machine(namespace, name, kind, type_, 0, text, role_arn, meta or {}, now, now)
        made = await self.store.put_machine(m, create=True)
        if made is not None:
            await self.schedules.put(made)
            return made
        old = await self.store.get_machine(namespace, name)
        if old is not None and (old.definition, old.role_arn, old.type) == (text, role_arn, type_):
            return old
        raise WorkflowError("StateMachineAlreadyExists", f"State Machine Already Exists: '{arns.machine_arn(name, namespace=namespace)}'")

    async def update_machine(self, name: str, text: str | None = None, role_arn: str | None = None,
                             namespace: str = "default", meta: dict[str, Any] | None = None) -> Machine:
        old = await self.machine(name, namespace)
        if text is not None:
            self.validate(text)
        m = Machine(namespace, name, old.kind, old.type, 0, old.definition if text is None else text,
                    old.role_arn if role_arn is None else role_arn, {**old.meta, **(meta or {})}, old.created_at,
                    self.clock())
        done = await self.store.put_machine(m, create=False)
        self._machines.pop((namespace, name), None)
        if done is None:
            raise WorkflowError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arns.machine_arn(name, namespace=namespace)}'")
        await self.schedules.put(done)
        return done

    async def machine(self, name: str, namespace: str = "default", fresh: bool = True) -> Machine:
        """A state machine. Not `fresh`: from a cache of `MACHINE_TTL` seconds (what starting executions reads: a
        definition updated on another node is used by new executions within that time, as on AWS, where updates
        are eventually consistent)."""
        key = (namespace, name)
        hit = self._machines.get(key)
        now = self.clock()
        if not fresh and hit is not None and hit[0] > now:
            return hit[1]
        pending = self._reading.get(key)
        if pending is None:
            pending = self._reading[key] = asyncio.ensure_future(self.store.get_machine(namespace, name))
            pending.add_done_callback(lambda _f: self._reading.pop(key, None))
        m = await asyncio.shield(pending)
        if m is not None:
            if len(self._machines) > 10_000:
                self._machines.clear()
            self._machines[key] = (now + MACHINE_TTL, m)
        if m is None:
            raise WorkflowError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arns.machine_arn(name, namespace=namespace)}'")
        return m

    async def list_machines(self, namespace: str = "default") -> list[Machine]:
        return await self.store.list_machines(namespace)

    async def delete_machine(self, name: str, namespace: str = "default") -> bool:
        """Delete a state machine (its running executions run to their end, as on AWS)."""
        self._machines.pop((namespace, name), None)
        await self.store.replace_work(schedules.item_id(namespace, name, 0)[:-1], [])
        return await self.store.delete_machine(namespace, name)

    # -- executions -----------------------------------------------------------------------------------

    async def start_execution(self, machine: str, name: str | None = None, input_text: str | None = None,
                              namespace: str = "default", parent: dict[str, Any] | None = None) -> Execution:
        """Start an execution. A name already used: the same execution when it runs with the same input (a retried
        request), else ExecutionAlreadyExists."""
        m = await self.machine(machine, namespace, fresh=False)
        name = name or str(uuid.uuid4())
        if not arns.valid_name(name):
            raise WorkflowError("InvalidName", f"Invalid Name: '{name}'")
        value = _json_input(input_text)
        text = dumps(value) if input_text is None else input_text
        ex = Execution(id=uuid.uuid4().hex, namespace=namespace, machine=machine, revision=m.revision, name=name,
                       kind="durable" if m.kind == "durable" else "asl", status="RUNNING", input=text, output=None,
                       error=None, cause=None, started_at=self.clock(), stopped_at=None, state="{}", version=0,
                       parent=json.dumps(parent) if parent else None)
        if await self.engine.begin(ex, value, m.role_arn):
            return ex
        old = await self.store.find_execution(namespace, machine, name)
        if old is not None and old.status == "RUNNING" and _same_json(old.input, text):
            return old
        ended = old is not None and old.status in FINAL
        raise WorkflowError("ExecutionAlreadyExists", f"Execution Already Exists: '{arns.execution_arn(machine, name, namespace=namespace)}'"
                            + (" (it has ended)" if ended else " (with another input)"))

    async def run_sync(self, machine: str, name: str | None = None, input_text: str | None = None,
                       namespace: str = "default", timeout: float = 300.0) -> Execution:
        """Start an execution and wait for its end (at most `timeout` seconds: then it is stopped, TIMED_OUT)."""
        ex = await self.start_execution(machine, name, input_text, namespace)
        done = await self.engine.wait(ex.id, timeout)
        if done is None:
            await self.engine.apply(ex.id, {"type": "stop", "error": "States.Timeout",
                                            "cause": f"the synchronous execution ran longer than {timeout:g} s"})
            done = await self.store.get_execution(ex.id)
        assert done is not None
        return done

    async def execution(self, execution_id: str, namespace: str | None = None) -> Execution:
        """An execution by id; with `namespace`, only one of that namespace's (another's does not exist)."""
        ex = await self.store.get_execution(execution_id)
        if ex is None or (namespace is not None and ex.namespace != namespace):
            raise WorkflowError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{execution_id}'")
        return ex

    async def execution_by_arn(self, arn: str, namespace: str = "default") -> Execution:
        parsed = arns.execution_name(arn)
        if parsed is None:
            raise WorkflowError("InvalidArn", f"Invalid Arn: '{arn}'")
        ex = await self.store.find_execution(namespace, *parsed)
        if ex is None:
            raise WorkflowError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return ex

    async def list_executions(self, machine: str | None, status: str | None = None, limit: int = 100,
                              before: tuple[float, str] | None = None, namespace: str = "default") -> list[Execution]:
        if status is not None and status not in STATUSES:
            raise WorkflowError("ValidationException", f"statusFilter {status!r} must be one of {', '.join(STATUSES)}")
        return await self.store.list_executions(namespace, machine, status, limit, before)

    async def history(self, execution_id: str, after: int = 0, limit: int = 1000, reverse: bool = False) -> list[dict[str, Any]]:
        return await self.store.history(execution_id, after, limit, reverse)

    async def stop_execution(self, ex: Execution, error: str | None = None, cause: str | None = None) -> Execution:
        """Abort a running execution (an ended one is left as it is)."""
        _check_error(error, cause)
        if ex.status == "RUNNING":
            await self.engine.apply(ex.id, {"type": "stop", "error": error, "cause": cause})
        return await self.execution(ex.id)

    # -- durable functions ----------------------------------------------------------------------------

    async def start_durable(self, function: str, function_arn: str, name: str | None, input_text: str | None,
                            timeout: float | None = None) -> tuple[Execution, bool]:
        """Start a durable execution of `function` (its executions live under a machine of kind `durable` in the
        namespace `lambda`). Returns (execution, started now); a name already used returns that execution."""
        text = json.dumps({"function": function, "arn": function_arn, "timeout": timeout}, sort_keys=True)
        m = await self.store.get_machine(DURABLE_NAMESPACE, function)
        if m is None or m.definition != text:
            now = self.clock()
            new = Machine(DURABLE_NAMESPACE, function, "durable", "STANDARD", 0, text, "", {}, now, now)
            if await self.store.put_machine(new, create=m is None) is None:  # raced another node: the same thing
                await self.store.put_machine(new, create=False)
            m = await self.store.get_machine(DURABLE_NAMESPACE, function)
        assert m is not None
        name = name or uuid.uuid4().hex
        raw = input_text if input_text else "{}"
        _json_input(raw)
        ex = Execution(id=uuid.uuid4().hex, namespace=DURABLE_NAMESPACE, machine=function, revision=m.revision, name=name,
                       kind="durable", status="RUNNING", input=raw, output=None, error=None, cause=None,
                       started_at=self.clock(), stopped_at=None, state="{}", version=0, parent=None)
        if await self.engine.begin(ex, None):
            return ex, True
        old = await self.store.find_execution(DURABLE_NAMESPACE, function, name)
        if old is None:
            raise WorkflowError("ServiceException", "the durable execution could not be started; try again")
        return old, False

    async def durable_event(self, execution_id: str, event: dict[str, Any]) -> Any:
        """Apply an event from the durable control plane (a checkpoint, a callback answer); its Step."""
        out = await self.engine.apply(execution_id, event)
        if out is None:
            raise WorkflowError("ResourceNotFoundException", "the durable execution does not exist")
        return out

    # -- task tokens ----------------------------------------------------------------------------------

    async def _token(self, token: str, event: dict[str, Any], namespace: str | None = None) -> None:
        execution_id, _, rest = (token or "").partition(".")
        if not rest or len(token) > 1024:
            raise WorkflowError("InvalidToken", "Invalid Token: not a task token polyfn gave out")
        if namespace is not None:  # another namespace's token: as if its execution did not exist
            ex = await self.engine.current(execution_id)
            if ex is None or ex.namespace != namespace:
                raise WorkflowError("TaskDoesNotExist", "Task Does Not Exist: the execution of this token does not exist")
        out = await self.engine.apply(execution_id, {**event, "token": token})
        if out is None:
            raise WorkflowError("TaskDoesNotExist", "Task Does Not Exist: the execution of this token does not exist")
        if not out.accepted:
            ex = await self.store.get_execution(execution_id)
            if ex is not None and ex.status != "RUNNING":
                raise WorkflowError("TaskTimedOut", f"Task Timed Out: the execution has ended ({ex.status})")
            raise WorkflowError("TaskDoesNotExist", "Task Does Not Exist: no task waits for this token (it has ended "
                                "or timed out)")

    async def send_task_success(self, token: str, output: str, namespace: str | None = None) -> None:
        await self._token(token, {"type": "task_callback", "ok": True, "output": _json_input(output, "output")},
                          namespace)

    async def send_task_failure(self, token: str, error: str | None = None, cause: str | None = None,
                                namespace: str | None = None) -> None:
        _check_error(error, cause)
        await self._token(token, {"type": "task_callback", "ok": False, "error": error, "cause": cause}, namespace)

    async def send_task_heartbeat(self, token: str, namespace: str | None = None) -> None:
        await self._token(token, {"type": "heartbeat"}, namespace)


def label(namespace: str, machine: str) -> str:
    """A workflow's held name (tenancy.py), as metrics and stats label it: `team-a~flow` for a machine of team-a;
    a durable function's executions are labelled by the function's held name (their machine's name)."""
    return machine if namespace == DURABLE_NAMESPACE else qualify(namespace, machine)


def _check_error(error: str | None, cause: str | None) -> None:
    if (error is not None and len(error) > MAX_ERROR) or (cause is not None and len(cause) > MAX_CAUSE):
        raise WorkflowError("ValidationException", f"error must be at most {MAX_ERROR} and cause {MAX_CAUSE} characters")


def _same_json(a: str, b: str) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return a == b
