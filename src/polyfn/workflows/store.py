"""Where workflows live: state machines, executions, their history and their pending work, in SQL tables on the
node's own database engine (SQLite embedded, PostgreSQL in a cluster), through SQLAlchemy Core.

The service owns these tables and creates them at start (`create_all`, under an advisory lock on PostgreSQL so
nodes starting together do not race); they are apart from the store's Alembic chain so the workflow schema can
move on its own. An execution's whole runtime state is one JSON text in its row with a `version`: every change
is a compare-and-set on that version (`save`), so two nodes (or two events on one node) never both apply a
step to the same state, and one transaction stores the new state, its history events and its work (the tasks
to run, the timers to fire) together: a transition is recorded before the task it schedules can run.

Work items (`wf_work`) are the durable queue of the engine: `invoke` (run a task), `timer` (fire a timer),
`resume` (a child execution ended: tell the parent). An item is *leased* by the node running it until
`lease`; a node that dies leaves it to be taken again when the lease ends (or at once by the same node at
its restart), so a task runs at least once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from polyfn.workflows.runners import AsyncRunner, Refusal, SqliteRunner

_SCHEMA_LOCK_KEY = 0x77666C6F77  # "wflow": pg advisory lock id held while creating the tables
FINAL = frozenset({"SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"})

metadata = MetaData()

machines = Table(
    "wf_machines", metadata,
    Column("namespace", String, primary_key=True),
    Column("name", String, primary_key=True),
    Column("kind", String, nullable=False),  # asl | sequence | conductor
    Column("type", String, nullable=False),  # STANDARD | EXPRESS
    Column("revision", Integer, nullable=False),
    Column("definition", Text, nullable=False),
    Column("role_arn", Text, nullable=False),
    Column("meta", Text, nullable=False),  # JSON: tags, description, logging and tracing configuration as given
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# every revision of a definition, so an execution keeps running the definition it started with
definitions = Table(
    "wf_definitions", metadata,
    Column("namespace", String, primary_key=True),
    Column("machine", String, primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("kind", String, nullable=False),
    Column("definition", Text, nullable=False),
)

executions = Table(
    "wf_executions", metadata,
    Column("id", String, primary_key=True),  # the execution's key (hex); task tokens start with it
    Column("namespace", String, nullable=False),
    Column("machine", String, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("name", String, nullable=False),
    Column("kind", String, nullable=False),  # asl | durable
    Column("status", String, nullable=False),
    Column("input", Text, nullable=False),
    Column("output", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("cause", Text, nullable=True),
    Column("started_at", Float, nullable=False),
    Column("stopped_at", Float, nullable=True),
    Column("state", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("parent", Text, nullable=True),  # JSON {execution, token, pattern} of a Task that started this one
    Index("wf_executions_by_name", "namespace", "machine", "name", unique=True),
    Index("wf_executions_by_start", "namespace", "machine", "started_at"),
    Index("wf_executions_by_status", "status"),
)

events = Table(
    "wf_events", metadata,
    Column("execution", String, primary_key=True),
    Column("id", Integer, primary_key=True),
    Column("type", String, nullable=False),
    Column("ts", Float, nullable=False),
    Column("body", Text, nullable=False),  # the whole event as JSON
)

# a durable function's operations, one row each: a checkpoint writes the operations it changed, not the whole
# execution (the execution row keeps the rest of its state, which stays small)
ops = Table(
    "wf_ops", metadata,
    Column("execution", String, primary_key=True),
    Column("id", String, primary_key=True),
    Column("n", Integer, nullable=False),  # the operation's place in the execution's order (when it first appeared)
    Column("body", Text, nullable=False),  # the operation as JSON (the Lambda API's Operation, times in ms)
)

work = Table(
    "wf_work", metadata,
    Column("id", String, primary_key=True),
    Column("execution", String, nullable=False),
    Column("kind", String, nullable=False),  # invoke | timer | resume
    Column("due", Float, nullable=False),
    Column("payload", Text, nullable=False),
    Column("owner", String, nullable=True),
    Column("lease", Float, nullable=True),
    Index("wf_work_by_due", "due"),
    Index("wf_work_by_execution", "execution"),
)


@dataclass(slots=True)
class Execution:
    id: str
    namespace: str
    machine: str
    revision: int
    name: str
    kind: str
    status: str
    input: str
    output: str | None
    error: str | None
    cause: str | None
    started_at: float
    stopped_at: float | None
    state: str
    version: int
    parent: str | None

    @classmethod
    def of(cls, row: Any) -> Execution:
        return cls(**{c: row._mapping[c] for c in cls.__slots__})  # type: ignore[attr-defined]


@dataclass(slots=True)
class Machine:
    namespace: str
    name: str
    kind: str
    type: str
    revision: int
    definition: str
    role_arn: str
    meta: dict[str, Any]
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, row: Any) -> Machine:
        m = row._mapping
        return cls(namespace=m["namespace"], name=m["name"], kind=m["kind"], type=m["type"], revision=m["revision"],
                   definition=m["definition"], role_arn=m["role_arn"], meta=json.loads(m["meta"]),
                   created_at=m["created_at"], updated_at=m["updated_at"])


@dataclass(slots=True)
class WorkItem:
    id: str
    execution: str
    kind: str
    due: float
    payload: dict[str, Any]
    owner: str | None = None
    lease: float | None = None
    text: str | None = None  # the payload as JSON, when it was serialised already

    def row(self) -> dict[str, Any]:
        text = self.text if self.text is not None else json.dumps(self.payload, separators=(",", ":"))
        return {"id": self.id, "execution": self.execution, "kind": self.kind, "due": self.due,
                "payload": text, "owner": self.owner, "lease": self.lease}

    @classmethod
    def of(cls, row: Any) -> WorkItem:
        m = row._mapping
        return cls(m["id"], m["execution"], m["kind"], m["due"], json.loads(m["payload"]), m["owner"], m["lease"])


class Conflict(Refusal):
    """The execution changed since it was read (another event was applied first): read it again."""


class NameTaken(Refusal):
    """An execution of this name already ran in this machine."""


# -- SQL, one code path for both databases: plain functions of a (sync) connection --------------------------


def _machine(conn: Connection, namespace: str, name: str) -> Machine | None:
    row = conn.execute(select(machines).where(machines.c.namespace == namespace, machines.c.name == name)).first()
    return Machine.of(row) if row else None


def _put_machine(conn: Connection, m: Machine, create: bool) -> Machine | None:
    found = conn.execute(select(machines.c.revision, machines.c.created_at).where(
        machines.c.namespace == m.namespace, machines.c.name == m.name)).first()
    if (found is not None) == create:
        return None
    if found is not None:
        m.revision, m.created_at = found.revision + 1, found.created_at
        conn.execute(delete(machines).where(machines.c.namespace == m.namespace, machines.c.name == m.name))
    else:  # a name deleted and created again continues its revisions (running executions keep theirs)
        last = conn.execute(select(func.max(definitions.c.revision)).where(
            definitions.c.namespace == m.namespace, definitions.c.machine == m.name)).scalar()
        m.revision = (last or 0) + 1
    conn.execute(insert(machines).values(
        namespace=m.namespace, name=m.name, kind=m.kind, type=m.type, revision=m.revision, definition=m.definition,
        role_arn=m.role_arn, meta=json.dumps(m.meta), created_at=m.created_at, updated_at=m.updated_at))
    conn.execute(insert(definitions).values(namespace=m.namespace, machine=m.name, revision=m.revision, kind=m.kind,
                                            definition=m.definition))
    return m


# Statements built once (bound parameters): building and caching a Core statement per call cost ~10 times
# what SQLite takes to run it.
_INSERT_EVENTS = insert(events)
_INSERT_WORK = insert(work)
_INSERT_EXECUTION = insert(executions)
_NAME_TAKEN = select(executions.c.id).where(executions.c.namespace == bindparam("namespace"),
                                            executions.c.machine == bindparam("machine"),
                                            executions.c.name == bindparam("name"))
_UPDATE_EXECUTION = update(executions).where(executions.c.id == bindparam("_id"),
                                             executions.c.version == bindparam("_version")).values(
    state=bindparam("state"), version=bindparam("version"), status=bindparam("status"), output=bindparam("output"),
    error=bindparam("error"), cause=bindparam("cause"), stopped_at=bindparam("stopped_at"))
_DELETE_WORK = delete(work).where(work.c.id.in_(bindparam("ids", expanding=True)))
_OPS_OF = select(ops.c.body).where(ops.c.execution == bindparam("execution")).order_by(ops.c.n)


def _upsert_ops() -> dict[str, Any]:
    """INSERT … ON CONFLICT (execution, id) DO UPDATE SET body (the same SQL on SQLite and PostgreSQL): an
    operation's row keeps the place it got when it first appeared."""
    out: dict[str, Any] = {}
    for name, dialect in (("sqlite", sqlite_dialect), ("postgresql", postgresql)):
        stmt = dialect.insert(ops)
        out[name] = stmt.on_conflict_do_update(index_elements=[ops.c.execution, ops.c.id],
                                               set_={"body": stmt.excluded.body})
    return out


