"""How the workflow store's SQL runs: each operation is a plain function of a (sync) connection, run in one
transaction by a runner — on SQLite two connections with a thread each (writes from many executions committed
together), on PostgreSQL the async engine's pooled connections through `run_sync`.

A `Refusal` an operation raises before writing is its outcome, handed back to its caller: it does not sink
the other writes committed in the same batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
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

T = TypeVar("T")


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


class SqliteRunner:
    """SQLite: the store's SQL on two plain connections, each with a thread of its own (one for writes, one for
    reads), one thread hop per operation instead of several per statement through the async engine; writes from
    many executions are committed together (group commit)."""

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

    def _run(self, kind: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        conn = self._conns.get(kind)
        if conn is None:
            conn = self._conns[kind] = self.engine.connect()
        conn.exec_driver_sql("BEGIN IMMEDIATE" if kind == "write" else "BEGIN")
        try:
            out = fn(conn, *args)
            conn.exec_driver_sql("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                conn.exec_driver_sql("ROLLBACK")
            raise
        return out

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads["read"], self._run, "read", fn, args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, args, fut))
        if self._task is None:
            self._task = asyncio.create_task(self._writer())
        self._wake.set()
        ok, value = await fut
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:500], self._pending[500:]
                try:
                    async with self.write_lock:
                        results = await loop.run_in_executor(self._threads["write"], self._run, "write", _batch,
                                                             ([(fn, args) for fn, args, _ in batch],))
                except Exception as e:
                    for _fn, _args, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for (_fn, _args, fut), result in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        loop = asyncio.get_running_loop()
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

    async def close(self) -> None:
        pass
