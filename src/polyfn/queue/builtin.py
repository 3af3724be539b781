"""The embedded durable queue: one SQLite file (`<data dir>/queue.db`, WAL) holding async invocations,
the dead-letter queue, pending result callbacks and embedded topic messages.

All SQLite work happens on one dedicated thread (the loop never blocks on the file). Writes are
group-committed (groupcommit.py: every caller's statements that arrive while a commit is running go into the
next transaction together; with `POLYFN_QUEUE_SYNC=full` every group commit is also fsynced). This is what
makes thousands of durable enqueues per second possible on one SQLite file.

A job is `pending` (waiting, maybe for a retry's `not_before`), `running` (held by this node's dispatcher:
claimed, or inserted already claimed when nothing was queued ahead of it) or `dead` (in the dead-letter
queue). Finished jobs are deleted: their record is the
activation in the activation store. At start, `running` jobs left by a crashed server become `pending`
again (at-least-once). A job's `attempt` counts the invocations that started (`started`), not its claims: a job
a crash caught waiting in memory keeps every attempt.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

import msgspec

from polyfn.call import Call
from polyfn.queue.groupcommit import GroupCommitFile, Stmt

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  function TEXT NOT NULL,
  kind TEXT NOT NULL,
  trigger TEXT NOT NULL,
  method TEXT NOT NULL DEFAULT 'POST',
  path TEXT NOT NULL DEFAULT '/',
  query TEXT NOT NULL DEFAULT '',
  headers TEXT NOT NULL DEFAULT '[]',
  body BLOB NOT NULL,
  content_type TEXT NOT NULL DEFAULT '',
  callback_url TEXT,
  enqueued_at REAL NOT NULL,
  not_before REAL NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL,
  last_error TEXT,
  dead_at REAL,
  reason TEXT
);
CREATE INDEX IF NOT EXISTS jobs_function ON jobs(state, function, not_before);
CREATE TABLE IF NOT EXISTS callbacks (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  payload BLOB NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0,
  not_before REAL NOT NULL,
  state TEXT NOT NULL,
  last_error TEXT,
  updated_at REAL NOT NULL,
  headers TEXT
);
CREATE INDEX IF NOT EXISTS callbacks_state ON callbacks(state, not_before);
CREATE TABLE IF NOT EXISTS topic_messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL,
  subscriber TEXT NOT NULL,
  id TEXT NOT NULL,
  body BLOB NOT NULL,
  attributes TEXT NOT NULL DEFAULT '{}',
  sent_at REAL NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0,
  not_before REAL NOT NULL,
  state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS topic_ready ON topic_messages(subscriber, state, not_before);
"""

JOB_COLUMNS = ("id", "function", "kind", "trigger", "method", "path", "query", "headers", "body", "content_type",
               "callback_url", "enqueued_at", "not_before", "attempt", "state", "last_error", "dead_at", "reason")


#: The last error of a job cancelled before it ran (its dead letter's reason is `cancelled`).
CANCELLED = {"code": "cancelled", "message": "cancelled before it ran"}