_UPSERT_OPS = _upsert_ops()

#: a changed operation of a durable execution: (id, place in the order, body as JSON)
OpRow = tuple[str, int, str]


def _ops(conn: Connection, execution_id: str, rows: Sequence[OpRow]) -> None:
    if rows:
        conn.execute(_UPSERT_OPS[conn.dialect.name], [{"execution": execution_id, "id": i, "n": n, "body": body}
                                                      for i, n, body in rows])


_encode = msgspec.json.Encoder().encode


def event_text(e: dict[str, Any]) -> str:
    """A history event's row body: compact JSON, by msgspec (several times json's speed; an event holds
    polyfn's own ids, times and names, and inputs and outputs as JSON text already, so nothing in it is
    a value JSON cannot carry)."""
    return _encode(e).decode()


def _events(conn: Connection, execution_id: str, evs: Sequence[dict[str, Any]]) -> None:
    if evs:
        conn.execute(_INSERT_EVENTS, [{"execution": execution_id, "id": e["id"], "type": e["type"], "ts": e["timestamp"],
                                       "body": event_text(e)} for e in evs])


def _insert_execution(conn: Connection, ex: Execution, evs: Sequence[dict[str, Any]], items: Sequence[WorkItem],
                      op_rows: Sequence[OpRow] = ()) -> None:
    if conn.execute(_NAME_TAKEN, {"namespace": ex.namespace, "machine": ex.machine, "name": ex.name}).first() is not None:
        raise NameTaken(ex.name)
    conn.execute(_INSERT_EXECUTION, {c: getattr(ex, c) for c in Execution.__slots__})
    _ops(conn, ex.id, op_rows)
    _events(conn, ex.id, evs)
    if items:
        conn.execute(_INSERT_WORK, [i.row() for i in items])


