"""Where tables live: SQL tables (SQLAlchemy Core) on the node's engine kind, and how work runs on them.

Schema (created at start, `db_meta` records its version for later migrations):
* `db_tables` (ns, name) → the table's definition (`schema.TableDef` as JSON) and its id. A table's rows are
  keyed by the id, so a table deleted and created again starts empty even before old rows are swept.
* `db_items` (tid, h, pk, sk) → the item as JSON text, its size, its TTL expiry. `pk`/`sk` are the key
  values' ordered bytes (`values.key_bytes`), `h` a hash of `pk` (Scan order and segments).
* `db_index_rows` (tid, ix, h, ipk, isk, pk, sk) → the item as the index projects it.
* `db_changes` seq → one change record, written in the transaction that made the change; the change feed
  forwards them to the durable queue and deletes them.
* `db_grants` (ns, function, table) → `read` or `write`: the tables a function's own key may reach.
* `db_tokens` token → a TransactWriteItems ClientRequestToken, its request digest and time (10 minutes).
* `db_use` tid → the items a table holds and their bytes, kept by SQL triggers on `db_items` in the
  transaction of every write (schema 2; counted once from `db_items` when a database is upgraded), so a
  namespace's use (its `db_items`/`db_bytes` quotas, docs/tenancy.md) is one small query, never a scan.

Work is a plain function of a synchronous SQLAlchemy `Connection`, run inside one transaction:
* SQLite (embedded; `<data dir>/tables.db`, WAL): one writer connection, several callers' work in one
  transaction (a group commit, each piece inside a SAVEPOINT so one failure undoes only its own). A write of
  bounded size (`small`: one item, a batch or transaction of at most 100) runs on the event loop's thread:
  the writes that arrive in one turn of the loop commit together in its next turn, so a PutItem costs no
  thread hand-off, no wake-up of a writer thread and none of the loop (those cost more than the write). When
  the node says no other request is in flight (`Storage.alone`, the server's own count), no other write can
  join that commit: the write commits at once, inside its caller's step, without the loop's extra turn. Writes
  of unbounded size (a table's deletion or backfill, TTL sweeps) run on a thread of their own, which then
  holds the connection and takes the small writes that arrive meanwhile into its own batches. The writer
  connection never checkpoints the WAL at commit (it would fsync on the loop's thread): every `CHECKPOINT_EVERY`
  commits the writer thread takes the connection and checkpoints (PASSIVE) before the next write, so that write
  starts the WAL over (a checkpoint beside a writer that kept committing never let it). Reads run on a small pool of
  threads with their own connections. SQLite has one writer at a time anyway; going through aiosqlite would
  cost an event-loop round trip per statement, several per item.
* PostgreSQL (a cluster; the node's `POLYFN_DATABASE_URL`): SQLAlchemy async (asyncpg) runs the same function
  through `run_sync`, one transaction per call; writers first take transaction-scoped advisory locks on the
  keys they touch (sorted, so two transactions never wait on each other in a cycle), which serialises
  conditional writes and transactions on the same items across every node.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection

from polyfn.db.settled import Settled

log = logging.getLogger("polyfn.db")
T = TypeVar("T")
SCHEMA_VERSION = 2  # 2: db_use and its triggers
CHECKPOINT_EVERY = 256  # write transactions between two WAL checkpoints (SQLite's own default: 1,000 pages)
_LOCK_DDL = 0x706F6C7964620  # advisory lock held while creating the schema (PostgreSQL)
_LOCK_FEED = 0x706F6C79646621  # held by the one node forwarding the change feed at a time
FEED_ORDER_LOCK = 0x706F6C7964666F  # held from a transaction's first change record to its commit (rows.py)

metadata = MetaData()
db_meta = Table("db_meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text))
db_tables = Table(
    "db_tables", metadata,
    Column("ns", String(64), nullable=False), Column("name", String(255), nullable=False),
    Column("id", String(32), nullable=False, unique=True), Column("spec", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("ns", "name"),
)
db_items = Table(
    "db_items", metadata,
    Column("tid", String(32), nullable=False), Column("h", Integer, nullable=False),
    Column("pk", LargeBinary, nullable=False), Column("sk", LargeBinary, nullable=False),
    Column("item", Text, nullable=False), Column("size", Integer, nullable=False),
    Column("expires", Float, nullable=True),
    PrimaryKeyConstraint("tid", "h", "pk", "sk"),
)
Index("db_items_expiry", db_items.c.tid, db_items.c.expires, sqlite_where=db_items.c.expires.isnot(None),
      postgresql_where=db_items.c.expires.isnot(None))
db_index_rows = Table(
    "db_index_rows", metadata,
    Column("tid", String(32), nullable=False), Column("ix", String(255), nullable=False),
    Column("h", Integer, nullable=False), Column("ipk", LargeBinary, nullable=False),
    Column("isk", LargeBinary, nullable=False), Column("pk", LargeBinary, nullable=False),
    Column("sk", LargeBinary, nullable=False), Column("item", Text, nullable=False),
    Column("size", Integer, nullable=False),
    PrimaryKeyConstraint("tid", "ix", "h", "ipk", "isk", "pk", "sk"),
)
db_changes = Table(
    "db_changes", metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("ns", String(64), nullable=False), Column("tname", String(255), nullable=False),
    Column("tid", String(32), nullable=False), Column("record", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)
db_grants = Table(
    "db_grants", metadata,
    Column("ns", String(64), nullable=False), Column("function", String(128), nullable=False),
    Column("tname", String(255), nullable=False), Column("access", String(16), nullable=False),
    PrimaryKeyConstraint("ns", "function", "tname"),
)
db_use = Table(
    "db_use", metadata,
    Column("tid", String(32), primary_key=True), Column("items", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
)
db_tokens = Table(
    "db_tokens", metadata,
    Column("token", String(160), primary_key=True), Column("digest", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)


_PINNED: dict[int, tuple[Connection, Any]] = {}  # id of a writer's `Connection` → (it, its DB-API connection)


def driver_of(conn: Connection) -> Any:
    """The DB-API connection under a SQLite `Connection`: the one its storage pinned (the writer's, for as long as
    it is open), else SQLAlchemy's answer — `conn.connection.driver_connection`, four property lookups, ~1 µs, which
    the hot single-item statements (rows.Prepared) asked once or twice per write."""
    hit = _PINNED.get(id(conn))
    if hit is not None and hit[0] is conn:
        return hit[1]
    return conn.connection.driver_connection


def lock_key(*parts: bytes | str) -> int:
    """64 bits of a hash of the parts, each followed by a zero byte."""
    data = b"\x00".join([p.encode() if isinstance(p, str) else p for p in parts]) + b"\x00"
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


class Storage:
    """Runs read and write work on the tables; `open` picks the engine kind from the URL."""

    dialect = ""
    #: None, or asks whether the request writing now is the only one in flight on the node (the server's count of
    #: its requests' tasks: `DbService.in_flight`); then a small write commits at once instead of in the loop's
    #: next turn (SQLite; nothing else could join that group commit)
    alone: Callable[[], bool] | None = None

    @staticmethod
    async def open(url: str) -> Storage:
        st: Storage = PgStorage(url) if url.startswith("postgresql") else SqliteStorage(Path(url))
        await st.start()
        return st

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def read(self, fn: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    async def item_text(self, tid: str, h: int, pk: bytes, sk: bytes) -> str | None:
        """One item's stored JSON (GetItem's point read), None when there is none."""
        def q(c: Connection) -> str | None:
            row = c.execute(_ITEM_SELECT, {"tid": tid, "h": h, "pk": pk, "sk": sk}).first()
            return row[0] if row is not None else None

        return await self.read(q)

    async def write(self, fn: Callable[[Connection], T], locks: Iterable[int] = (), small: bool = False) -> T:
        """Run `fn` in a write transaction; `small`: its work is bounded (one item, a batch or transaction of at
        most 100 items), so it may run on the event loop's thread."""
        raise NotImplementedError

    async def exclusive(self, key: int, fn: Callable[[Connection], T]) -> T | None:
        """Run `fn` in a write transaction unless another holder of `key` is running (then None)."""
        raise NotImplementedError