class Job(msgspec.Struct, kw_only=True):
    id: str
    function: str
    kind: str = "event"  # invoke kind: event | http | cloudevent
    trigger: str = "async"
    method: str = "POST"
    path: str = "/"
    query: str = ""
    headers: list[tuple[str, str]] = []
    body: bytes = b""
    content_type: str = ""
    callback_url: str | None = None
    enqueued_at: float = 0.0
    not_before: float = 0.0
    attempt: int = 0  # attempts started so far (a held job's goes up when its invocation starts)
    state: str = "pending"  # pending | running | dead
    last_error: dict[str, Any] | None = None
    dead_at: float | None = None
    reason: str | None = None

    @classmethod
    def of(cls, call: Call, job_id: str, callback_url: str | None, now: float) -> Job:
        """The job that queues `call` (its revision pin travels as a header, REVISION_HEADER)."""
        return cls(id=job_id, function=call.function, kind=call.kind, trigger=call.trigger, method=call.method,
                   path=call.path, query=call.query, headers=call.headers, body=call.body,
                   content_type=call.content_type, callback_url=callback_url, enqueued_at=now, not_before=now)

    def call(self, headers: list[tuple[str, str]], trace_id: str = "", parent_id: str = "",
             revision: Any = None, active: Any = None) -> Call:
        """One attempt of this job as a `Call` (its id is the activation id of every attempt)."""
        return Call(self.function, self.kind, self.trigger, self.method, self.path, self.query, headers, self.body,
                    self.content_type, trace_id, parent_id, self.id, revision, None, active)

    def row(self) -> tuple[Any, ...]:
        return (self.id, self.function, self.kind, self.trigger, self.method, self.path, self.query,
                _headers_json(self.headers), self.body, self.content_type, self.callback_url, self.enqueued_at,
                self.not_before, self.attempt, self.state,
                None if self.last_error is None else json.dumps(self.last_error), self.dead_at, self.reason)

    def summary(self) -> dict[str, Any]:
        """The JSON view for the API (body as text when it is UTF-8, else base64)."""
        out = msgspec.to_builtins(self)
        try:
            out["body"] = self.body.decode("utf-8")
            out["body_base64"] = False
        except UnicodeDecodeError:
            out["body_base64"] = True
        return out


_encode_json = msgspec.json.Encoder().encode


def _headers_json(headers: list[tuple[str, str]]) -> str:
    return _encode_json(headers).decode() if headers else "[]"


_decode_headers = msgspec.json.Decoder(list[tuple[str, str]]).decode


def _headers(text: str) -> list[tuple[str, str]]:
    """A row's headers (written by `_headers_json`): msgspec's typed decode, ~3× json.loads and a tuple each on
    the queue file's thread (a claim decodes every job it takes, holding the GIL)."""
    try:
        return _decode_headers(text)
    except msgspec.ValidationError:  # (not pairs of strings: as they are, as before)
        return [tuple(h) for h in json.loads(text)]


def _job(row: sqlite3.Row) -> Job:
    return Job(id=row["id"], function=row["function"], kind=row["kind"], trigger=row["trigger"], method=row["method"],
               path=row["path"], query=row["query"], headers=_headers(row["headers"]),
               body=bytes(row["body"]), content_type=row["content_type"], callback_url=row["callback_url"],
               enqueued_at=row["enqueued_at"], not_before=row["not_before"], attempt=row["attempt"],
               state=row["state"], last_error=None if row["last_error"] is None else json.loads(row["last_error"]),
               dead_at=row["dead_at"], reason=row["reason"])


_ATTEMPT = JOB_COLUMNS.index("attempt")
_INSERT_JOB = f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' * len(JOB_COLUMNS))})"
_UPSERT_JOB = _INSERT_JOB.replace("INSERT INTO", "INSERT OR REPLACE INTO")

# The distinct functions with pending jobs: a recursive skip-scan of the jobs_function index.
_PENDING_FUNCTIONS = """
WITH RECURSIVE f(name) AS (
  SELECT MIN(function) FROM jobs WHERE state='pending'
  UNION ALL
  SELECT (SELECT MIN(function) FROM jobs WHERE state='pending' AND function>f.name) FROM f WHERE f.name IS NOT NULL
) SELECT name FROM f WHERE name IS NOT NULL"""
# A function's due jobs, oldest first, as many as its room allows while the payloads before each are under the
# bytes left (`length(body)`: from the row's header, the blob is not read).
_CLAIM_FUNCTION = """UPDATE jobs SET state='running' WHERE id IN (
  SELECT id FROM (
    SELECT id, SUM(size) OVER (ORDER BY not_before ROWS UNBOUNDED PRECEDING) - size AS before FROM (
      SELECT id, not_before, length(body) AS size FROM jobs WHERE state='pending' AND function=? AND not_before<=?
      ORDER BY not_before LIMIT ?))
  WHERE before<?) RETURNING *"""
