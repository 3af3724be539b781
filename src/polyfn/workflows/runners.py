"""How the workflow store's SQL runs: each operation is a plain function of a (sync) connection, run in one
transaction by a runner — on SQLite the writes of one turn of the event loop committed together on the loop's own
thread (a transition's few statements take SQLite less than a hand-off to a thread and back), reads and large
writes on a thread each; on PostgreSQL the async engine's pooled connections through `run_sync`.

A `Refusal` an operation raises before writing is its outcome, handed back to its caller: it does not sink
the other writes committed in the same batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from polyfn.store.engine import SQLITE_BUSY_TIMEOUT_MS
from polyfn.store.engine import (
    WRITE as WRITE_OPTION,  # the store's engine: BEGIN IMMEDIATE on SQLite (store/engine.py)
)

log = logging.getLogger("polyfn.workflows")

T = TypeVar("T")

INLINE_BATCH = 100  # writes committed in one transaction on the loop's thread (then the loop gets a turn)
CHECKPOINT_EVERY = 256  # commits on the loop's thread between two WAL checkpoints (on the write thread)
RESTART_WAIT_MS = 100  # how long the checkpoint's second pass waits for readers of the WAL's older frames


class Refusal(Exception):
    """An operation's refusal (raised before it wrote anything): the caller's answer, not the batch's failure."""


