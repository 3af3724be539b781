"""Store access for API keys and secrets (tables `api_keys`, `secrets`, migration 0005)."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import delete, select, update

from polyfn.store.db import Store
from polyfn.store.tables import api_keys, secrets


class KeyRecord(msgspec.Struct, kw_only=True):
    id: str
    secret_sha256: str
    scope: str
    function: str | None = None
    description: str = ""
    created_at: float = 0.0
    last_used_at: float | None = None
    revoked_at: float | None = None


class SecurityStore:
    def __init__(self, store: Store):
        self.store = store

    async def add_key(self, key: KeyRecord) -> None:
        async with self.store._writer() as conn:
            await conn.execute(api_keys.insert().values(**msgspec.to_builtins(key)))

    async def list_keys(self) -> list[KeyRecord]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(api_keys).order_by(api_keys.c.created_at))).mappings().all()
        return [KeyRecord(**dict(r)) for r in rows]

    async def revoke_key(self, key_id: str, now: float) -> bool:
        async with self.store._writer() as conn:
            res = await conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                                     .values(revoked_at=now))
        return bool(res.rowcount)

    async def touch_keys(self, last_used: dict[str, float]) -> None:
        if not last_used:
            return
        async with self.store._writer() as conn:
            for key_id, ts in last_used.items():
                await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=ts))

    async def put_secret(self, name: str, ciphertext: str, now: float) -> bool:
        """Create or replace; True when it was created."""
        async with self.store._writer() as conn:
            res = await conn.execute(update(secrets).where(secrets.c.name == name)
                                     .values(ciphertext=ciphertext, updated_at=now))
            if res.rowcount:
                return False
            await conn.execute(secrets.insert().values(name=name, ciphertext=ciphertext, created_at=now, updated_at=now))
            return True

    async def list_secrets(self) -> list[dict[str, Any]]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(secrets.c.name, secrets.c.created_at, secrets.c.updated_at)
                                       .order_by(secrets.c.name))).mappings().all()
        return [dict(r) for r in rows]

    async def get_secrets(self, names: list[str]) -> dict[str, str]:
        if not names:
            return {}
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(secrets.c.name, secrets.c.ciphertext)
                                       .where(secrets.c.name.in_(names)))).all()
        return {r[0]: r[1] for r in rows}

    async def delete_secret(self, name: str) -> bool:
        async with self.store._writer() as conn:
            res = await conn.execute(delete(secrets).where(secrets.c.name == name))
        return bool(res.rowcount)