# The earliest `not_before` of the pending jobs not yet due: one probe of jobs_function per pending function.
_NEXT_DUE = _PENDING_FUNCTIONS.replace(
    "SELECT name FROM f WHERE name IS NOT NULL",
    "SELECT MIN((SELECT MIN(not_before) FROM jobs WHERE state='pending' AND function=f.name AND not_before>?)) "
    "FROM f WHERE name IS NOT NULL")
_STARTED = "UPDATE jobs SET attempt=attempt+1 WHERE id=?"
_ANY_DUE = "SELECT 1 FROM jobs WHERE state='pending' AND function=? AND not_before<=? LIMIT 1"

_INSERT_CALLBACK = ("INSERT OR REPLACE INTO callbacks (id, url, payload, attempt, not_before, state, last_error, "
                    "updated_at, headers) VALUES (?, ?, ?, 0, ?, 'pending', NULL, ?, ?)")


def _callback_row(job_id: str, url: str, payload: bytes, headers: dict[str, str] | None,
                  now: float) -> tuple[Any, ...]:
    return (job_id, url, payload, now, now, None if headers is None else json.dumps(headers))



class Claimed(NamedTuple):
    jobs: list[Job]
    behind: set[str]  # functions that may have due jobs left
    next_due: float | None  # the earliest `not_before` of the pending jobs not yet due


