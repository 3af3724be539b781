"""Scoped API keys: `read` < `invoke` < `deploy` < `admin`, optionally bound to one function.

A key is an access key id (public, `PFAK…`) and a secret (shown once, at creation). Only the SHA-256 of
the secret is stored: secrets are 240 random bits, so a fast hash is as good as a slow one and costs
nothing per request. Callers send `Authorization: Bearer ID:SECRET` (or just the secret). The admin key of
`<data dir>/admin.key` is registered as an `admin` key with id `PFAKADMIN…` at start.

The key ring is cached in memory (lookups are a dict access); last-used times are written back in
batches, and the ring is reloaded every few seconds so a revocation on another node takes effect.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import string
import time
from collections.abc import Callable

from polyfn.store.security import KeyRecord, SecurityStore

SCOPES = ("read", "invoke", "deploy", "admin")
_RANK = {s: i for i, s in enumerate(SCOPES)}
_ID_ALPHABET = string.ascii_uppercase + string.digits


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_id(prefix: str = "PFAK") -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def allows(key: KeyRecord, scope: str, function: str | None) -> bool:
    """May `key` do something that needs `scope` on `function` (None: not about one function)?"""
    if _RANK[key.scope] < _RANK[scope]:
        return False
    return key.function is None or key.function == function


class KeyRing:
    def __init__(self, store: SecurityStore, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock
        self._by_digest: dict[str, KeyRecord] = {}
        self._used: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> None:
        self._by_digest = {k.secret_sha256: k for k in await self.store.list_keys()}

    async def start(self, admin_key: str, interval: float = 5.0) -> None:
        await self.load()
        d = digest(admin_key)
        if d not in self._by_digest:
            rec = KeyRecord(id=new_id("PFAKADMIN")[:20], secret_sha256=d, scope="admin",
                            description="the node's admin key (admin.key)", created_at=self.clock())
            await self.store.add_key(rec)
            self._by_digest[d] = rec
        self._task = asyncio.create_task(self._loop(interval))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.flush()

    async def _loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
                await self.load()
            except Exception:  # a database hiccup must not stop the loop
                pass

    async def flush(self) -> None:
        used, self._used = self._used, {}
        await self.store.touch_keys(used)

    def verify(self, token: str) -> KeyRecord | None:
        """The live key for `token` (`ID:SECRET` or `SECRET`), or None."""
        key_id, sep, secret = token.strip().partition(":")
        if not sep:
            key_id, secret = "", key_id
        if not secret:
            return None
        rec = self._by_digest.get(digest(secret))
        if rec is None or rec.revoked_at is not None:
            return None
        if key_id and not hmac.compare_digest(key_id, rec.id):
            return None
        self._used[rec.id] = self.clock()
        return rec

    async def create(self, scope: str, function: str | None = None, description: str = "") -> tuple[KeyRecord, str]:
        if scope not in _RANK:
            raise ValueError(f"scope={scope!r} is not one of {', '.join(SCOPES)}")
        secret = secrets.token_urlsafe(30)
        rec = KeyRecord(id=new_id(), secret_sha256=digest(secret), scope=scope, function=function,
                        description=description, created_at=self.clock())
        await self.store.add_key(rec)
        self._by_digest[rec.secret_sha256] = rec
        return rec, secret

    async def revoke(self, key_id: str) -> bool:
        ok = await self.store.revoke_key(key_id, self.clock())
        await self.load()
        return ok

    async def list(self) -> list[KeyRecord]:
        await self.flush()
        return await self.store.list_keys()


def required_scope(method: str, path: str, query: dict[str, str]) -> tuple[str, str | None]:
    """(scope, function) a control-API request needs. `path` is the full path (`/v1/...`)."""
    parts = [p for p in path.split("/") if p][1:]  # drop "v1"
    head = parts[0] if parts else ""
    function = query.get("function") or None
    if head == "functions" and len(parts) >= 2:
        function = parts[1]
    if head in ("keys", "secrets"):
        return "admin", None
    if head == "functions" and len(parts) >= 3 and parts[2] == "invoke" and method == "POST":
        return "invoke", function
    if method in ("GET", "HEAD"):
        return "read", function
    return "deploy", function
