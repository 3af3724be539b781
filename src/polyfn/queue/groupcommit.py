"""A SQLite file written on one thread of its own, with group commits (the queue file, builtin.py, is one).

All SQLite work happens on that thread (the loop never blocks on the file). Writes are group-committed: every
caller's statements that arrive while a commit is running go into the next transaction together, and each
caller's `await` returns only once that transaction committed (WAL; `synchronous=NORMAL` by default: the commit
is in the OS, so it survives `kill -9` of the server; `full` also fsyncs each group commit, surviving a power
loss). A caller whose statements fail is rolled back to its savepoint alone.

A group is first tried as one plain transaction, with adjacent callers' identical statements merged (a run of
one-row INSERTs becomes multi-row INSERTs, a run of `DELETE … WHERE col=?` — or of an UPDATE whose only
parameter is that key — one `WHERE col IN (…)`): a
thousand enqueues cost a few statements, not three each (savepoint, insert, release), and the file's thread
takes the GIL back a few times per commit instead of per row. Only when that fails is the group run again
caller by caller, each in its savepoint, so that the failing caller alone gets the error."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self, TypeVar

T = TypeVar("T")
log = logging.getLogger("polyfn.queue")
Stmt = tuple[str, Sequence[Any] | Sequence[Sequence[Any]], bool]  # (sql, params, executemany?)

_INSERT = re.compile(r"^(INSERT (?:OR \w+ )?INTO \w+ \([^)]*\) VALUES )(\([^()]*\))$")
# (and an UPDATE whose only parameter is the row's key: `UPDATE t SET a=a+1 WHERE id=?`)
_DELETE = re.compile(r"^((?:DELETE FROM \w+|UPDATE \w+ SET [^?]*) WHERE \w+)=\?$")
#: rows per merged statement: powers of two up to this (a few shapes per statement for SQLite's statement
#: cache; 256 × the queue's 18 columns is far below SQLite's 32,766 variables)
_ROWS = 256


def _merged(batch: Sequence[tuple[list[Stmt], Any]]) -> list[tuple[str, list[Sequence[Any]]]]:
    """Every caller's statements in order, as (sql, rows) with adjacent runs of the same SQL joined."""
    out: list[tuple[str, list[Sequence[Any]]]] = []
    for stmts, _fut in batch:
        for sql, params, many in stmts:
            rows = list(params) if many else [params]  # type: ignore[list-item]
            if out and out[-1][0] == sql:
                out[-1][1].extend(rows)  # type: ignore[arg-type]
            else:
                out.append((sql, rows))  # type: ignore[arg-type]
    return out


_multi: dict[tuple[str, int], str] = {}


def _multirow(sql: str, n: int) -> str | None:
    """`sql` for n rows at once (a multi-row INSERT, a DELETE … IN), or None when it has no such form."""
    key = (sql, n)
    out = _multi.get(key)
    if out is None:
        m = _INSERT.match(sql)
        if m is not None:
            out = m[1] + ", ".join([m[2]] * n)
        else:
            m = _DELETE.match(sql)
            if m is None:
                return None
            out = f"{m[1]} IN ({', '.join('?' * n)})"
        _multi[key] = out  # (bounded: a few statements × the powers of two up to _ROWS)
    return out


def _run_merged(conn: sqlite3.Connection, sql: str, rows: list[Sequence[Any]]) -> None:
    if len(rows) > 1 and _multirow(sql, 2) is not None:
        delete = _DELETE.match(sql) is not None  # (one parameter a row: the key)
        i, left = 0, len(rows)
        while left:
            n = min(_ROWS, 1 << (left.bit_length() - 1))
            chunk = rows[i:i + n]
            i, left = i + n, left - n
            flat = [r[0] for r in chunk] if delete else [v for r in chunk for v in r]
            conn.execute(_multirow(sql, len(chunk)), flat)  # type: ignore[arg-type]
    elif len(rows) == 1:
        conn.execute(sql, rows[0])
    else:
        conn.executemany(sql, rows)