# The same statements as plain SQLite SQL for `_save`, the transition's hot path: SQLAlchemy's execution of a
# Core statement (compiled-cache lookup, parameter processing, its result objects) cost several times what SQLite
# takes to run it, four statements per transition.
_SQLITE_UPDATE_EXECUTION = (f"UPDATE {executions.name} SET state = ?, version = ?, status = ?, output = ?, error = ?, "
                            "cause = ?, stopped_at = ? WHERE id = ? AND version = ?")
_SQLITE_INSERT_EVENT = f"INSERT INTO {events.name} (execution, id, type, ts, body) VALUES (?, ?, ?, ?, ?)"
_SQLITE_INSERT_WORK = (f"INSERT INTO {work.name} (id, execution, kind, due, payload, owner, lease) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)")


def _save_sqlite(conn: Connection, ex: Execution, version: int, evs: Sequence[dict[str, Any]],
                 items: Sequence[WorkItem], cancel: Sequence[str], done: str | None, op_rows: Sequence[OpRow]) -> None:
    raw = conn.connection.driver_connection
    res = raw.execute(_SQLITE_UPDATE_EXECUTION, (ex.state, version + 1, ex.status, ex.output, ex.error, ex.cause,
                                                 ex.stopped_at, ex.id, version))
    if res.rowcount != 1:
        raise Conflict(ex.id)
    _ops(conn, ex.id, op_rows)
    if evs:
        raw.executemany(_SQLITE_INSERT_EVENT, [(ex.id, e["id"], e["type"], e["timestamp"], event_text(e))
                                               for e in evs])
    gone = [*cancel, *([done] if done else [])]
    if gone:
        raw.execute(f"DELETE FROM {work.name} WHERE id IN ({', '.join('?' * len(gone))})", gone)
    if items:
        rows = []
        for i in items:
            r = i.row()
            rows.append((r["id"], r["execution"], r["kind"], r["due"], r["payload"], r["owner"], r["lease"]))
        raw.executemany(_SQLITE_INSERT_WORK, rows)


def _save(conn: Connection, ex: Execution, version: int, evs: Sequence[dict[str, Any]], items: Sequence[WorkItem],
          cancel: Sequence[str], done: str | None, op_rows: Sequence[OpRow] = ()) -> None:
    if conn.dialect.name == "sqlite":
        _save_sqlite(conn, ex, version, evs, items, cancel, done, op_rows)
        return
    res = conn.execute(_UPDATE_EXECUTION, {"_id": ex.id, "_version": version, "state": ex.state, "version": version + 1,
                                           "status": ex.status, "output": ex.output, "error": ex.error, "cause": ex.cause,
                                           "stopped_at": ex.stopped_at})
    if res.rowcount != 1:
        raise Conflict(ex.id)
    _ops(conn, ex.id, op_rows)
    _events(conn, ex.id, evs)
    gone = [*cancel, *([done] if done else [])]
    if gone:
        conn.execute(_DELETE_WORK, {"ids": gone})
    if items:
        conn.execute(_INSERT_WORK, [i.row() for i in items])