class QueueDB(GroupCommitFile):
    """The queue file. Create with `await QueueDB.open(path)`; every method is a coroutine."""

    thread_name = "polyfn-queue"

    def prepare(self, conn: sqlite3.Connection) -> None:
        conn.executescript(SCHEMA)
        # (queue.db before it: every insert, claim and delete kept this second index of the jobs up to date; the
        # one query that used it, the next due time, probes jobs_function per pending function instead)
        conn.execute("DROP INDEX IF EXISTS jobs_ready")
        if "headers" not in {r[1] for r in conn.execute("PRAGMA table_info(callbacks)")}:  # queue.db before it
            conn.execute("ALTER TABLE callbacks ADD COLUMN headers TEXT")

    # -- jobs -------------------------------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job], starting: bool = False) -> None:
        """`starting`: the jobs' invocations start right after the commit: their next attempt counted in the rows."""
        rows = [j.row() for j in jobs]
        if starting:
            rows = [(*r[:_ATTEMPT], r[_ATTEMPT] + 1, *r[_ATTEMPT + 1:]) for r in rows]
        await self.write([(_INSERT_JOB, rows, True)])

    async def recover(self) -> int:
        """Jobs a previous (crashed) server had claimed run again: `running` → `pending`."""
        def fn(conn: sqlite3.Connection) -> int:
            return conn.execute("UPDATE jobs SET state='pending' WHERE state='running'").rowcount

        return await self.transact(fn)

    async def claim_ready(self, now: float, limit: int, functions: Iterable[str] | None,
                          room: Callable[[str], int], spare: int = 1 << 62) -> Claimed:
        """Mark due pending jobs as running (held: their attempt counts when one starts) and return them, per
        function, oldest due first
        within each: at most `room(f)` of function `f` (called on the queue thread) and `limit` in all, while
        the payloads taken are under `spare` bytes (the last one taken may pass it); for `functions` (None: every
        function with pending jobs, found with an index skip-scan: one probe per function, not per job). One
        transaction, which also tells which functions may have due jobs left (`behind`: claimed up to their room
        or the bytes, or not reached) and when the next not-yet-due job is due."""

        def fn(conn: sqlite3.Connection) -> Claimed:
            names = list(functions) if functions is not None else [r[0] for r in conn.execute(_PENDING_FUNCTIONS)]
            jobs: list[Job] = []
            behind: set[str] = set()
            left = spare
            for f in names:
                n = min(room(f), limit - len(jobs))
                if n <= 0 or left <= 0:
                    behind.add(f)
                    continue
                rows = conn.execute(_CLAIM_FUNCTION, (f, now, n, left)).fetchall()
                if len(rows) >= n or conn.execute(_ANY_DUE, (f, now)).fetchone() is not None:
                    behind.add(f)  # (short of `n`: stopped by the bytes, or none left)
                for r in rows:
                    job = _job(r)
                    left -= len(job.body)
                    jobs.append(job)
            nxt = conn.execute(_NEXT_DUE, (now,)).fetchone()[0]
            jobs.sort(key=lambda j: j.not_before)
            return Claimed(jobs, behind, nxt)

        return await self.transact(fn)

    async def unclaim(self, ids: Sequence[str]) -> None:
        """Give claimed jobs back untouched (no attempt of theirs started: none was counted)."""
        await self.write([("UPDATE jobs SET state='pending' WHERE id=? AND state='running'",
                           [(i,) for i in ids], True)])

    def started(self, job_ids: Sequence[str]) -> None:
        """Attempts of these held jobs started (and still run): counted with the next group commit, not waited for.
        One merged statement for them all."""
        self.write_soon([(_STARTED, [(i,) for i in job_ids], True)])

    async def finish_many(self, job_ids: Sequence[str],
                          callbacks: Sequence[tuple[str, str, bytes, dict[str, str] | None]] = (),
                          now: float = 0.0) -> None:
        """Jobs done: deleted, and their result callbacks `(id, url, payload, headers)` queued, in one commit."""
        stmts: list[Stmt] = [("DELETE FROM jobs WHERE id=?", [(i,) for i in job_ids], True)] if job_ids else []
        if callbacks:
            stmts.append((_INSERT_CALLBACK, [_callback_row(i, url, payload, headers, now)
                                             for i, url, payload, headers in callbacks], True))
        await self.write(stmts)

    async def reschedule(self, job_id: str, not_before: float, last_error: dict[str, Any] | None,
                         attempt: int) -> None:
        """Pending again at `not_before`, `attempt` attempts counted (after its start's count: same order)."""
        await self.write([(
            "UPDATE jobs SET state='pending', not_before=?, last_error=?, attempt=? WHERE id=?",
            (not_before, None if last_error is None else json.dumps(last_error), attempt, job_id),
            False)])

    async def bury(self, job: Job, reason: str, last_error: dict[str, Any] | None, now: float) -> None:
        """Move a job (existing or new, e.g. a broker message) to the dead-letter queue."""
        job.state, job.reason, job.dead_at, job.last_error = "dead", reason, now, last_error
        await self.write([(_UPSERT_JOB, job.row(), False)])

    async def cancel_pending(self, job_id: str, now: float) -> Job | None:
        """A job still waiting (not claimed): moved to the dead-letter queue with reason `cancelled`, in one
        statement so that a claim racing it either takes it first or never sees it. None when not waiting."""
        def fn(conn: sqlite3.Connection) -> Job | None:
            err = json.dumps(CANCELLED)
            n = conn.execute("UPDATE jobs SET state='dead', reason='cancelled', dead_at=?, last_error=? "
                             "WHERE id=? AND state='pending'", (now, err, job_id)).rowcount
            if not n:
                return None
            return _job(conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

        return await self.transact(fn)

    async def get(self, job_id: str) -> Job | None:
        rows = await self.read("SELECT * FROM jobs WHERE id=?", (job_id,))
        return _job(rows[0]) if rows else None

    async def dead(self, function: str | None = None, limit: int = 100) -> list[Job]:
        sql = "SELECT * FROM jobs WHERE state='dead'"
        params: list[Any] = []
        if function:
            sql += " AND function=?"
            params.append(function)
        sql += " ORDER BY dead_at DESC LIMIT ?"
        params.append(limit)
        return [_job(r) for r in await self.read(sql, params)]

    async def replay(self, job_id: str, now: float) -> bool:
        """A dead job runs again from attempt 1 (its age counts from now)."""
        def fn(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "UPDATE jobs SET state='pending', attempt=0, not_before=?, enqueued_at=?, dead_at=NULL, reason=NULL "
                "WHERE id=? AND state='dead'", (now, now, job_id)).rowcount == 1

        return await self.transact(fn)

    async def purge(self, job_id: str) -> bool:
        def fn(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM jobs WHERE id=? AND state='dead'", (job_id,)).rowcount == 1

        return await self.transact(fn)

    async def counts_by_function(self) -> tuple[dict[str, int], dict[str, int]]:
        """(jobs pending or running, dead letters) per function: one indexed query."""
        rows = await self.read("SELECT function, state, COUNT(*) AS n FROM jobs WHERE state IN ('pending', "
                               "'running', 'dead') GROUP BY function, state")
        queued: dict[str, int] = {}
        dead: dict[str, int] = {}
        for r in rows:
            target = dead if r["state"] == "dead" else queued
            target[r["function"]] = target.get(r["function"], 0) + r["n"]
        return queued, dead

    async def counts(self) -> dict[str, int]:
        rows = await self.read("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    # -- callbacks --------------------------------------------------------------------------------------

    async def add_callback(self, job_id: str, url: str, payload: bytes, now: float,
                           headers: dict[str, str] | None = None) -> None:
        """`headers`: the POST's headers when the payload is not polyfn's JSON result (a vendor's shape)."""
        await self.write([(_INSERT_CALLBACK, _callback_row(job_id, url, payload, headers, now), False)])

    async def update_callback(self, job_id: str, state: str, attempt: int, not_before: float,
                              last_error: str | None, now: float) -> None:
        await self.write([(
            "UPDATE callbacks SET state=?, attempt=?, not_before=?, last_error=?, updated_at=? WHERE id=?",
            (state, attempt, not_before, last_error, now, job_id), False)])

    async def pending_callbacks(self) -> list[sqlite3.Row]:
        return await self.read("SELECT * FROM callbacks WHERE state='pending' ORDER BY not_before")

    async def get_callback(self, job_id: str) -> dict[str, Any] | None:
        rows = await self.read("SELECT url, attempt, state, last_error, updated_at FROM callbacks WHERE id=?",
                               (job_id,))
        return dict(rows[0]) if rows else None

    # -- embedded topics ----------------------------------------------------------------------------
    # One row per (message, subscribing trigger): `pending` → `inflight` (claimed by the trigger) → deleted
    # once delivered or dead-lettered. `inflight` rows left by a crash become `pending` again at start.

    async def topic_publish_many(self, topic: str, subscribers: Sequence[str],
                                 msgs: Sequence[tuple[str, bytes, dict[str, str], float]]) -> None:
        """Several messages `(id, body, attributes, sent_at)` for every subscriber, in one commit."""
        rows = [(topic, sub, mid, body, json.dumps(attrs), at, at) for sub in subscribers
                for mid, body, attrs, at in msgs]
        await self.write([(
            "INSERT INTO topic_messages (topic, subscriber, id, body, attributes, sent_at, not_before, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')", rows, True)])

    async def topic_claim(self, subscriber: str, limit: int) -> list[sqlite3.Row]:
        def fn(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "UPDATE topic_messages SET state='inflight', attempt=attempt+1 WHERE seq IN (SELECT seq FROM "
                "topic_messages WHERE subscriber=? AND state='pending' ORDER BY seq LIMIT ?) RETURNING *",
                (subscriber, limit)).fetchall()

        rows = await self.transact(fn)
        return sorted(rows, key=lambda r: r["seq"])

    async def topic_count(self, subscriber: str) -> int:
        rows = await self.read("SELECT COUNT(*) AS n FROM topic_messages WHERE subscriber=? AND state='pending'",
                               (subscriber,))
        return rows[0]["n"]

    async def topic_ack(self, seqs: Sequence[int]) -> None:
        await self.write([("DELETE FROM topic_messages WHERE seq=?", [(s,) for s in seqs], True)])

    async def topic_recover(self) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            return conn.execute("UPDATE topic_messages SET state='pending' WHERE state='inflight'").rowcount

        return await self.transact(fn)

    async def topic_drop_subscriber(self, subscriber: str) -> None:
        await self.write([("DELETE FROM topic_messages WHERE subscriber=?", (subscriber,), False)])