class GroupCommitFile:
    """Create with `await Subclass.open(path)`; a subclass makes its tables in `prepare`."""

    thread_name = "polyfn-sqlite"

    def __init__(self, path: Path, sync: str = "normal"):
        self.path = path
        self.sync = sync
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_name)
        self._loop: asyncio.AbstractEventLoop | None = None  # (asyncio.get_running_loop costs a getpid() each call)
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[list[Stmt], asyncio.Future[None] | None]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.commits = 0  # group commits so far
        self.writes = 0  # callers' writes they carried (writes / commits: how much grouping saves)

    @classmethod
    async def open(cls, path: Path, sync: str = "normal") -> Self:
        """`sync`: SQLite's `synchronous` in WAL mode: "normal" (a commit reaches the OS: survives kill -9
        of the server) or "full" (every commit is fsynced: survives a power loss)."""
        if sync not in ("normal", "full"):
            raise ValueError(f"sync must be normal or full, not {sync!r}")
        db = cls(path, sync)
        db._loop = asyncio.get_running_loop()
        await db._run(db._connect)
        db._writer = asyncio.create_task(db._write_loop())
        return db

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.sync.upper()}")
        conn.execute("PRAGMA busy_timeout=10000")
        self.prepare(conn)
        self._conn = conn

    def prepare(self, conn: sqlite3.Connection) -> None:
        """The file's tables and migrations (on the file's thread, at open)."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = self._loop or asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        if self._conn is not None:
            await self._run(self._conn.close)
        self._executor.shutdown(wait=True)

    async def write(self, stmts: list[Stmt]) -> None:
        """Run `stmts` in a transaction (shared with concurrent callers); return once committed."""
        fut: asyncio.Future[None] = (self._loop or asyncio.get_running_loop()).create_future()
        self._pending.append((stmts, fut))
        self._wake.set()
        await fut

    def write_soon(self, stmts: list[Stmt]) -> None:
        """Run `stmts` in the next group commit without waiting for it (nobody is told when it committed; a failure
        is logged)."""
        self._pending.append((stmts, None))
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                batch, self._pending = self._pending, []
                self.commits += 1
                self.writes += len(batch)
                try:
                    errors = await self._run(self._commit, batch)
                except Exception as e:  # the whole transaction failed: every caller learns it
                    errors = [e] * len(batch)
                self._answer(batch, errors)
                if self._closed:  # (closed with writes nobody waited for in that batch: go round once more)
                    self._wake.set()
            elif self._closed:
                return

    def _answer(self, batch: list[tuple[list[Stmt], asyncio.Future[None] | None]],
                errors: list[Exception | None]) -> None:
        """Each waiting caller learns how its write ended; a failed write nobody waits for is logged."""
        for (stmts, fut), error in zip(batch, errors, strict=True):
            if fut is None:
                if error is not None:
                    log.warning("%s: a write nobody waits for failed (%s): %s", self.path.name, error,
                                stmts[0][0][:80])
            elif fut.done():
                continue
            elif error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

    def _commit(self, batch: list[tuple[list[Stmt], asyncio.Future[None] | None]]) -> list[Exception | None]:
        """One transaction for the batch, its statements merged; when that fails, one transaction in which a
        caller whose statements fail is rolled back to its savepoint alone, so one bad write never loses the
        others."""
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in _merged(batch):
                _run_merged(conn, sql, rows)
            conn.execute("COMMIT")
            return [None] * len(batch)
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if len(batch) == 1 and len(batch[0][0]) == 1:
                raise  # (nothing to tell apart: the caller gets the error)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        errors: list[Exception | None] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmts, _fut in batch:
                conn.execute("SAVEPOINT w")
                try:
                    for sql, params, many in stmts:
                        if many:
                            conn.executemany(sql, params)  # type: ignore[arg-type]
                        else:
                            conn.execute(sql, params)
                    conn.execute("RELEASE w")
                    errors.append(None)
                except sqlite3.Error as e:
                    conn.execute("ROLLBACK TO w")
                    conn.execute("RELEASE w")
                    errors.append(e)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return errors

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        def q() -> list[sqlite3.Row]:
            assert self._conn is not None
            return self._conn.execute(sql, params).fetchall()

        return await self._run(q)

    async def transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` inside its own write transaction on the queue thread (for claim-style updates)."""

        def t() -> T:
            conn = self._conn
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
                conn.execute("COMMIT")
                return out
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        return await self._run(t)
