"""Who may do what to which table: API keys by scope, functions' own keys by grant.

A key that belongs to no function acts by its scope (`auth/keys.py`): `read` reads (Get, Query, Scan,
Describe, List …), `invoke` also writes items, `deploy` and `admin` also manage tables (Create, Delete,
Update, TTL, tags). A function's own key (the credentials its instances get) reaches only the tables granted
to its function (`polyfn db grant FN TABLE [--access read|write]`), and never manages tables.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from polyfn.db.storage import Storage, db_grants

READ, WRITE, MANAGE = "read", "write", "manage"
ACCESS = (READ, WRITE)
_SCOPE_ALLOWS = {"read": {READ}, "invoke": {READ, WRITE}, "deploy": {READ, WRITE, MANAGE},
                 "admin": {READ, WRITE, MANAGE}}


def allowed(key: Any, need: str, tables: list[str], grants: dict[str, str]) -> str | None:
    """None when `key` may do `need` on every one of `tables`, else the reason it may not. `grants`: the
    key's function's grants (table → access), used when the key belongs to a function."""
    if key.owner is None:
        if need in _SCOPE_ALLOWS.get(key.scope, set()):
            return None
        return f"key {key.id} has scope {key.scope!r}, which does not allow {need} operations"
    if need == MANAGE:
        return f"function {key.owner!r}'s key cannot create, change or delete tables"
    for t in tables:
        g = grants.get(t)
        if g is None or (need == WRITE and g != WRITE):
            return (f"function {key.owner!r} has no {need} access to table {t!r}: grant it with "
                    f"`polyfn db grant {key.owner} {t}{' --access read' if need == READ else ''}`")
    return None


class Grants:
    """Table grants of functions, cached (re-read every `ttl` seconds, for grants made on other nodes)."""

    def __init__(self, storage: Storage, ttl: float = 5.0):
        self.storage = storage
        self.ttl = ttl
        self._by_fn: dict[tuple[str, str], dict[str, str]] = {}
        self._loaded = -1e9

    async def load(self) -> None:
        got = await self.storage.read(lambda c: c.execute(select(db_grants)).all())
        by_fn: dict[tuple[str, str], dict[str, str]] = {}
        for r in got:
            by_fn.setdefault((r.ns, r.function), {})[r.tname] = r.access
        self._by_fn = by_fn
        self._loaded = time.monotonic()

    async def of(self, ns: str, function: str) -> dict[str, str]:
        if time.monotonic() - self._loaded > self.ttl:
            await self.load()
        return self._by_fn.get((ns, function), {})

    async def grant(self, ns: str, function: str, table: str, access: str) -> None:
        if access not in ACCESS:
            raise ValueError(f"access={access!r}: use read or write")

        def fn(c: Connection) -> None:
            c.execute(delete(db_grants).where(db_grants.c.ns == ns, db_grants.c.function == function,
                                              db_grants.c.tname == table))
            c.execute(db_grants.insert().values(ns=ns, function=function, tname=table, access=access))

        await self.storage.write(fn)
        await self.load()

    async def revoke(self, ns: str, function: str, table: str | None = None) -> int:
        def fn(c: Connection) -> int:
            q = delete(db_grants).where(db_grants.c.ns == ns, db_grants.c.function == function)
            if table is not None:
                q = q.where(db_grants.c.tname == table)
            return int(c.execute(q).rowcount)

        n = await self.storage.write(fn)
        await self.load()
        return n

    async def list(self, ns: str) -> list[dict[str, str]]:
        await self.load()
        return [{"function": f, "table": t, "access": a} for (n, f), ts in sorted(self._by_fn.items()) if n == ns
                for t, a in sorted(ts.items())]
