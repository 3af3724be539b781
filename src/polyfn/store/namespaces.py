"""Store access for namespaces: table `namespaces` (migration 0015). `default` always exists; its row, if any,
holds only its quotas."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from polyfn.store.db import Store
from polyfn.store.tables import namespaces as t
from polyfn.tenancy import DEFAULT, Quotas


class Namespace(msgspec.Struct, kw_only=True):
    name: str
    quotas: Quotas = msgspec.field(default_factory=Quotas)
    description: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0


def _row(r: Any) -> Namespace:
    return Namespace(name=r["name"], quotas=msgspec.convert(json.loads(r["quotas"]), Quotas),
                     description=r["description"], created_at=r["created_at"], updated_at=r["updated_at"])


class NamespaceStore:
    """services.Namespaces' persistence, on the metadata store."""

    def __init__(self, store: Store):
        self.store = store

    async def get(self, name: str) -> Namespace | None:
        async with self.store.engine.connect() as conn:
            r = (await conn.execute(select(t).where(t.c.name == name))).mappings().first()
        if r is None:
            return Namespace(name=DEFAULT) if name == DEFAULT else None
        return _row(r)

    async def list(self) -> list[Namespace]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(t).order_by(t.c.name))).mappings().all()
        found = [_row(r) for r in rows]
        if not any(n.name == DEFAULT for n in found):
            found.insert(0, Namespace(name=DEFAULT))
        return found

    async def signature(self) -> tuple[int, float]:
        """(rows, newest change): what a cache compares before reading every row again."""
        from sqlalchemy import func

        async with self.store.engine.connect() as conn:
            n, newest = (await conn.execute(select(func.count(), func.max(t.c.updated_at)))).one()
        return int(n), float(newest or 0.0)

    async def create(self, ns: Namespace) -> bool:
        """False when it exists."""
        try:
            async with self.store._writer() as conn:
                await conn.execute(t.insert().values(
                    name=ns.name, quotas=msgspec.json.encode(ns.quotas).decode(), description=ns.description,
                    created_at=ns.created_at, updated_at=ns.updated_at))
        except IntegrityError:
            return False
        return True

    async def set_quotas(self, name: str, quotas: Quotas, now: float) -> bool:
        """False when the namespace does not exist (`default` gets its row now)."""
        text = msgspec.json.encode(quotas).decode()
        async with self.store._writer() as conn:
            res = await conn.execute(update(t).where(t.c.name == name).values(quotas=text, updated_at=now))
            if res.rowcount:
                return True
            if name != DEFAULT:
                return False
            await conn.execute(t.insert().values(name=name, quotas=text, description="", created_at=now,
                                                 updated_at=now))
            return True

    async def delete(self, name: str) -> bool:
        async with self.store._writer() as conn:
            res = await conn.execute(delete(t).where(t.c.name == name))
        return bool(res.rowcount)