def _delete_ended(conn: Connection, before: float, limit: int) -> int:
    """Executions that ended before `before`, with their history, operations and leftover work (not one whose
    parent has yet to learn that it ended: its `resume` item is still due)."""
    resume_due = select(work.c.id).where(work.c.id == executions.c.id + "/resume").exists()
    ids = [r[0] for r in conn.execute(select(executions.c.id).where(
        executions.c.status.in_(sorted(FINAL)), executions.c.stopped_at < before, ~resume_due).limit(limit))]
    if ids:
        for table, column in ((events, events.c.execution), (ops, ops.c.execution), (work, work.c.execution),
                              (executions, executions.c.id)):
            conn.execute(delete(table).where(column.in_(ids)))
    return len(ids)


def _claim(conn: Connection, now: float, owner: str, lease: float, limit: int, skip_locked: bool) -> list[WorkItem]:
    q = select(work).where(work.c.due <= now, or_(work.c.lease.is_(None), work.c.lease < now)).order_by(work.c.due).limit(limit)
    if skip_locked:
        q = q.with_for_update(skip_locked=True)
    items = [WorkItem.of(r) for r in conn.execute(q).all()]
    if items:
        conn.execute(update(work).where(work.c.id.in_([i.id for i in items])).values(owner=owner, lease=lease))
    for i in items:
        i.owner, i.lease = owner, lease
    return items