def _batch(conn: Connection, ops: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[tuple[bool, Any]]:
    """Several writes in one transaction (group commit): each op's outcome, or the refusal it raised before writing."""
    out: list[tuple[bool, Any]] = []
    for fn, args in ops:
        try:
            out.append((True, fn(conn, *args)))
        except Refusal as e:
            out.append((False, e))
    return out


class _Busy(Exception):
    """The database file's write lock is held outside this process's write lock: the batch goes to the thread."""


class SqliteRunner:
    """SQLite: the store's SQL on plain connections. Small writes (a transition, a new execution, a work item) are
    queued and the writes of one turn of the event loop committed together (group commit) on the loop's own thread,
    under the store's write lock: the hand-off of a transition to a writer thread and back (a queue, two wake-ups,
    the GIL handed over twice) cost the node more CPU than SQLite's work for it (bench/workflows.py --vs: node CPU
    per Task −25 %). Its commits never checkpoint the WAL (that fsyncs): every `CHECKPOINT_EVERY` of them the
    write thread checkpoints, first beside the loop's commits, then once more while the loop holds the write
    lock, so that the next write starts the WAL over (`_committed`, `_checkpoint`). Large writes (`write_apart`: table
    creation, retention sweeps, a namespace's removal, claiming due work) and reads run on a thread each. A write
    is acknowledged only after its commit, as before (synchronous=NORMAL in WAL mode: a commit survives the
    process being killed)."""

    def __init__(self, path: str, write_lock: asyncio.Lock | None = None):
        self.engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
        # the store's own lock around its writes (activation batches included): taken around each commit, so the
        # two writers of one file wait for each other here instead of in SQLite's busy handler (which sleeps in
        # steps of up to 100 ms)
        self.write_lock = write_lock or asyncio.Lock()

        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # BEGIN is ours (IMMEDIATE for writes)
            for pragma in (f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}", "synchronous=NORMAL"):
                dbapi_conn.execute(f"PRAGMA {pragma}")

        self._threads = {k: concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"polyfn-wf-{k}")
                         for k in ("write", "read")}
        self._conns: dict[str, Connection] = {}
        self._pending: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._commits = 0  # on the loop's thread since the last checkpoint
        self._bulk: concurrent.futures.Future[None] | None = None  # the checkpoint's first pass (`_committed`)

    def _conn(self, kind: str) -> Connection:
        conn = self._conns.get(kind)
        if conn is None:
            conn = self._conns[kind] = self.engine.connect()
            if kind == "loop":
                raw = conn.connection.driver_connection
                # never wait on the loop's thread: a file locked by another writer sends the batch to the thread
                raw.execute("PRAGMA busy_timeout=0")
                raw.execute("PRAGMA wal_autocheckpoint=0")  # (`_checkpoint`, on the write thread)
        return conn

    def _run(self, kind: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        conn = self._conn(kind)
        raw = conn.connection.driver_connection  # BEGIN and COMMIT straight to the driver (the driver is in
        # autocommit mode: the transaction is these statements', whatever SQLAlchemy's bookkeeping says)
        try:
            raw.execute("BEGIN IMMEDIATE" if kind != "read" else "BEGIN")
        except sqlite3.OperationalError as e:
            if kind == "loop" and getattr(e, "sqlite_errorcode", sqlite3.SQLITE_BUSY) == sqlite3.SQLITE_BUSY:
                raise _Busy() from e
            raise
        try:
            out = fn(conn, *args)
            raw.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                raw.execute("ROLLBACK")
            raise
        return out

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads["read"], self._run, "read", fn, args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """A small write, committed with the others of this turn of the loop (on the loop's thread)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, args, fut))
        if self._task is None:
            self._task = asyncio.create_task(self._writer())
        self._wake.set()
        ok, value = await fut
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    async def write_apart(self, fn: Callable[..., T], *args: Any) -> T:
        """A large write, in a transaction of its own on the write thread."""
        async with self.write_lock:
            return await asyncio.get_running_loop().run_in_executor(  # type: ignore[no-any-return]
                self._threads["write"], self._run, "write", fn, args)

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:INLINE_BATCH], self._pending[INLINE_BATCH:]
                ops = [(fn, args) for fn, args, _ in batch]
                try:
                    async with self.write_lock:
                        try:
                            results = self._run("loop", _batch, (ops,))
                            self._committed()
                        except _Busy:
                            results = await loop.run_in_executor(self._threads["write"], self._run, "write", _batch,
                                                                 (ops,))
                except Exception as e:
                    for _fn, _args, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for (_fn, _args, fut), result in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
                if self._bulk is not None and self._bulk.done():  # the checkpoint's second pass
                    self._bulk = None
                    async with self.write_lock:  # (no commit of this process until it is done)
                        await loop.run_in_executor(self._threads["write"], self._checkpoint, True)
                if self._pending:
                    await asyncio.sleep(0)  # (the loop's other work gets a turn between two batches)

    def _committed(self) -> None:
        """Count a commit on the loop's thread; every `CHECKPOINT_EVERY`, start a checkpoint's first pass.

        A checkpoint beside a loop that keeps committing (PASSIVE on the write thread, as before) never caught
        up: the next write found the WAL not wholly copied and appended to it instead of starting it over, so
        the WAL grew by every commit's pages (31 MB after 600 executions beside their activation records with
        `CHECKPOINT_EVERY` 16, 124 MB after 2,000 of a 10-state chain: tests/workflows/test_wal.py). So the
        first pass copies the bulk beside the commits (~20 ms here, the loop's writes going on), and when it is
        done `_writer` runs a second pass holding the write lock: it copies what was committed meanwhile (~6 ms,
        the node's writes waiting), waits for the readers that still read the WAL's frames (RESTART: a reader's
        transaction is short; at most `RESTART_WAIT_MS`), and no commit lands before the next write, which then
        starts the WAL over (with PASSIVE, one reader of an older snapshot, e.g. a client polling an execution,
        kept that write from starting it over, and the WAL grew by another round). The WAL stays at about
        `CHECKPOINT_EVERY` commits' pages."""
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY and self._bulk is None:
            self._commits = 0
            self._bulk = self._threads["write"].submit(self._checkpoint)

    def _checkpoint(self, restart: bool = False) -> None:
        """On the write thread: copy the WAL's committed pages into the database file (PASSIVE: waiting for no
        reader); `restart`: then wait for the WAL's readers, up to `RESTART_WAIT_MS` (the write lock is held)."""
        try:
            raw = self._conn("write").connection.driver_connection
            if not restart:
                raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                return
            raw.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
            try:
                raw.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            finally:
                raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        except Exception:  # (the next one tries again; the writes never depend on it)
            log.warning("workflows: WAL checkpoint failed", exc_info=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        loop = asyncio.get_running_loop()
        inline = self._conns.pop("loop", None)
        if inline is not None:
            inline.close()
        for kind, pool in self._threads.items():
            conn = self._conns.pop(kind, None)
            if conn is not None:
                await loop.run_in_executor(pool, conn.close)
            pool.shutdown(wait=False)
        self.engine.dispose()


class AsyncRunner:
    """PostgreSQL (or any async engine): the same SQL through `run_sync` on pooled connections; concurrent
    transactions are the database's business."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        async with self.engine.connect() as conn:
            return await conn.run_sync(fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        async with self.engine.connect() as conn:
            await conn.execution_options(**{WRITE_OPTION: True})
            async with conn.begin():
                return await conn.run_sync(fn, *args)

    write_apart = write

    async def close(self) -> None:
        pass
