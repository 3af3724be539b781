"""The workflow store's SQLite runner: small writes committed on the event loop's own thread, the writes of
one turn of the loop in one transaction; a file whose write lock another connection holds sends the batch to
the write thread (which waits for it) instead of failing or blocking the loop; a refusal stays its caller's."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from polyfn.workflows.runners import Refusal, SqliteRunner


def _setup(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, thread TEXT)")
    conn.close()


def _put(conn: Connection, k: str) -> str:
    """Insert `k` with the name of the thread that ran the write."""
    name = threading.current_thread().name
    conn.execute(text("INSERT INTO t (k, thread) VALUES (:k, :thread)"), {"k": k, "thread": name})
    return name


def _refuse(conn: Connection, k: str) -> None:
    raise Refusal(f"no {k}")


def _rows(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT k, thread FROM t ORDER BY k").fetchall()
    finally:
        conn.close()


async def test_writes_of_one_turn_commit_together_on_the_loops_thread(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    _setup(path)
    runner = SqliteRunner(str(path))
    try:
        loop_thread = threading.current_thread().name
        results = await asyncio.gather(runner.write(_put, "a"), runner.write(_refuse, "b"), runner.write(_put, "c"),
                                       return_exceptions=True)
        assert results[0] == loop_thread and results[2] == loop_thread
        assert isinstance(results[1], Refusal)  # its caller's answer; the others are committed
        assert _rows(path) == [("a", loop_thread), ("c", loop_thread)]
        # a large write runs on the write thread
        assert (await runner.write_apart(_put, "d")).startswith("polyfn-wf-write")
    finally:
        await runner.close()


async def test_a_file_locked_by_another_writer_sends_the_batch_to_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    _setup(path)
    runner = SqliteRunner(str(path))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")  # another connection (outside the store's write lock) holds the file
        other.execute("INSERT INTO t (k, thread) VALUES ('x', 'other')")
        write = asyncio.ensure_future(runner.write(_put, "y"))
        await asyncio.sleep(0.3)
        assert not write.done()  # waiting on the write thread (SQLite's busy handler), the loop free meanwhile
        other.execute("COMMIT")
        assert (await asyncio.wait_for(write, 10)).startswith("polyfn-wf-write")
        # the file free again: back on the loop's thread
        assert await runner.write(_put, "z") == threading.current_thread().name
        assert [k for k, _ in _rows(path)] == ["x", "y", "z"]
    finally:
        other.close()
        await runner.close()


async def test_many_writes_at_once_all_commit(tmp_path: Path) -> None:
    """More writes than one inline batch holds: every one is committed and answered."""
    path = tmp_path / "wf.db"
    _setup(path)
    runner = SqliteRunner(str(path))
    n = 300
    try:
        await asyncio.gather(*(runner.write(_put, f"k{i:04d}") for i in range(n)))
        assert len(_rows(path)) == n
    finally:
        await runner.close()