class WorkflowStore:
    def __init__(self, engine: AsyncEngine, write_lock: asyncio.Lock | None = None):
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self.db: SqliteRunner | AsyncRunner = (SqliteRunner(engine.url.database or "", write_lock) if self._sqlite
                                                 else AsyncRunner(engine))

    async def create_tables(self) -> None:
        def create(conn: Connection) -> None:
            if not self._sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
            metadata.create_all(conn, checkfirst=True)

        await self.db.write_apart(create)

    async def close(self) -> None:
        await self.db.close()

    # -- state machines -------------------------------------------------------------------------------

    async def get_machine(self, namespace: str, name: str) -> Machine | None:
        return await self.db.read(_machine, namespace, name)

    async def list_machines(self, namespace: str) -> list[Machine]:
        def q(conn: Connection) -> list[Machine]:
            rows = conn.execute(select(machines).where(machines.c.namespace == namespace).order_by(machines.c.name)).all()
            return [Machine.of(r) for r in rows]

        return await self.db.read(q)

    async def put_machine(self, m: Machine, create: bool) -> Machine | None:
        """Create (None when the name is taken) or update (None when it does not exist) a state machine; each
        write records the definition under the machine's new revision."""
        return await self.db.write(_put_machine, m, create)

    async def delete_machine(self, namespace: str, name: str) -> bool:
        def q(conn: Connection) -> bool:
            return bool(conn.execute(delete(machines).where(machines.c.namespace == namespace,
                                                            machines.c.name == name)).rowcount)

        return await self.db.write(q)

    async def get_definition(self, namespace: str, machine: str, revision: int) -> tuple[str, str] | None:
        """(kind, definition text) of a machine's revision."""
        def q(conn: Connection) -> tuple[str, str] | None:
            row = conn.execute(select(definitions.c.kind, definitions.c.definition).where(
                definitions.c.namespace == namespace, definitions.c.machine == machine,
                definitions.c.revision == revision)).first()
            return (row.kind, row.definition) if row else None

        return await self.db.read(q)

    # -- executions -----------------------------------------------------------------------------------

    async def get_execution(self, execution_id: str) -> Execution | None:
        def q(conn: Connection) -> Execution | None:
            row = conn.execute(select(executions).where(executions.c.id == execution_id)).first()
            return Execution.of(row) if row else None

        return await self.db.read(q)

    async def get_ops(self, execution_id: str) -> list[str]:
        """A durable execution's operations (JSON text each), in their order."""
        return await self.db.read(lambda conn: [r.body for r in conn.execute(_OPS_OF, {"execution": execution_id})])

    async def find_execution(self, namespace: str, machine: str, name: str) -> Execution | None:
        def q(conn: Connection) -> Execution | None:
            row = conn.execute(select(executions).where(executions.c.namespace == namespace,
                                                        executions.c.machine == machine, executions.c.name == name)).first()
            return Execution.of(row) if row else None

        return await self.db.read(q)

    async def list_executions(self, namespace: str, machine: str | None, status: str | None, limit: int,
                              before: tuple[float, str] | None = None) -> list[Execution]:
        """Newest first; `before` is the (started_at, id) of the last one of the previous page."""
        q = select(executions).where(executions.c.namespace == namespace)
        if machine is not None:
            q = q.where(executions.c.machine == machine)
        if status is not None:
            q = q.where(executions.c.status == status)
        if before is not None:
            q = q.where(or_(executions.c.started_at < before[0],
                            and_(executions.c.started_at == before[0], executions.c.id < before[1])))
        q = q.order_by(executions.c.started_at.desc(), executions.c.id.desc()).limit(limit)
        return await self.db.read(lambda conn: [Execution.of(r) for r in conn.execute(q).all()])

    async def count_by_status(self, namespace: str | None = None) -> dict[str, int]:
        q = select(executions.c.status, func.count()).group_by(executions.c.status)
        if namespace is not None:
            q = q.where(executions.c.namespace == namespace)
        return await self.db.read(lambda conn: {r[0]: r[1] for r in conn.execute(q).all()})

    async def insert_execution(self, ex: Execution, evs: Sequence[dict[str, Any]], items: Sequence[WorkItem],
                               op_rows: Sequence[OpRow] = ()) -> bool:
        """Store a new execution with its first events and work (and operations); False when its name is taken."""
        try:
            await self.db.write(_insert_execution, ex, evs, items, op_rows)
        except (NameTaken, IntegrityError):  # (IntegrityError: another node took the name at the same moment)
            return False
        return True

    async def save(self, ex: Execution, version: int, evs: Sequence[dict[str, Any]], items: Sequence[WorkItem],
                   cancel: Sequence[str], done: str | None, op_rows: Sequence[OpRow] = ()) -> None:
        """Store the execution's new state (`ex`, read at `version`), the operations that changed, its new events
        and work, cancel work ids, and delete the work item `done` that caused the step, in one transaction.
        Conflict when the execution changed meanwhile."""
        await self.db.write(_save, ex, version, evs, items, cancel, done, op_rows)
        ex.version = version + 1

    async def history(self, execution_id: str, after: int, limit: int, reverse: bool) -> list[dict[str, Any]]:
        q = select(events.c.body).where(events.c.execution == execution_id)
        if reverse:
            q = (q.where(events.c.id < after) if after else q).order_by(events.c.id.desc())
        else:
            q = q.where(events.c.id > after).order_by(events.c.id)
        q = q.limit(limit)
        return await self.db.read(lambda conn: [json.loads(r.body) for r in conn.execute(q).all()])

    async def delete_ended(self, before: float, limit: int = 500) -> int:
        """Forget executions that ended before `before` (retention); how many went, at most `limit` a call."""
        return await self.db.write_apart(_delete_ended, before, limit)

    # -- work -----------------------------------------------------------------------------------------

    async def drop_work(self, ids: Sequence[str]) -> None:
        await self.db.write(lambda conn: conn.execute(delete(work).where(work.c.id.in_(list(ids)))) and None)

    async def postpone(self, item_id: str, due: float, owner: str | None, lease: float | None) -> None:
        await self.db.write(lambda conn: conn.execute(
            update(work).where(work.c.id == item_id).values(due=due, owner=owner, lease=lease)) and None)

    async def replace_work(self, prefix: str, items: Sequence[WorkItem]) -> None:
        """Delete the work items whose id starts with `prefix` and store `items` (a machine's schedules)."""
        def q(conn: Connection) -> None:
            conn.execute(delete(work).where(work.c.id.startswith(prefix, autoescape=True)))
            if items:
                conn.execute(_INSERT_WORK, [i.row() for i in items])

        await self.db.write(q)

    async def renew(self, ids: Sequence[str], owner: str, lease: float) -> None:
        await self.db.write(lambda conn: conn.execute(
            update(work).where(work.c.id.in_(list(ids)), work.c.owner == owner).values(lease=lease)) and None)

    async def claim_due(self, now: float, owner: str, lease: float, limit: int) -> list[WorkItem]:
        """Due work nobody holds (never leased, or its lease is over): leased to `owner` until `lease`."""
        return await self.db.write_apart(_claim, now, owner, lease, limit, not self._sqlite)

    async def release_owner(self, owner: str) -> int:
        """At start: what this node held before it stopped is free to take at once."""
        return await self.db.write_apart(lambda conn: conn.execute(
            update(work).where(work.c.owner == owner).values(lease=None, owner=None)).rowcount or 0)

    async def work_counts(self) -> dict[str, int]:
        q = select(work.c.kind, func.count()).group_by(work.c.kind)
        return await self.db.read(lambda conn: {r[0]: r[1] for r in conn.execute(q).all()})