_ITEM_SQL = "SELECT item FROM db_items WHERE tid = ? AND h = ? AND pk = ? AND sk = ?"
_ITEM_SELECT = select(db_items.c.item).where(db_items.c.tid == bindparam("tid"), db_items.c.h == bindparam("h"),
                                             db_items.c.pk == bindparam("pk"), db_items.c.sk == bindparam("sk"))


_USE_TRIGGERS = {  # dialect → statements that keep db_use (each table's items and bytes) on every item write
    "sqlite": [
        "CREATE TRIGGER IF NOT EXISTS db_use_insert AFTER INSERT ON db_items BEGIN "
        "INSERT OR IGNORE INTO db_use (tid, items, bytes) VALUES (NEW.tid, 0, 0); "
        "UPDATE db_use SET items = items + 1, bytes = bytes + NEW.size WHERE tid = NEW.tid; END",
        "CREATE TRIGGER IF NOT EXISTS db_use_delete AFTER DELETE ON db_items BEGIN "
        "UPDATE db_use SET items = items - 1, bytes = bytes - OLD.size WHERE tid = OLD.tid; END",
        "CREATE TRIGGER IF NOT EXISTS db_use_update AFTER UPDATE OF size ON db_items WHEN NEW.size != OLD.size "
        "BEGIN UPDATE db_use SET bytes = bytes + NEW.size - OLD.size WHERE tid = NEW.tid; END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION db_use_keep() RETURNS trigger AS $$ BEGIN "
        "IF TG_OP = 'INSERT' THEN "
        "INSERT INTO db_use (tid, items, bytes) VALUES (NEW.tid, 1, NEW.size) "
        "ON CONFLICT (tid) DO UPDATE SET items = db_use.items + 1, bytes = db_use.bytes + NEW.size; "
        "ELSIF TG_OP = 'DELETE' THEN "
        "UPDATE db_use SET items = items - 1, bytes = bytes - OLD.size WHERE tid = OLD.tid; "
        "ELSIF NEW.size <> OLD.size THEN "
        "UPDATE db_use SET bytes = bytes + NEW.size - OLD.size WHERE tid = NEW.tid; "
        "END IF; RETURN NULL; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER db_use_keep AFTER INSERT OR DELETE OR UPDATE OF size ON db_items "
        "FOR EACH ROW EXECUTE FUNCTION db_use_keep()",
    ],
}


