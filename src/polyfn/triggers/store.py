"""Persistence of trigger definitions in the metadata store (`triggers` table, migration 0002)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from sqlalchemy import delete, insert, select, update

from polyfn.store.tables import triggers


class Trigger(msgspec.Struct, kw_only=True):
    id: str
    function: str
    kind: str
    config: dict[str, Any] = {}
    state: dict[str, Any] = {}
    created_at: float = 0.0


def _trigger(row: Any) -> Trigger:
    return Trigger(id=row.id, function=row.function, kind=row.kind, config=json.loads(row.config),
                   state=json.loads(row.state), created_at=row.created_at)


class TriggerStore:
    def __init__(self, store: Any):
        self.store = store

    async def add(self, t: Trigger) -> None:
        async with self.store._writer() as conn:
            await conn.execute(insert(triggers).values(
                id=t.id, function=t.function, kind=t.kind, config=json.dumps(t.config), state=json.dumps(t.state),
                created_at=t.created_at))
        self.store.changed()

    async def list(self, function: str | None = None) -> list[Trigger]:
        q = select(triggers).order_by(triggers.c.created_at)
        if function is not None:
            q = q.where(triggers.c.function == function)
        async with self.store.engine.connect() as conn:
            return [_trigger(r) for r in (await conn.execute(q)).all()]

    async def get(self, trigger_id: str) -> Trigger | None:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(triggers).where(triggers.c.id == trigger_id))).first()
        return _trigger(row) if row else None

    async def delete(self, trigger_id: str) -> bool:
        async with self.store._writer() as conn:
            deleted = (await conn.execute(delete(triggers).where(triggers.c.id == trigger_id))).rowcount == 1
        if deleted:
            self.store.changed()
        return deleted

    async def save_state(self, trigger_id: str, state: dict[str, Any]) -> None:
        async with self.store._writer() as conn:
            await conn.execute(update(triggers).where(triggers.c.id == trigger_id).values(state=json.dumps(state)))
