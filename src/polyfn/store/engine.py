"""Opening the metadata database: the engine (SQLite's connection pragmas, WAL mode and incremental vacuum), the
write discipline, the migrations, and whether this node may migrate a shared database (store/schema.py).

`Database` is the plumbing every store part stands on: the engine, the write lock and `_writer()` (a connection in
a write transaction), start (WAL, migrations) and close. `Store` (store/db.py) is one. The schema is owned by
Alembic; `start` upgrades to head every time, so a new polyfn version migrates an old data dir on first start.

Concurrency model:
* SQLite allows one writer at a time. Every write transaction is started with `BEGIN IMMEDIATE` (so two
  writers never both read, then fail to upgrade to a write lock) and, inside one process, writes queue on an
  `asyncio.Lock` instead of spinning on `busy_timeout`. WAL mode keeps readers from blocking on the writer.
* PostgreSQL serialises concurrent node start-ups by an advisory lock around the migration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

import aiosqlite
from sqlalchemy import delete, event, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from polyfn.store import schema, space
from polyfn.store.tables import schema_compat

log = logging.getLogger("polyfn.store")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000  # how long another process's write may hold us up before "database is locked"
WRITE = "polyfn_write"  # execution option marking a connection whose transaction will write
_MIGRATION_LOCK_KEY = 0x706F6C79666E  # "polyfn": pg advisory lock id held while migrating


class Database:
    """A connection to polyfn's metadata database: `await X.open(url)`, or `X.connect(url)` then `start()`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine, for components that share the database (e.g. a PostgreSQL leader lock)."""
        return self._engine

    @classmethod
    def connect(cls, url: str) -> Self:
        """A store on `url` (e.g. `sqlite+aiosqlite:////abs/polyfn.db`, `postgresql+asyncpg://...`), not yet
        opened: no connection is made until `start` (the node builds its parts before it starts any)."""
        return cls(_create_engine(url))

    @classmethod
    async def open(cls, url: str) -> Self:
        """Connect to `url` and migrate."""
        store = cls.connect(url)
        await store.start()
        return store

    async def start(self) -> None:
        """WAL mode (SQLite) and the migrations; closes the engine when they fail."""
        try:
            if self._is_sqlite:
                await _enable_wal(self._engine.url.database or "")
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._engine.dispose()

    @contextlib.asynccontextmanager
    async def _writer(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside a write transaction, committed on exit (rolled back on error)."""
        lock = self._write_lock if self._is_sqlite else contextlib.nullcontext()
        async with lock, self._engine.connect() as conn:
            await conn.execution_options(**{WRITE: True})
            async with conn.begin():
                yield conn

    async def _migrate(self) -> None:
        """Upgrade to head, unless the rolling-upgrade rule (store/schema.py) says this node must not: then
        `SchemaMismatch`, one line. A database newer than this node's code that still allows it: no upgrade."""
        async with self._writer() as conn:
            if conn.dialect.name == "postgresql":
                # Several nodes may start at once; only one may create the schema, the rest then see head.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            if await conn.run_sync(_at_head):  # (alembic, ~5 % of a start's CPU, only when there is work)
                return
            decided = await conn.run_sync(_schema_plan)
            if decided.action == "refuse":
                raise schema.SchemaMismatch(decided.message)
            if decided.action == "join":
                log.info("%s", decided.message)
                return
            from alembic.config import Config

            cfg = Config()
            # Config values go through configparser interpolation: a literal '%' in the path must be doubled.
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
            await conn.run_sync(_upgrade_head, cfg)
            await conn.execute(delete(schema_compat))
            await conn.execute(insert(schema_compat).values(id=1, floor=decided.floor))


def _create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pre_ping: cluster connections may sit idle across a database failover or restart.
        return create_async_engine(url, pool_pre_ping=True,
                                   connect_args={"server_settings": {"application_name": application_name()}})
    if parsed.database in (None, "", ":memory:") or "mode=memory" in (parsed.database or ""):
        raise ValueError(
            f"store URL {url!r} is an in-memory SQLite database; use a file, e.g. sqlite+aiosqlite:////abs/polyfn.db"
        )
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (it would not BEGIN before DDL and
        # cannot do BEGIN IMMEDIATE); `_on_begin` emits BEGIN itself. WAL is set once, by `_enable_wal`.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        for pragma in (f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}", "synchronous=NORMAL"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")

    return engine


async def _enable_wal(path: str) -> None:
    """Switch the database file to WAL mode (persistent: later connections inherit it).

    Done once, before the pool opens connections, and retried: switching journal modes needs an exclusive
    lock, and SQLite reports SQLITE_BUSY at once (without waiting on busy_timeout) while other processes
    are opening the same new file.
    """
    for attempt in range(200):
        try:
            async with aiosqlite.connect(path) as db:
                await db.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                async with db.execute("PRAGMA journal_mode=WAL") as cur:
                    row = await cur.fetchone()
            if row is None or str(row[0]).lower() != "wal":
                raise RuntimeError(f"SQLite database {path} refused WAL mode (got {row!r})")
            await asyncio.to_thread(_make_incremental, path)
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 199:
                raise
            await asyncio.sleep(0.05)


def _make_incremental(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        space.ensure_incremental(conn, path)
    finally:
        conn.close()


def _upgrade_head(connection: Connection, cfg: Any) -> None:
    from alembic import command

    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def head_revisions() -> set[str]:
    """The heads of the migration graph, read from the version files' `revision` and `down_revision`."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for f in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = f.read_text()
        rev = re.search(r"^revision(?::[^=]*)?=\s*[\"']([^\"']+)", source, re.M)
        down = re.search(r"^down_revision(?::[^=]*)?=([^#\n]*)", source, re.M)
        if rev:
            revisions.add(rev[1])
        if down:
            parents.update(re.findall(r"[\"']([^\"']+)[\"']", down[1]))
    return revisions - parents


def _schema_plan(connection: Connection) -> schema.Plan:
    """store/schema.py's decision for this database: its revision and floor, and (PostgreSQL) the code schemas
    of the other nodes connected to it, from their connections' `application_name`."""
    from sqlalchemy import inspect

    have = inspect(connection).has_table
    db = {r[0] for r in connection.execute(text("SELECT version_num FROM alembic_version"))} \
        if have("alembic_version") else set()
    floor = connection.execute(text("SELECT floor FROM schema_compat")).scalar() if have("schema_compat") else None
    live: set[str] = set()
    if connection.dialect.name == "postgresql":
        names = connection.execute(text(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")).scalars()
        live = schema.schemas_in(names)
    return schema.plan(schema.read_graph(MIGRATIONS_DIR / "versions"), db, floor, live)


def application_name() -> str:
    """What this node's PostgreSQL connections are named: its code's schema, for other nodes' starts."""
    return schema.APP_PREFIX + ",".join(sorted(head_revisions()))


def _at_head(connection: Connection) -> bool:
    """The database is at every head already (nothing to migrate)."""
    from sqlalchemy import inspect

    if not inspect(connection).has_table("alembic_version"):
        return False
    current = {r[0] for r in connection.execute(text("SELECT version_num FROM alembic_version"))}
    return bool(current) and current == head_revisions()



def dialect_insert(conn: AsyncConnection) -> Any:
    """The dialect's INSERT construct, which has `on_conflict_do_nothing` on both backends."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