def _create_schema(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)
    found = conn.execute(db_meta.select().where(db_meta.c.key == "schema")).first()
    if found is None:
        conn.execute(db_meta.insert().values(key="schema", value=str(SCHEMA_VERSION)))
    if found is None or int(found.value) < 2:  # (an older database: count what its tables hold, once)
        conn.execute(db_use.delete())
        conn.execute(db_use.insert().from_select(
            ["tid", "items", "bytes"],
            select(db_items.c.tid, func.count(), func.coalesce(func.sum(db_items.c.size), 0)).group_by(db_items.c.tid)))
        conn.execute(db_meta.update().where(db_meta.c.key == "schema").values(value=str(SCHEMA_VERSION)))
    if conn.dialect.name == "postgresql" and conn.exec_driver_sql(
            "SELECT 1 FROM pg_trigger WHERE tgname = 'db_use_keep'").first() is not None:
        return  # (made by an earlier start: no DDL on every start)
    for stmt in _USE_TRIGGERS.get(conn.dialect.name, []):
        conn.exec_driver_sql(stmt)


def namespace_use(conn: Connection, ns: str) -> tuple[int, int]:
    """(items, bytes) the tables of namespace `ns` hold (db_use: one row per table)."""
    row = conn.execute(_NS_USE, {"ns": ns}).first()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


