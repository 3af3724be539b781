"""The metadata store: functions, their revisions and metered usage, on the parts below it.

One code path for SQLite (embedded default, via aiosqlite) and PostgreSQL (cluster, via asyncpg), using
SQLAlchemy 2 async Core. The connection, its write discipline and the migrations are `Database`
(store/engine.py); activation records and their log lines are `ActivationRecords` (store/activations.py);
the other tables have their own small stores on the same `Store` (versions.py, security.py, namespaces.py,
compat.py). PostgreSQL serialises deploys of one function by locking its `functions` row (`SELECT ... FOR UPDATE`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from sqlalchemy import Row, and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from polyfn.model import FunctionInfo, FunctionSpec, Revision, now
from polyfn.store.activations import ActivationRecords
from polyfn.store.engine import dialect_insert
from polyfn.store.tables import aliases, functions, revisions, usage, versions
from polyfn.tenancy import DEFAULT, SEP

USAGE_SUMS = ("invocations", "errors", "billed_ms", "mb_ms", "req_bytes", "resp_bytes", "storage_byte_s", "db_reads",
              "db_writes", "transitions")

log = logging.getLogger("polyfn.store")


class Store(ActivationRecords):
    """Async access to polyfn's metadata database: `await Store.open(url)`, or `Store.connect(url)` then `start()`.
    Its parts: the connection and migrations (`Database`, store/engine.py), activation records and their logs
    (`ActivationRecords`, store/activations.py), and here functions, revisions and metered usage."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        # called after a change the other nodes of a cluster follow (a revision made current, a function or a
        # trigger added or deleted): the node announces it so they sync at once (scheduler/sync.py)
        self.on_change: Callable[[], None] | None = None

    def changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception as e:  # a notice is an optimisation: the cluster's polling still finds it
                log.warning("change notice not sent: %s", e)

    # -- functions and revisions ---------------------------------------------------------------------

    async def create_revision(
        self, spec: FunctionSpec, code_sha256: str, code_dir: str, deps_dir: str | None
    ) -> tuple[Revision, bool]:
        """Record a deploy: create the function if new, add revision max+1 and make it current.

        Returns the revision and whether the function was created by this call. Revision numbers start
        at 1 for a function that does not exist (including one that was deleted and is deployed again).
        """
        ts = now()
        async with self._writer() as conn:
            upsert = (
                dialect_insert(conn)(functions)
                .values(name=spec.name, current_revision=0, created_at=ts, updated_at=ts)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            created = (await conn.execute(upsert)).rowcount == 1
            # Serialise concurrent deploys of this function (PostgreSQL; SQLite is already serial).
            await conn.execute(
                select(functions.c.name).where(functions.c.name == spec.name).with_for_update()
            )
            last = await conn.scalar(
                select(func.max(revisions.c.number)).where(revisions.c.function == spec.name)
            )
            rev = Revision(
                function=spec.name,
                number=(last or 0) + 1,
                spec=spec,
                code_sha256=code_sha256,
                code_dir=code_dir,
                deps_dir=deps_dir,
                created_at=ts,
            )
            await conn.execute(insert(revisions).values(_revision_row(rev)))
            await conn.execute(
                update(functions)
                .where(functions.c.name == spec.name)
                .values(current_revision=rev.number, updated_at=ts)
            )
        self.changed()
        return rev, created

    async def get_function(self, name: str) -> FunctionInfo | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_function_query().where(functions.c.name == name))).first()
        return _function_info(row) if row else None

    async def list_functions(self, namespace: str | None = None) -> list[FunctionInfo]:
        """Every function, or only `namespace`'s (held names: tenancy.py)."""
        query = _function_query()
        if namespace == DEFAULT:
            query = query.where(functions.c.name.not_like(f"%{SEP}%"))
        elif namespace is not None:
            query = query.where(functions.c.name.like(f"{namespace}{SEP}%"))
            if self._engine.dialect.name == "sqlite":  # a seek in the primary key, not a scan of every function
                # (SQLite compares bytes: `NS~` ≤ every held name of NS < `NS` + the byte after `~`; not on
                # PostgreSQL, whose collation may order `~` otherwise: there LIKE alone says)
                query = query.where(functions.c.name >= f"{namespace}{SEP}",
                                    functions.c.name < f"{namespace}{chr(ord(SEP) + 1)}")
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(functions.c.name))).all()
        return [_function_info(r) for r in rows]

    async def get_current_revision(self, name: str) -> Revision | None:
        query = select(revisions).join(
            functions,
            and_(
                functions.c.name == revisions.c.function, functions.c.current_revision == revisions.c.number
            ),
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query.where(functions.c.name == name))).first()
        return _revision(row) if row else None

    async def get_revision(self, name: str, number: int) -> Revision | None:
        query = select(revisions).where(revisions.c.function == name, revisions.c.number == number)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _revision(row) if row else None

    async def list_revisions(self, name: str) -> list[Revision]:
        """All revisions of `name`, oldest first (empty if the function does not exist)."""
        query = select(revisions).where(revisions.c.function == name).order_by(revisions.c.number)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_revision(r) for r in rows]

    async def delete_function(self, name: str) -> list[Revision] | None:
        """Delete the function, its revisions, versions and aliases; its activations and logs stay until pruned.

        Returns the deleted revisions (so the caller can remove their code dirs), or None if unknown.
        """
        async with self._writer() as conn:
            found = await conn.scalar(
                select(functions.c.name).where(functions.c.name == name).with_for_update()
            )
            if found is None:
                return None
            rows = (
                await conn.execute(
                    select(revisions).where(revisions.c.function == name).order_by(revisions.c.number)
                )
            ).all()
            await conn.execute(delete(revisions).where(revisions.c.function == name))
            await conn.execute(delete(versions).where(versions.c.function == name))
            await conn.execute(delete(aliases).where(aliases.c.function == name))
            await conn.execute(delete(functions).where(functions.c.name == name))
        self.changed()
        return [_revision(r) for r in rows]

    # -- metered usage (observe/usage.py) -------------------------------------------------------------

    async def add_usage(self, rows: Sequence[dict[str, Any]]) -> None:
        """Add a batch of per-(namespace, function, hour) sums to the stored ones, in one transaction."""
        if not rows:
            return
        async with self._writer() as conn:
            stmt = _USAGE_UPSERT.get(conn.dialect.name)
            if stmt is None:  # (built once per dialect: building it costs more than the upsert of a few rows)
                insert = dialect_insert(conn)(usage)
                old, new = usage.c, insert.excluded
                stmt = _USAGE_UPSERT[conn.dialect.name] = insert.on_conflict_do_update(
                    index_elements=["namespace", "function", "hour"], set_={c: old[c] + new[c] for c in USAGE_SUMS})
            await conn.execute(stmt, list(rows))

    async def list_usage(self, since: float | None = None, until: float | None = None,
                         namespace: str | None = None, function: str | None = None) -> list[dict[str, Any]]:
        """The stored hourly sums, oldest hour first, of the hours that start in `[since, until)`."""
        query = select(usage)
        if since is not None:
            query = query.where(usage.c.hour >= int(since // 3600 * 3600))
        if until is not None:
            query = query.where(usage.c.hour < until)
        if namespace is not None:
            query = query.where(usage.c.namespace == namespace)
        if function is not None:
            query = query.where(usage.c.function == function)
        query = query.order_by(usage.c.hour, usage.c.namespace, usage.c.function)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [dict(r._mapping) for r in rows]

    async def prune_usage(self, before: float) -> int:
        """Delete the hourly sums of hours that started before `before` (retention)."""
        async with self._writer() as conn:
            return (await conn.execute(delete(usage).where(usage.c.hour < before))).rowcount


_USAGE_UPSERT: dict[str, Any] = {}  # dialect name → `add_usage`'s statement


def _function_query() -> Any:
    return select(
        functions.c.name,
        functions.c.current_revision,
        functions.c.created_at,
        revisions.c.created_at.label("revision_created_at"),
        revisions.c.spec,
        revisions.c.code_sha256,
    ).join(
        revisions,
        and_(revisions.c.function == functions.c.name, revisions.c.number == functions.c.current_revision),
    )


def _function_info(row: Row[Any]) -> FunctionInfo:
    return FunctionInfo(
        name=row.name,
        revision=row.current_revision,
        created_at=row.created_at,
        updated_at=row.revision_created_at,
        spec=_decode_spec(row.spec),
        code_sha256=row.code_sha256,
    )


def _encode_spec(spec: FunctionSpec) -> str:
    # FunctionSpec omits defaults when encoded; store every field so a revision keeps meaning what it
    # meant at deploy time even if a later polyfn version changes a default.
    return msgspec.json.encode(msgspec.structs.asdict(spec)).decode()


def _decode_spec(data: str) -> FunctionSpec:
    return msgspec.json.decode(data, type=FunctionSpec)


def _revision_row(rev: Revision) -> dict[str, Any]:
    return {
        "function": rev.function,
        "number": rev.number,
        "spec": _encode_spec(rev.spec),
        "code_sha256": rev.code_sha256,
        "code_dir": rev.code_dir,
        "deps_dir": rev.deps_dir,
        "created_at": rev.created_at,
    }


def _revision(row: Row[Any]) -> Revision:
    return Revision(
        function=row.function,
        number=row.number,
        spec=_decode_spec(row.spec),
        code_sha256=row.code_sha256,
        code_dir=row.code_dir,
        deps_dir=row.deps_dir,
        created_at=row.created_at,
    )

