"""Store access for API keys and secrets (tables `api_keys`, `secrets`, migrations 0005 and 0007)."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import delete, or_, select, update

from polyfn.store.db import Store
from polyfn.store.engine import dialect_insert
from polyfn.store.tables import api_keys, secrets


class KeyRecord(msgspec.Struct, kw_only=True):
    id: str
    secret_sha256: str
    scope: str
    function: str | None = None  # the one function the key may act on (None: every function)
    owner: str | None = None  # the function whose instances hold the key (None: a person's key)
    secret_enc: str | None = None  # the secret under the node key; None: a pre-0007 key (bearer only)
    description: str = ""
    created_at: float = 0.0
    last_used_at: float | None = None
    revoked_at: float | None = None
    namespace: str = "default"  # 0015: the namespace the key acts in (tenancy.key_namespace)


class SecurityStore:
    def __init__(self, store: Store):
        self.store = store

    async def add_key(self, key: KeyRecord) -> None:
        async with self.store._writer() as conn:
            await conn.execute(api_keys.insert().values(**msgspec.to_builtins(key)))

    async def add_key_if_absent(self, key: KeyRecord) -> bool:
        """`add_key`, unless a key with the same secret is stored already (another node of the cluster, started
        at the same moment with the same admin.key, stored it first): False then."""
        async with self.store._writer() as conn:
            res = await conn.execute(dialect_insert(conn)(api_keys).values(**msgspec.to_builtins(key))
                                     .on_conflict_do_nothing())
        return bool(res.rowcount)

    async def list_keys(self) -> list[KeyRecord]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(api_keys).order_by(api_keys.c.created_at))).mappings().all()
        return [KeyRecord(**dict(r)) for r in rows]

    async def changed_keys(self, since: float) -> list[KeyRecord]:
        """The keys made or revoked at or after `since` (epoch seconds), oldest first."""
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(api_keys).where(or_(api_keys.c.created_at >= since,
                                                                  api_keys.c.revoked_at >= since))
                                       .order_by(api_keys.c.created_at))).mappings().all()
        return [KeyRecord(**dict(r)) for r in rows]

    async def revoke_key(self, key_id: str, now: float) -> bool:
        async with self.store._writer() as conn:
            res = await conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                                     .values(revoked_at=now))
        return bool(res.rowcount)

    async def set_secret_enc(self, key_id: str, secret_enc: str) -> None:
        async with self.store._writer() as conn:
            await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(secret_enc=secret_enc))

    async def revoke_owned(self, owner: str, now: float) -> int:
        """Revoke every live key held by the instances of function `owner` (the function was deleted)."""
        async with self.store._writer() as conn:
            res = await conn.execute(update(api_keys).where(api_keys.c.owner == owner, api_keys.c.revoked_at.is_(None))
                                     .values(revoked_at=now))
        return int(res.rowcount or 0)

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
