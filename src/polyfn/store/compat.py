"""Store access for the vendor faces' own objects: table `compat_entities` (migration 0011).

Each is one JSON document keyed by (kind, name): OpenWhisk's packages, triggers and rules
(api/compat/openwhisk_events.py), the code OpenFaaS image references stand for (api/compat/openfaas.py). Each
face owns its documents' shape; this module only keeps them.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from polyfn.store.db import Store
from polyfn.store.tables import compat_entities as t


class CompatStore:
    """services.CompatEntities on the metadata store."""

    def __init__(self, store: Store):
        self.store = store

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(t.c.doc).where(t.c.kind == kind, t.c.name == name))).first()
        return json.loads(row[0]) if row is not None else None

    async def list(self, kind: str) -> list[dict[str, Any]]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(t.c.doc).where(t.c.kind == kind).order_by(t.c.name))).all()
        return [json.loads(r[0]) for r in rows]

    async def put(self, kind: str, name: str, doc: dict[str, Any], now: float, create: bool) -> bool:
        """Insert (`create`) or replace the document; False when it exists (create) or does not (replace)."""
        text = json.dumps(doc, separators=(",", ":"))
        if create:
            try:
                async with self.store._writer() as conn:
                    await conn.execute(t.insert().values(kind=kind, name=name, doc=text, updated_at=now))
            except IntegrityError:
                return False
            return True
        async with self.store._writer() as conn:
            res = await conn.execute(update(t).where(t.c.kind == kind, t.c.name == name).values(doc=text, updated_at=now))
        return bool(res.rowcount)

    async def delete(self, kind: str, name: str) -> bool:
        async with self.store._writer() as conn:
            res = await conn.execute(delete(t).where(t.c.kind == kind, t.c.name == name))
        return bool(res.rowcount)
