"""Storage access keys: S3 credentials (access key id + secret) kept in the metadata store.

User keys come from `polyfn storage keys create`; each function gets its own key, made on its first
instance start and handed to the instance as `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, so writes are
attributable to the function (loop protection uses that). The node's own key (name `node`) is what the
CLI uses through `GET /v1/storage/info`. Secrets are stored as-is: SigV4 verification needs them.

Lookups on the request path hit an in-memory copy; every change goes to the database first.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from polyfn.store.tables import storage_keys

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str
    name: str
    function: str
    created_at: float

    def public(self) -> dict[str, Any]:
        return {"access_key_id": self.access_key_id, "name": self.name, "function": self.function or None,
                "created_at": self.created_at}


def new_key(name: str, function: str = "") -> AccessKey:
    akid = "PFS" + "".join(secrets.choice(_ALPHABET) for _ in range(17))
    return AccessKey(akid, secrets.token_urlsafe(30), name, function, time.time())


class KeyStore:
    def __init__(self, store: Any) -> None:
        self.store = store
        self._keys: dict[str, AccessKey] = {}
        self._by_function: dict[str, AccessKey] = {}
        self._lock = asyncio.Lock()
        self._loaded_at = 0.0

    async def ensure(self, akid: str, now: float, max_age: float = 30.0) -> None:
        """Reload from the database when `akid` is unknown here (made by another node sharing the database) or the
        copy is older than `max_age` (keys revoked elsewhere); unknown ids reload at most once a second."""
        if (akid in self._keys and now - self._loaded_at < max_age) or now - self._loaded_at < 1.0:
            return
        self._loaded_at = now  # before the await: concurrent requests do not all reload
        await self.load()

    async def load(self) -> None:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(storage_keys))).all()
        self._keys = {r.access_key_id: AccessKey(r.access_key_id, r.secret_access_key, r.name, r.function,
                                                 r.created_at) for r in rows}
        self._by_function = {k.function: k for k in self._keys.values() if k.function}

    def lookup(self, akid: str) -> tuple[str, str] | None:
        k = self._keys.get(akid)
        return (k.secret_access_key, k.function) if k else None

    def list(self) -> list[AccessKey]:
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    def by_name(self, name: str) -> AccessKey | None:
        return next((k for k in self._keys.values() if k.name == name and not k.function), None)

    async def create(self, name: str, function: str = "") -> AccessKey:
        key = new_key(name, function)
        async with self.store._writer() as conn:
            await conn.execute(insert(storage_keys).values(
                access_key_id=key.access_key_id, secret_access_key=key.secret_access_key, name=name,
                function=function, created_at=key.created_at))
        self._keys[key.access_key_id] = key
        if function:
            self._by_function[function] = key
        return key

    async def delete(self, akid: str) -> bool:
        async with self.store._writer() as conn:
            n = (await conn.execute(delete(storage_keys).where(storage_keys.c.access_key_id == akid))).rowcount
        key = self._keys.pop(akid, None)
        if key and key.function:
            self._by_function.pop(key.function, None)
        return bool(n)

    async def for_function(self, function: str) -> AccessKey:
        """The function's own key, made on first use."""
        async with self._lock:
            key = self._by_function.get(function)
            if key is None:
                key = await self.create(f"function:{function}", function)
            return key

    async def node_key(self) -> AccessKey:
        async with self._lock:
            key = self.by_name("node")
            return key if key is not None else await self.create("node")
