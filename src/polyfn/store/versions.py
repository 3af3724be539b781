"""Store access for published versions and aliases (tables `versions`, `aliases`, migration 0008).

A **version** freezes one revision under a number: 1, 2, … per function, never reused (the function row's
`last_version` remembers the highest one handed out, so deleting version 3 does not make 3 free again).
Publishing when nothing changed since the newest version (same code digest and the same spec) returns that
version instead of making a new one. An **alias** names a version, or `$LATEST` (whatever revision is
current), and may send a share of invocations to one more version (`weights`).
"""

from __future__ import annotations

import json

import msgspec
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from polyfn.model import now
from polyfn.store.db import Store
from polyfn.store.tables import aliases, functions, revisions, versions

LATEST = "$LATEST"


class Version(msgspec.Struct, kw_only=True):
    function: str
    number: int
    revision: int
    description: str = ""
    created_at: float = 0.0


class Alias(msgspec.Struct, kw_only=True):
    function: str
    name: str
    version: str  # a version number as text, or "$LATEST"
    weights: dict[str, float] = {}  # another version → the share of invocations it gets (0..1)
    description: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0


class InUse(Exception):
    """The version is what an alias points at: delete or move the alias first."""


class VersionStore:
    def __init__(self, store: Store):
        self.store = store

    async def publish(self, function: str, description: str = "") -> tuple[Version, bool] | None:
        """Freeze the current revision as the next version; (version, created). None: no such function."""
        async with self.store._writer() as conn:
            row = (await conn.execute(
                select(functions.c.current_revision, functions.c.last_version)
                .where(functions.c.name == function).with_for_update())).first()
            if row is None:
                return None
            newest = (await conn.execute(
                select(versions).where(versions.c.function == function)
                .order_by(versions.c.number.desc()).limit(1))).first()
            if newest is not None and await _same(conn, function, newest.revision, row.current_revision):
                return _version(newest), False
            v = Version(function=function, number=row.last_version + 1, revision=row.current_revision,
                        description=description, created_at=now())
            await conn.execute(versions.insert().values(**msgspec.to_builtins(v)))
            await conn.execute(update(functions).where(functions.c.name == function).values(last_version=v.number))
        return v, True

    async def list_versions(self, function: str) -> list[Version]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(
                select(versions).where(versions.c.function == function).order_by(versions.c.number))).all()
        return [_version(r) for r in rows]

    async def get_version(self, function: str, number: int) -> Version | None:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(
                select(versions).where(versions.c.function == function, versions.c.number == number))).first()
        return _version(row) if row else None

    async def delete_version(self, function: str, number: int) -> Version | None:
        """Delete one version (None if it does not exist); InUse while an alias points at it."""
        async with self.store._writer() as conn:
            row = (await conn.execute(
                select(versions).where(versions.c.function == function, versions.c.number == number))).first()
            if row is None:
                return None
            for a in (await conn.execute(select(aliases).where(aliases.c.function == function))).all():
                if a.version == str(number) or str(number) in json.loads(a.weights):
                    raise InUse(f"alias {a.name!r} points at version {number}")
            await conn.execute(delete(versions).where(versions.c.function == function, versions.c.number == number))
        return _version(row)

    # -- aliases ---------------------------------------------------------------------------------------

    async def create_alias(self, alias: Alias) -> bool:
        """False if the function already has an alias of that name."""
        async with self.store._writer() as conn:
            exists = await conn.scalar(select(func.count()).select_from(aliases).where(
                aliases.c.function == alias.function, aliases.c.name == alias.name))
            if exists:
                return False
            alias.created_at = alias.updated_at = now()
            await conn.execute(aliases.insert().values(**_alias_row(alias)))
        return True

    async def update_alias(self, alias: Alias) -> bool:
        async with self.store._writer() as conn:
            alias.updated_at = now()
            row = _alias_row(alias)
            del row["created_at"]
            n = (await conn.execute(update(aliases).where(
                aliases.c.function == alias.function, aliases.c.name == alias.name).values(**row))).rowcount
        return n == 1

    async def get_alias(self, function: str, name: str) -> Alias | None:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(
                select(aliases).where(aliases.c.function == function, aliases.c.name == name))).first()
        return _alias(row) if row else None

    async def list_aliases(self, function: str) -> list[Alias]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(
                select(aliases).where(aliases.c.function == function).order_by(aliases.c.name))).all()
        return [_alias(r) for r in rows]

    async def delete_alias(self, function: str, name: str) -> bool:
        async with self.store._writer() as conn:
            n = (await conn.execute(
                delete(aliases).where(aliases.c.function == function, aliases.c.name == name))).rowcount
        return n == 1


async def _same(conn: AsyncConnection, function: str, a: int, b: int) -> bool:
    """Revisions `a` and `b` have the same code and spec (publishing again would change nothing)."""
    if a == b:
        return True
    rows = (await conn.execute(
        select(revisions.c.spec, revisions.c.code_sha256)
        .where(revisions.c.function == function, revisions.c.number.in_((a, b))))).all()
    return len(rows) == 2 and tuple(rows[0]) == tuple(rows[1])


def _version(row: object) -> Version:
    m = row._mapping  # type: ignore[attr-defined]
    return Version(function=m["function"], number=m["number"], revision=m["revision"],
                   description=m["description"], created_at=m["created_at"])


def _alias_row(a: Alias) -> dict[str, object]:
    d = msgspec.to_builtins(a)
    d["weights"] = json.dumps(a.weights, sort_keys=True)
    return d


def _alias(row: object) -> Alias:
    m = dict(row._mapping)  # type: ignore[attr-defined]
    m["weights"] = json.loads(m["weights"] or "{}")
    return Alias(**m)