class SqliteStorage(Storage):
    dialect = "sqlite"

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(f"sqlite:///{path}", pool_size=8, max_overflow=8)

        @event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we BEGIN ourselves (IMMEDIATE for the writer)
            for pragma in ("journal_mode=WAL", "busy_timeout=10000", "synchronous=NORMAL", "cache_size=-32768"):
                dbapi_conn.execute(f"PRAGMA {pragma}")

        @event.listens_for(self.engine, "begin")
        def _begin(conn: Connection) -> None:
            raw = conn.connection.driver_connection
            if not raw.in_transaction:  # (the writer's batches BEGIN on the driver themselves: `_run_batch`)
                raw.execute("BEGIN IMMEDIATE" if conn.get_execution_options().get("writer") else "BEGIN")

        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="polyfn-db-write")
        self._readers = concurrent.futures.ThreadPoolExecutor(3, thread_name_prefix="polyfn-db-read")
        self._local = threading.local()
        self._wconn: Connection | None = None
        self._raw: sqlite3.Connection | None = None  # the writer's driver connection (BEGIN and COMMIT go to it)
        self._pending: list[tuple[Callable[[Connection], Any], Settled]] = []  # the thread's
        self._mutex = threading.Lock()
        self._draining = False  # the writer connection is in use (by the thread or the loop); under _mutex
        self._inline: list[tuple[Callable[[Connection], Any], Settled]] = []  # small, this turn
        self._commits = 0  # since the last checkpoint
        self._checkpoint_due = False  # the writer thread checkpoints before it lets the connection go
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: list[Connection] = []
        self._point: sqlite3.Connection | None = None  # point reads, on the event loop's thread (`item_text`)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

        def setup() -> None:
            self._wconn = self.engine.connect().execution_options(writer=True)
            # commits never checkpoint (an fsync on whichever thread commits): `_checkpoint` does
            self._wconn.connection.driver_connection.execute("PRAGMA wal_autocheckpoint=0")
            with self._wconn.begin():
                _create_schema(self._wconn)
            self._raw = self._wconn.connection.driver_connection
            _PINNED[id(self._wconn)] = (self._wconn, self._raw)  # (the pair `_run_batch` uses together anyway)

        await self._loop.run_in_executor(self._writer, setup)
        # a primary-key lookup takes SQLite a few µs; the hop to a reader thread and back cost ten times that.
        # A reader of a WAL database never waits for the writer, so it runs right here, on the loop's thread.
        self._point = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._point.execute("PRAGMA query_only=ON")
        self._point.execute("PRAGMA busy_timeout=1000")

    async def item_text(self, tid: str, h: int, pk: bytes, sk: bytes) -> str | None:
        point = self._point
        if point is None:
            return await super().item_text(tid, h, pk, sk)
        row = point.execute(_ITEM_SQL, (tid, h, pk, sk)).fetchone()
        return row[0] if row is not None else None

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._point is not None:
            self._point.close()
            self._point = None

        def close_writer() -> None:
            if self._wconn is not None:
                _PINNED.pop(id(self._wconn), None)
                self._wconn.close()

        await loop.run_in_executor(self._writer, close_writer)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        for c in self._conns:
            with contextlib.suppress(Exception):
                c.close()
        self.engine.dispose()

    def _reader_conn(self) -> Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = self.engine.connect()
            self._conns.append(c)
        return c

    async def read(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            c = self._reader_conn()
            with c.begin():
                return fn(c)

        assert self._loop is not None
        return await self._loop.run_in_executor(self._readers, run)

    def write(self, fn: Callable[[Connection], T], locks: Iterable[int] = (),  # type: ignore[override]
              small: bool = False) -> Awaitable[T]:
        """(Not a coroutine: the write is queued at the call, and the caller awaits its `Settled` outcome.)"""
        loop = self._loop
        assert loop is not None
        fut = Settled(loop)
        if small:
            self._inline.append((fn, fut))
            if len(self._inline) == 1:  # the first of this turn: commit them all in the loop's next turn,
                alone = self.alone
                if alone is not None and alone():  # or now, when no other request could add a write to it
                    self._drain_inline()
                else:
                    loop.call_soon(self._drain_inline)
            return fut
        with self._mutex:
            self._pending.append((fn, fut))
            start = not self._draining
            self._draining = True
        if start:
            self._writer.submit(self._drain)
        return fut

    async def exclusive(self, key: int, fn: Callable[[Connection], T]) -> T | None:
        return await self.write(fn)  # one process, one writer: always exclusive

    def _drain_inline(self) -> None:
        """On the loop's thread: this turn's small writes in one transaction, unless the writer thread holds
        the connection (then they join its next batch). Called from `write` itself when the write is alone: its
        `Settled` is then settled before the caller awaits it (the `await` returns at once, in the same step:
        under a trickle of requests — one per wake-up of the node — the turn this saves, its `epoll_wait` and
        the loop's handles, were a few percent of a PutItem)."""
        batch, self._inline = self._inline, []
        with self._mutex:
            if self._draining:
                self._pending.extend(batch)
                return
            self._draining = True
        try:
            done = self._run_batch(batch)
        finally:
            with self._mutex:
                more = bool(self._pending) or self._checkpoint_due
                self._draining = more
        if more:
            self._writer.submit(self._drain)
        _settle_all(done)

    def _drain(self) -> None:
        assert self._loop is not None
        while True:
            if self._checkpoint_due:
                self._checkpoint()
            with self._mutex:
                batch, self._pending = self._pending, []
                if not batch:
                    self._draining = False
                    return
            done = self._run_batch(batch)
            self._loop.call_soon_threadsafe(_settle_all, done)  # one wake-up of the loop per batch

    def _run_batch(self, batch: list[tuple[Callable[[Connection], Any], Settled]]
                   ) -> list[tuple[Settled, Any, BaseException | None]]:
        """Every write of `batch` in one transaction, each in a savepoint of its own; committed on return.
        BEGIN, COMMIT and the savepoints are said to the driver directly: SQLAlchemy's `begin()` and `commit()`
        (its transaction object, the begin event, an execution context for the BEGIN) cost more than a PutItem's
        own statement, and a batch is often one write (the `begin` listener sees the driver's transaction
        open and adds no BEGIN when a write's work goes through SQLAlchemy)."""
        conn, raw = self._wconn, self._raw
        assert conn is not None and raw is not None
        done: list[tuple[Settled, Any, BaseException | None]] = []
        try:
            raw.execute("BEGIN IMMEDIATE")
        except Exception as e:
            return [(fut, None, e) for _, fut in batch]
        try:
            if len(batch) == 1:  # alone: no savepoint, a failure undoes the transaction
                fn, fut = batch[0]
                try:
                    done.append((fut, fn(conn), None))
                except Exception as e:
                    _rollback(raw)
                    return [(fut, None, e)]
            else:
                # each write in a savepoint of its own: a refused one leaves the batch's others alone
                for fn, fut in batch:
                    raw.execute("SAVEPOINT w")
                    try:
                        done.append((fut, fn(conn), None))
                    except Exception as e:
                        raw.execute("ROLLBACK TO w")
                        done.append((fut, None, e))
                    raw.execute("RELEASE w")
            raw.execute("COMMIT")
        except Exception as e:  # the commit failed: nothing of the batch happened
            _rollback(raw)
            return [(fut, None, e) for _, fut in batch]
        except BaseException:
            _rollback(raw)
            raise
        self._committed()
        return done

    def _committed(self) -> None:
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            self._checkpoint_due = True

    def _checkpoint(self) -> None:
        """On the writer thread, holding the writer connection (the loop's small writes queue for the thread
        meanwhile): copy the WAL's committed pages into the database file (PASSIVE: waiting for no reader). No
        commit lands between this checkpoint and the next write transaction, so that transaction finds the whole
        WAL copied and starts it over from its beginning; a checkpoint beside a writer that kept committing
        (a thread of its own, as before) never caught up, and the WAL grew without end (160 MB after a few
        benchmark runs), each commit extending the file."""
        self._checkpoint_due = False
        assert self._raw is not None
        try:
            self._raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            log.warning("WAL checkpoint of %s failed", self.path, exc_info=True)


def _rollback(raw: sqlite3.Connection) -> None:
    if raw.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            raw.execute("ROLLBACK")


def _settle(fut: Settled, result: Any, err: BaseException | None) -> None:
    if fut.done():
        return
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(result)


def _settle_all(done: list[tuple[Settled, Any, BaseException | None]]) -> None:
    for fut, result, err in done:
        _settle(fut, result, err)


class PgStorage(Storage):
    dialect = "postgresql"

    def __init__(self, url: str):
        from sqlalchemy.ext.asyncio import create_async_engine

        if url.startswith("postgresql://"):
            url = "postgresql+asyncpg://" + url[len("postgresql://"):]
        self.engine = create_async_engine(url, pool_size=16, max_overflow=16, pool_pre_ping=True)

    async def start(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_DDL})
            await conn.run_sync(_create_schema)

    async def close(self) -> None:
        await self.engine.dispose()

    async def read(self, fn: Callable[[Connection], T]) -> T:
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                return await conn.run_sync(fn)

    async def write(self, fn: Callable[[Connection], T], locks: Iterable[int] = (), small: bool = False) -> T:
        async with self.engine.begin() as conn:
            for k in sorted(set(locks)):
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": k})
            return await conn.run_sync(_in_transaction, fn)

    async def exclusive(self, key: int, fn: Callable[[Connection], T]) -> T | None:
        async with self.engine.begin() as conn:
            if not await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}):
                return None
            return await conn.run_sync(_in_transaction, fn)


def _in_transaction(conn: Connection, fn: Callable[[Connection], T]) -> T:
    """`fn` in a new transaction: what the previous one on this pooled connection noted is forgotten."""
    conn.info.pop("feed_locked", None)
    return fn(conn)


FEED_LOCK = _LOCK_FEED


_NS_USE = select(func.coalesce(func.sum(db_use.c["items"]), 0), func.coalesce(func.sum(db_use.c.bytes), 0)).select_from(
    db_use.join(db_tables, db_tables.c.id == db_use.c.tid)).where(db_tables.c.ns == bindparam("ns"))
