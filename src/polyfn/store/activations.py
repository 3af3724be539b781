"""Activation records and their log lines (table `activations`): batched writes (on SQLite through a plain
`sqlite3` connection with a thread of its own), the reads of the API, the console and the CLI, and retention (by
count and age, and on SQLite by size: store/space.py).

`ActivationRecords` is the store's part for them: `Store` (store/db.py) is one, on the same engine and write lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import heapq
import itertools
import operator
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import msgspec
from sqlalchemy import Row, and_, case, delete, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from polyfn.model import Activation, LogLine
from polyfn.store import space
from polyfn.store.engine import SQLITE_BUSY_TIMEOUT_MS, Database, dialect_insert
from polyfn.store.tables import activations
from polyfn.tenancy import DEFAULT, SEP

T = TypeVar("T")

PRUNE_CHUNK = 10_000  # activations deleted per transaction when pruning
GREP_SCAN_MAX = 200_000  # log lines a grep looks through at most (newest first)
LOGS_INLINE_MAX = 1 << 20  # characters of log lines a batch of activation records may have to be encoded inline
#: the activation writer's commit checkpoints the WAL past this many pages (32 MB), under the store's write lock
#: (no other commit of the node lands meanwhile, so the next write starts the WAL over: tests/store/test_wal.py)
WAL_AUTOCHECKPOINT_PAGES = 8192


class ActivationRecords(Database):
    """The activation records of the database (a part of `Store`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._batch_writer: _SqliteBatchWriter | None = None  # SQLite: activation records' own connection

    async def close(self) -> None:
        if self._batch_writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._batch_writer.close)
            self._batch_writer = None
        await super().close()

    async def add_activations(self, acts: Sequence[Activation]) -> None:
        """Insert (or replace, by id) a batch of activations, their log lines inside them, in one transaction.

        An activation id recurs when an async invocation is retried (the id is its idempotency key): the
        newest attempt's record replaces the older one, and the log lines of every attempt are kept (in a
        batch they are concatenated here; across batches the upsert appends)."""
        if not acts:
            return
        merged: dict[str, tuple[Activation, list[LogLine]]] = {}
        for a in acts:
            prev = merged.get(a.id)
            merged[a.id] = (a, prev[1] + a.logs if prev is not None and prev[1] else a.logs)
        # Encoding a batch's log lines as JSON costs about a millisecond per MB: a batch with a lot of them is
        # encoded on a thread, not on the event loop (small ones inline: handing them over costs more).
        big = _log_chars(acts, LOGS_INLINE_MAX) > LOGS_INLINE_MAX
        if self._is_sqlite:
            # The hot path of observability: plain values straight to sqlite3, without SQLAlchemy's per-row
            # parameter processing, as multi-row INSERTs (see `_sqlite_multirow`).
            def statements() -> list[tuple[str, tuple[Any, ...]]]:
                return _sqlite_statements(merged.values())

            stmts = await asyncio.to_thread(statements) if big else statements()
            async with self._write_lock:
                await self._sqlite_writer().write(stmts)
            return

        def rows() -> list[dict[str, Any]]:
            return [_activation_row(a, logs) for a, logs in merged.values()]

        act_rows = await asyncio.to_thread(rows) if big else rows()
        async with self._writer() as conn:
            stmt = dialect_insert(conn)(activations)
            old, new = activations.c, stmt.excluded
            set_: dict[str, Any] = {c.name: new[c.name] for c in activations.c if c.name not in ("id", "logs", "logs_end")}
            set_["logs"] = case(
                (new.logs == "", old.logs), (old.logs == "", new.logs),
                else_=func.substr(old.logs, 1, func.length(old.logs) - 1) + "," + func.substr(new.logs, 2))
            set_["logs_end"] = func.greatest(old.logs_end, new.logs_end)
            await conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=set_), act_rows)

    async def get_activation(self, id: str) -> Activation | None:
        """One activation with its log lines, in the order they were recorded."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(activations).where(activations.c.id == id))).first()
        if row is None:
            return None
        return _activation(row, _decode_logs(row.logs))

    async def list_activations(
        self,
        function: str | None = None,
        status: str | None = None,
        cold: bool | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        namespace: str | None = None,
    ) -> list[Activation]:
        """Newest first, filtered on `since <= start < until` (and on the function's namespace, tenancy.py).
        `logs` is left empty (use get_activation)."""
        if limit <= 0:
            return []
        query = select(*_COLUMNS_WITHOUT_LOGS)  # lists leave `logs` empty: don't read the lines' text
        if function is not None:
            query = query.where(activations.c.function == function)
        elif namespace is not None:
            query = query.where(activations.c.function.not_like(f"%{SEP}%") if namespace == DEFAULT
                                else activations.c.function.like(f"{namespace}{SEP}%"))
        if status is not None:
            query = query.where(activations.c.status == status)
        if cold is not None:
            query = query.where(activations.c.cold == cold)
        if since is not None:
            query = query.where(activations.c.start >= since)
        if until is not None:
            query = query.where(activations.c.start < until)
        query = query.order_by(activations.c.start.desc(), activations.c.id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_activation(r, []) for r in rows]

    async def get_logs(
        self, function: str, since: float | None = None, activation: str | None = None, limit: int = 200,
        grep: re.Pattern[str] | None = None, scan_max: int = GREP_SCAN_MAX,
    ) -> list[dict[str, Any]]:
        """The newest `limit` log lines of `function` with `ts >= since`, returned oldest first.

        Each line is `{"activation", "ts", "stream", "line"}`. Lines with equal timestamps keep the order
        they were recorded in. With `grep`, only lines the pattern matches (`search`), looking at no more
        than the newest `scan_max` lines (the same regex semantics on SQLite and PostgreSQL).

        Lines live in their activation's row; activations are read newest `logs_end` (their newest line)
        first, so once `limit` lines newer than the next activation's `logs_end` are in hand, no older
        activation can hold a newer line and the scan stops.
        """
        if limit <= 0:
            return []
        query = select(activations.c.id, activations.c.logs_end, activations.c.logs).where(
            activations.c.function == function, activations.c.logs != "")
        if since is not None:
            query = query.where(activations.c.logs_end >= since)
        if activation is not None:
            query = query.where(activations.c.id == activation)
        query = query.order_by(activations.c.logs_end.desc(), activations.c.id.desc())
        newest: list[tuple[float, str, int, str, str]] = []  # a min-heap of the newest `limit` matches
        scanned = 0
        async with self._engine.connect() as conn, contextlib.aclosing(_paged(conn, query)) as rows:
            async for r in rows:
                if len(newest) >= limit and r.logs_end < newest[0][0]:
                    break
                for i, (ts, stream, line) in enumerate(_decode_logs(r.logs)):
                    if since is not None and ts < since:
                        continue
                    if grep is not None:
                        scanned += 1
                        if not grep.search(line):
                            continue
                    entry = (ts, r.id, i, stream, line)
                    if len(newest) < limit:
                        heapq.heappush(newest, entry)
                    elif entry > newest[0]:
                        heapq.heapreplace(newest, entry)
                if grep is not None and scanned >= scan_max:
                    break
        return [{"activation": aid, "ts": ts, "stream": stream, "line": line}
                for ts, aid, _, stream, line in sorted(newest)]

    async def prune(self, max_count: int, max_age_s: float, now: float, chunk: int = PRUNE_CHUNK) -> int:
        """Delete activations (their log lines are in them) that started before `now - max_age_s` or that are not
        among the newest `max_count`. Returns the number of activations deleted.

        In transactions of at most `chunk` rows, oldest first: at thousands of invocations a second a minute's
        excess is hundreds of thousands of rows (~0.3 s per 100k on SQLite), and one transaction for all of
        them held the write lock that long, stalling activation writes and every reader that flushes first."""
        async with self._engine.connect() as conn:
            # The newest activation beyond the first `max_count` (same order as list_activations).
            edge = (
                await conn.execute(
                    select(activations.c.start, activations.c.id)
                    .order_by(activations.c.start.desc(), activations.c.id.desc())
                    .offset(max(max_count, 0))
                    .limit(1)
                )
            ).first()
        doomed = activations.c.start < now - max_age_s
        if edge is not None:
            doomed = or_(
                doomed,
                activations.c.start < edge.start,
                and_(activations.c.start == edge.start, activations.c.id <= edge.id),
            )
        # The oldest first (the start index finds them without a scan); SQLite by rowid, saving a lookup per row.
        key = literal_column("rowid") if self._is_sqlite else activations.c.id
        some = select(key).where(doomed).order_by(activations.c.start).limit(chunk).scalar_subquery()
        deleted = 0
        while True:
            async with self._writer() as conn:
                n = (await conn.execute(delete(activations).where(key.in_(some)))).rowcount
            deleted += n
            if n < chunk:
                return deleted
            await asyncio.sleep(0)  # let the writes queued behind this one go first

    # -- disk space (the activation store's total, store/space.py) -------------------------------------

    def _sqlite_writer(self) -> _SqliteBatchWriter:
        if self._batch_writer is None:
            self._batch_writer = _SqliteBatchWriter(str(self._engine.url.database))
        return self._batch_writer

    async def used_bytes(self) -> int | None:
        """Bytes the database holds on disk (SQLite: its pages minus the free ones); None on PostgreSQL, whose
        size the store does not bound (docs/operations.md, "Disk space")."""
        if not self._is_sqlite:
            return None
        return await self._sqlite_writer().call(space.used_bytes)

    async def prune_to_size(self, max_bytes: int, first: int = 50, steps: int = 100) -> int:
        """While the database holds more than `max_bytes`, delete the oldest activations (their logs with them)
        down to 90 % of it (so the next check has room); returns how many. Rows differ in size by orders of
        magnitude (a log line or 256 KB of them), so the first step deletes `first` rows and the next ones as
        many as the bytes each row freed so far say are needed (at most PRUNE_CHUNK per transaction). SQLite
        only (`used_bytes`)."""
        used = await self.used_bytes()
        if used is None or used <= max_bytes:
            return 0
        target = int(max_bytes * 0.9)
        deleted = 0
        key = literal_column("rowid")
        n = first
        for _ in range(steps):
            oldest = select(key).select_from(activations).order_by(activations.c.start).limit(n).scalar_subquery()
            async with self._writer() as conn:
                got = (await conn.execute(delete(activations).where(key.in_(oldest)))).rowcount
            deleted += got
            now_used = await self.used_bytes()
            if got < n or now_used is None or now_used <= target:
                break
            per_row = max(1.0, (used - now_used) / got)
            n = max(1, min(PRUNE_CHUNK, int((now_used - target) / per_row) + 1))
            used = now_used
            await asyncio.sleep(0)  # let the writes queued behind this one go first
        return deleted

    async def reclaim(self) -> int:
        """SQLite: give the pages deletes freed back to the file system, a step (one short write transaction)
        at a time; returns how many pages. 0 on PostgreSQL (its vacuum reclaims)."""
        if await self.used_bytes() is None:
            return 0
        writer = self._sqlite_writer()
        pages = 0
        await writer.call(lambda conn: space.cache_kib(conn, space.RECLAIM_CACHE_KIB))
        try:
            while True:
                async with self._write_lock:
                    n = await writer.call(space.reclaim_step)
                if not n:
                    break
                pages += n
                await asyncio.sleep(0)
        finally:
            await writer.call(lambda conn: space.cache_kib(conn, space.WRITER_CACHE_KIB))
        if pages:
            await writer.call(space.checkpoint)
        return pages

def _activation_row(a: Activation, logs: list[LogLine]) -> dict[str, Any]:
    return {
        "id": a.id,
        "function": a.function,
        "revision": a.revision,
        "trigger": a.trigger,
        "start": a.start,
        "end": a.end,
        "duration_ms": a.duration_ms,
        "wait_ms": a.wait_ms,
        "init_ms": a.init_ms,
        "run_ms": a.run_ms,
        "cold": a.cold,
        "status": a.status,
        "status_code": a.status_code,
        "result": _text(a.result),
        "error": None if a.error is None else msgspec.json.encode(a.error).decode(),
        "instance": a.instance,
        "trace_id": a.trace_id,
        "parent_id": a.parent_id,
        "init_info": a.init_info,
        "logs": _encode_logs(logs) if logs else "",
        "logs_end": logs[-1].ts if logs else 0.0,
        "stream": None if a.stream is None else msgspec.json.encode(a.stream).decode(),
        "max_memory_mb": a.max_memory_mb,
        "memory_mb": a.memory_mb,
        "req_bytes": a.req_bytes,
        "resp_bytes": a.resp_bytes,
    }


_ACTIVATION_COLUMNS = ("id", "function", "revision", "trigger", "start", "end", "duration_ms", "wait_ms", "init_ms",
                       "run_ms", "cold", "status", "status_code", "result", "error", "instance", "trace_id",
                       "parent_id", "init_info", "logs", "logs_end", "stream", "max_memory_mb", "memory_mb",
                       "req_bytes", "resp_bytes")
_SQLITE_INSERT_ACTIVATION_HEAD = "INSERT INTO activations (" + ", ".join(f'"{c}"' for c in _ACTIVATION_COLUMNS) + ") VALUES "
# An upsert: a retried async invocation's newest attempt replaces the older, and its log lines are appended to
# the older attempts' (two JSON arrays joined as text: '[a,b]' + '[c]' -> '[a,b,c]').
_SQLITE_UPSERT_ACTIVATION = (
    " ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f'"{c}" = excluded."{c}"' for c in _ACTIVATION_COLUMNS if c not in ("id", "logs", "logs_end"))
    + ", logs = CASE WHEN excluded.logs = '' THEN activations.logs WHEN activations.logs = '' THEN excluded.logs"
    " ELSE substr(activations.logs, 1, length(activations.logs) - 1) || ',' || substr(excluded.logs, 2) END"
    ", logs_end = max(activations.logs_end, excluded.logs_end)"
)
_SQLITE_MAX_PARAMS = 4096  # per statement (SQLite allows 32766): large enough to amortize, small to compile


class _SqliteBatchWriter:
    """Activation records and log lines go to SQLite on a plain `sqlite3` connection with a thread of its own.

    Through SQLAlchemy's async engine (aiosqlite: a queue and a thread hop per statement, greenlet
    switches, pool checkout and reset) the same batches cost the event loop ~4.6 µs per invocation more
    (A/B in one run, wrk -c32: server main thread 51.5 → 46.9 µs per request, 18.0k → 19.8k req/s). The
    statements are the same; the store's write lock still orders them with its other writes."""

    def __init__(self, path: str):
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="polyfn-activations")

    async def write(self, stmts: list[tuple[str, tuple[Any, ...]]]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._write, stmts)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` on the writer's thread (space accounting and reclaiming, store/space.py)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: fn(self._connection()))

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, cached_statements=64)
            conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous=NORMAL")
            # The indexes of a growing activations/log_lines table outgrow the default 2 MB page cache (each
            # miss a pread), and checkpointing every 1,000 WAL pages rewrote the same hot index pages again
            # and again. Measured (A/B, a function printing a line per call, wrk -c32): +7 % req/s.
            space.cache_kib(conn, space.WRITER_CACHE_KIB)
            conn.execute(f"PRAGMA wal_autocheckpoint={int(WAL_AUTOCHECKPOINT_PAGES)}")
            # ... and the WAL file is cut back to 64 MB when it restarts (SQLite otherwise keeps it at its
            # largest for ever: a burst of writes would leave it big)
            conn.execute("PRAGMA journal_size_limit=67108864")
            self._conn = conn
        return conn

    def _write(self, stmts: list[tuple[str, tuple[Any, ...]]]) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in stmts:
                conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Blocking: waits for a write in progress, then closes the connection on its own thread."""
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._thread.submit(_close).result()
        self._thread.shutdown(wait=True)


async def _paged(conn: AsyncConnection, query: Any, chunk: int = 500) -> AsyncIterator[Row[Any]]:
    """The rows of `query`, fetched `chunk` at a time (a reader may stop after the first few)."""
    offset = 0
    while True:
        rows = (await conn.execute(query.offset(offset).limit(chunk))).all()
        for r in rows:
            yield r
        if len(rows) < chunk:
            return
        offset += chunk


@functools.lru_cache(maxsize=64)
def _sqlite_insert_sql(head: str, tail: str, width: int, nrows: int) -> str:
    row = "(" + ",".join("?" * width) + ")"
    return head + ",".join([row] * nrows) + tail


def _sqlite_statements(entries: Iterable[tuple[Activation, list[LogLine]]]) -> list[tuple[str, tuple[Any, ...]]]:
    """A batch of records as SQLite statements: (sql, parameters) pairs.

    Most records of a busy node are alike: one function's calls on one instance, answered alike, no error, no
    log lines, no stream. Such records (at least `_SHARED_MIN` of them with the same `_SHARED_COLUMNS`) go in
    statements that bind those shared values once and only `_ROW_COLUMNS` per row
    (`INSERT … SELECT …, ?1, … FROM (VALUES (…), …)`): binding is the activation writer's largest cost per row,
    and its thread holds the GIL (the event loop's) while it binds. Measured on the real schema, batches of
    3,000 hello records: 6.0 → 3.2 µs of the writer thread a row (median of 8 alternations). The others go as
    multi-row INSERTs of every column (`_sqlite_multirow`). The rows stored are the same either way."""
    groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    full: list[tuple[Any, ...]] = []
    last: Any = None  # the shared values of the record before, and its group's rows (a busy node's batch is mostly
    rows: Any = None  # one group: an equality test instead of hashing eleven values into `groups`)
    for a, logs in entries:
        if a.error is None and a.stream is None and not logs and "\x00" not in a.result:
            row, key = _row_and_shared(a)
            if key != last:
                rows = groups.get(key)
                if rows is None:
                    rows = groups[key] = []
                last = key
            rows.append(row)
        else:
            full.append(_activation_tuple(a, logs))
    stmts = []
    for shared, rows in groups.items():
        if len(rows) < _SHARED_MIN:
            extra = shared + _COMMON_VALUES
            full.extend(_in_column_order(row + extra) for row in rows)
        else:
            stmts += _sqlite_multirow(_SQLITE_INSERT_SHARED, _SQLITE_UPSERT_SHARED, rows, len(_ROW_COLUMNS), shared)
    if full:
        stmts += _sqlite_multirow(_SQLITE_INSERT_ACTIVATION_HEAD, _SQLITE_UPSERT_ACTIVATION, full,
                                  len(_ACTIVATION_COLUMNS))
    return stmts


def _sqlite_multirow(head: str, tail: str, rows: list[tuple[Any, ...]], width: int, shared: tuple[Any, ...] = (),
                     ) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """`rows` as a few multi-row `INSERT … VALUES (…), (…), …` statements: (sql, flat parameters) pairs.

    Why not executemany: sqlite3 releases the GIL around every row's step, and while the event loop thread
    runs, each re-acquisition is a futex hand-off between the two threads; under load that contention cost
    the event loop more than the inserts themselves. One statement per chunk releases it once per chunk, and
    SQLite's own per-row work is lower too (measured: 2.3 vs 3.3 µs per activation row). Chunk sizes are
    the largest power of two that fits `_SQLITE_MAX_PARAMS`, then the powers of two of the remainder, so a
    handful of statement texts are compiled once and then served from sqlite3's statement cache."""
    chunk = 1 << (((_SQLITE_MAX_PARAMS - len(shared)) // width).bit_length() - 1)
    pos = 0
    n = len(rows)
    while pos < n:
        size = chunk
        while size > n - pos:
            size >>= 1
        part = rows[pos : pos + size]
        pos += size
        yield _sqlite_insert_sql(head, tail, width, size), shared + tuple(itertools.chain.from_iterable(part))


def _log_chars(acts: Sequence[Activation], stop: int) -> int:
    """Characters of the activations' log lines, counted until past `stop`."""
    n = 0
    for a in acts:
        for ln in a.logs:
            n += len(ln.line)
        if n > stop:
            break
    return n


def _text(s: str) -> str:
    """Text a function produced, storable: NUL is replaced by U+FFFD. PostgreSQL refuses NUL in text (the
    whole batch of records would fail, again on every retry) and SQLite cuts the value at it."""
    return s.replace("\x00", "\ufffd") if "\x00" in s else s


def _activation_tuple(a: Activation, logs: list[LogLine]) -> tuple[Any, ...]:
    """`_activation_row` as a tuple in `_ACTIVATION_COLUMNS` order (SQLite fast path). The common record (no
    error, logs or stream; no NUL in its result) is the struct's own field tuple with the three columns that
    differ put in (a third of the time of naming each field)."""
    if a.error is None and a.stream is None and not logs and "\x00" not in a.result:
        return _common_tuple(astuple(a))
    return (a.id, a.function, a.revision, a.trigger, a.start, a.end, a.duration_ms, a.wait_ms, a.init_ms,
            a.run_ms, int(a.cold), a.status, a.status_code, _text(a.result),
            None if a.error is None else msgspec.json.encode(a.error).decode(), a.instance, a.trace_id,
            a.parent_id, a.init_info, _encode_logs(logs) if logs else "", logs[-1].ts if logs else 0.0,
            None if a.stream is None else msgspec.json.encode(a.stream).decode(), a.max_memory_mb, a.memory_mb,
            a.req_bytes, a.resp_bytes)


def _common_tuple(t: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row of a common record (no error, logs or stream) from its struct's field tuple."""
    return t[:14] + _NO_ERROR + t[16:20] + _NO_LOGS_NO_STREAM + t[21:]


astuple = msgspec.structs.astuple
_NO_ERROR = (None,)
_NO_LOGS_NO_STREAM = ("", 0.0, None)  # logs, logs_end, stream
#: a common record's columns bound per row (`_sqlite_statements`), those bound once for a group of records that
#: share them, and the constants of a common record (no error, logs or stream)
_ROW_COLUMNS = ("id", "start", "end", "duration_ms", "wait_ms", "run_ms", "result", "trace_id", "max_memory_mb",
                "req_bytes", "resp_bytes")
_SHARED_COLUMNS = ("function", "revision", "trigger", "init_ms", "cold", "status", "status_code", "instance",
                   "parent_id", "init_info", "memory_mb")
_COMMON_CONSTANTS = {"error": "NULL", "logs": "''", "logs_end": "0.0", "stream": "NULL"}
_COMMON_VALUES = (None, "", 0.0, None)  # (the same, as values)
_SHARED_MIN = 8  # records alike before they are worth a statement of their own


def _fields_getter(*groups: tuple[str, ...]) -> Any:
    """A function of an `Activation` giving a tuple of its fields for each of `groups` (field names), made as
    Python source: attribute loads in bytecode are ~3x faster than `astuple` and an `itemgetter` of its fields,
    once per record of every batch, on the event loop."""
    body = ", ".join("(" + "".join(f"a.{name}, " for name in group) + ")" for group in groups)
    ns: dict[str, Any] = {}
    exec(f"def fields(a):\n    return {body}\n", ns)
    return ns["fields"]


_row_and_shared = _fields_getter(_ROW_COLUMNS, _SHARED_COLUMNS)  # a common record's (row, shared values)
_PARTS = (*_ROW_COLUMNS, *_SHARED_COLUMNS, *_COMMON_CONSTANTS)
assert sorted(_PARTS) == sorted(_ACTIVATION_COLUMNS)
_in_column_order = operator.itemgetter(*(_PARTS.index(c) for c in _ACTIVATION_COLUMNS))  # row + shared + constants
_SQLITE_INSERT_SHARED = (
    "INSERT INTO activations (" + ", ".join(f'"{c}"' for c in _ACTIVATION_COLUMNS) + ") SELECT "
    + ", ".join(f"column{_ROW_COLUMNS.index(c) + 1}" if c in _ROW_COLUMNS
                else f"?{_SHARED_COLUMNS.index(c) + 1}" if c in _SHARED_COLUMNS else _COMMON_CONSTANTS[c]
                for c in _ACTIVATION_COLUMNS)
    + " FROM (VALUES ")  # (the shared values are ?1…?11, bound first; each row's `?` are numbered after them)
_SQLITE_UPSERT_SHARED = ") WHERE true" + _SQLITE_UPSERT_ACTIVATION  # (SQLite: an upsert's SELECT needs a WHERE)
# (`_activation_tuple`'s slices of the struct's fields hold the columns in this order)
assert (*Activation.__struct_fields__[:14], "error", *Activation.__struct_fields__[16:20], "logs", "logs_end",
        "stream", *Activation.__struct_fields__[21:]) == _ACTIVATION_COLUMNS
_LOGS_DECODER = msgspec.json.Decoder(list[LogLine])
_LOGS_ENCODE = msgspec.json.Encoder().encode
_COLUMNS_WITHOUT_LOGS = [c for c in activations.c if c.name != "logs"]


def _encode_logs(logs: list[LogLine]) -> str:
    """An activation's lines as the JSON text stored in its row: `[[ts, stream, line], ...]`, one C call.
    NUL (escaped as \\u0000 by JSON) becomes U+FFFD, as in every text a function produces (`_text`)."""
    text = _LOGS_ENCODE(logs).decode()  # (the check on str: `in` on bytes costs 0.2 µs, on str 0.02)
    if "\\u0000" in text:
        text = _LOGS_ENCODE([LogLine(ln.ts, ln.stream, _text(ln.line)) for ln in logs]).decode()
    return text


def _decode_logs(text: str | None) -> list[LogLine]:
    return _LOGS_DECODER.decode(text) if text else []


def _activation(row: Row[Any], logs: list[LogLine]) -> Activation:
    m = row._mapping
    return Activation(
        id=m["id"],
        function=m["function"],
        revision=m["revision"],
        trigger=m["trigger"],
        start=m["start"],
        end=m["end"],
        duration_ms=m["duration_ms"],
        wait_ms=m["wait_ms"],
        init_ms=m["init_ms"],
        run_ms=m["run_ms"],
        cold=bool(m["cold"]),
        status=m["status"],
        status_code=m["status_code"],
        result=m["result"],
        error=None if m["error"] is None else msgspec.json.decode(m["error"]),
        logs=logs,
        instance=m["instance"],
        trace_id=m["trace_id"],
        parent_id=m["parent_id"],
        init_info=m["init_info"],
        stream=None if m["stream"] is None else msgspec.json.decode(m["stream"]),
        max_memory_mb=m["max_memory_mb"],
        memory_mb=m["memory_mb"],
        req_bytes=m["req_bytes"],
        resp_bytes=m["resp_bytes"],
    )
