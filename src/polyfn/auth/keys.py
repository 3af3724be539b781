"""The node's one key store: scoped API keys, `read` < `invoke` < `deploy` < `admin`, optionally bound to one
function, optionally owned by one (the key a function's instances get).

A key is an access key id (public, `PFAK…`) and a secret (shown once, at creation). The same pair is a
bearer API key (`Authorization: Bearer ID:SECRET`, or just the secret), basic-auth credentials for the
OpenFaaS/OpenWhisk APIs and SigV4 credentials for the Lambda and S3 APIs (`auth/sigv4.py`). Bearer checks
compare the SHA-256 of the secret (secrets are 240 random bits, so a fast hash is as good as a slow one);
SigV4 needs the secret itself, so it is also kept encrypted with the node key (`auth/secrets.py`,
`<data dir>/node.key`), decrypted on first use and cached in memory. Keys made before that (migration 0007)
have only the hash: they keep working as bearer keys and are listed with `sigv4: false`.

The admin key of `<data dir>/admin.key` is registered as an `admin` key with id `PFAKADMIN…` at start; the
Lambda/OpenFaaS APIs also accept it under the ids `polyfn-admin` and `admin`. Each function's instances get
a key of their own (`for_function`: scope `invoke`, owner = the function), so what they write to storage
is attributable to them (loop protection) and it is revoked with the function.

The ring is cached in memory (lookups are dict accesses); last-used times are written back in batches. Every few
seconds (and at once, at most once a second, for an id it does not know) the ring reads the keys made or
revoked since its last read (`refresh`: a node of thousands of keys does not parse them all each time), so keys
made or revoked on another node sharing the database take effect; once a minute it reads them all (`load`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import itertools
import logging
import secrets
import string
import time
from collections.abc import Callable
from typing import Any

from polyfn.loops import one_item
from polyfn.store.security import KeyRecord, SecurityStore
from polyfn.tenancy import DEFAULT, key_may, namespace_of

log = logging.getLogger("polyfn.auth")

SCOPES = ("read", "invoke", "deploy", "admin")
_RANK = {s: i for i, s in enumerate(SCOPES)}
# Outside the ranking: a log shipper's key, which may only POST lines to `/v1/logs/STREAM` (read nothing,
# invoke nothing, no object store, no tables). `deploy` and `admin` keys may ingest too.
INGEST = "ingest"
KEY_SCOPES = (*SCOPES, INGEST)
_ID_ALPHABET = string.ascii_uppercase + string.digits
FULL_EVERY = 12  # the periodic read takes every key once in this many (5 s × 12: a minute); between, the changes
SKEW_S = 60.0  # a refresh reads changes back to this long before the last read (other nodes' clocks may lag)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_id(prefix: str = "PFAK") -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def allows(key: KeyRecord, scope: str, function: str | None) -> bool:
    """May `key` do something that needs `scope` on `function` (None: not about one function; a held name,
    so a key of one namespace never reaches another's functions: tenancy.py)?"""
    if not key_may(key, function):
        return False
    if key.scope == INGEST or scope == INGEST:
        return scope == INGEST and key.owner is None and (key.scope == INGEST or _RANK[key.scope] >= _RANK["deploy"])
    if _RANK[key.scope] < _RANK[scope]:
        return False
    if key.owner is not None and scope != "invoke" and function != key.owner:
        # a function's own key (its instances' credentials) invokes functions and reads its own function;
        # never another function's code, configuration, activations or logs (user code holds this key)
        return False
    return key.function is None or key.function == function


ADMIN_ALIASES = frozenset({"polyfn-admin", "admin"})  # access key ids that name the node's admin key
_PLAIN = "plain:"  # secret_enc of a storage key moved by migration 0007, not yet encrypted


def storage_allows(key: KeyRecord, method: str) -> bool:
    """The object store's mapping of scopes (docs/security.md): `read` → GET/HEAD (objects, listings, bucket
    metadata, presigned GETs); `invoke` and above → everything else too (PUT, POST, DELETE: objects, multipart
    uploads, buckets and their ACLs). A `--function` binding does not narrow storage access."""
    if key.scope == INGEST:
        return False
    return method in ("GET", "HEAD") or _RANK[key.scope] >= _RANK["invoke"]


class KeyRing:
    def __init__(self, store: SecurityStore, box: Any = None, clock: Callable[[], float] = time.time):
        self.store = store
        self.box = box  # polyfn.auth.secrets.SecretBox: encrypts secrets at rest with the node key
        self.clock = clock
        self._by_digest: dict[str, KeyRecord] = {}
        self._by_id: dict[str, KeyRecord] = {}
        self._secrets: dict[str, str] = {}  # id → decrypted secret (on first SigV4 use)
        self._owned: dict[str, KeyRecord] = {}  # function → its instances' live key
        self._used: dict[str, float] = {}
        self._fresh: set[str] = set()  # ids made here since the last load started
        self._loaded_at = 0.0
        self._read_from = 0.0  # the clock when the last read began: `refresh` reads changes from there (- SKEW_S)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.admin_id = ""
        self.sts: Any = None  # polyfn.auth.sts.Issuer: temporary credentials (access key ids `PFTS…`)

    async def load(self) -> None:
        """Read every key (at start, and once every FULL_EVERY periodic reads)."""
        self._fresh: set[str] = set()
        self._read_from = self.clock()
        recs = await self.store.list_keys()
        # Keys this ring made while the list was being read are committed but may be missing from it: keep them
        # (a reload must never make a key that was just handed out unknown).
        recs += [self._by_id[i] for i in self._fresh if i in self._by_id and i not in {k.id for k in recs}]
        self._by_digest = {k.secret_sha256: k for k in recs}
        self._by_id = {k.id: k for k in recs}
        self._owned = {k.owner: k for k in recs if k.owner and k.revoked_at is None and k.secret_enc}
        self._loaded_at = self.clock()

    async def refresh(self) -> None:
        """Read the keys made or revoked since the last read (back SKEW_S more) into the ring: O(changes), not
        O(keys). A key made here meanwhile stays (it is merged, never replaced by an older snapshot)."""
        started = self.clock()
        for k in await self.store.changed_keys(self._read_from - SKEW_S):
            old = self._by_id.get(k.id)
            if old is not None and old.secret_sha256 != k.secret_sha256:
                self._by_digest.pop(old.secret_sha256, None)
            self._by_digest[k.secret_sha256] = k
            self._by_id[k.id] = k
            if k.owner and k.revoked_at is None and k.secret_enc:
                self._owned[k.owner] = k
            elif k.owner and (mine := self._owned.get(k.owner)) is not None and mine.id == k.id:
                del self._owned[k.owner]
        self._read_from = started
        self._loaded_at = self.clock()

    async def start(self, admin_key: str, interval: float = 5.0) -> None:
        await self.load()
        d = digest(admin_key)
        rec = self._by_digest.get(d)
        if rec is None:
            rec = KeyRecord(id=new_id("PFAKADMIN")[:20], secret_sha256=d, scope="admin",
                            description="the node's admin key (admin.key)", created_at=self.clock(),
                            secret_enc=self._encrypt(admin_key))
            if not await self.store.add_key_if_absent(rec):  # nodes of a cluster starting together: one stores it
                await self.load()
                rec = self._by_digest[d]
        elif not rec.secret_enc and self.box is not None:
            await self.store.set_secret_enc(rec.id, self._encrypt(admin_key))
        self.admin_id = rec.id
        for k in list(self._by_id.values()):  # storage keys moved by migration 0007: encrypt them now
            if k.secret_enc and k.secret_enc.startswith(_PLAIN) and self.box is not None:
                await self.store.set_secret_enc(k.id, self._encrypt(k.secret_enc[len(_PLAIN):]))
        await self.load()
        self._task = asyncio.create_task(self._loop(interval))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.flush()

    async def _loop(self, interval: float) -> None:
        for n in itertools.count(1):
            await asyncio.sleep(interval)
            with one_item(log, "API keys: saving last use and reloading"):  # a database hiccup
                await self.flush()
                await (self.load() if n % FULL_EVERY == 0 else self.refresh())

    async def flush(self) -> None:
        used, self._used = self._used, {}
        await self.store.touch_keys(used)

    def known(self, key_id: str, now: float) -> bool:
        """True when `ensure(key_id, now)` has nothing to do (a request's hot path skips its coroutine)."""
        return key_id in self._by_id or key_id in ADMIN_ALIASES or key_id.startswith("PFTS") or (
            now - self._loaded_at < 1.0)

    async def ensure(self, key_id: str, now: float | None = None) -> None:
        """Reload when `key_id` is unknown here (made on another node sharing the database), at most once a
        second; the periodic reload covers revocations."""
        now = self.clock() if now is None else now
        if self.known(key_id, now):
            return
        self._loaded_at = now  # before the await: concurrent requests do not all reload
        await self.refresh()

    def _encrypt(self, secret: str) -> str | None:
        return self.box.encrypt(secret) if self.box is not None else None

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
        if key_id and not hmac.compare_digest(key_id, rec.id) and not (key_id in ADMIN_ALIASES
                                                                         and rec.id == self.admin_id):
            return None
        self._used[rec.id] = self.clock()
        return rec

    def from_authorization(self, authorization: str) -> KeyRecord | None:
        """The live key an `Authorization` header carries: `Bearer ID:SECRET` (or the secret alone) or
        `Basic base64(ID:SECRET)` (the admin key also as user `admin`/`polyfn-admin`); None otherwise."""
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and value:
            return self.verify(value)
        if scheme != "basic" or not value:
            return None
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return self.verify(f"{user}:{password}") if sep and user and password else None

    def get(self, key_id: str) -> KeyRecord | None:
        """The live key with this id (or an admin alias), without checking a secret."""
        rec = self._by_id.get(self.admin_id if key_id in ADMIN_ALIASES else key_id)
        return rec if rec is not None and rec.revoked_at is None else None

    def signing_credentials(self, key_id: str) -> tuple[str | None, KeyRecord] | None:
        """For SigV4 (and S3's V2/OSS): (the secret, or None for a hash-only key; the record), None if no live key.
        Temporary credentials (`PFTS…`, auth/sts.py) carry their own limits and need no database."""
        if key_id.startswith("PFTS") and self.sts is not None:
            return self.sts.resolve(key_id)
        rec = self.get(key_id)
        if rec is None:
            return None
        secret = self._secrets.get(rec.id)
        if secret is None and rec.secret_enc and self.box is not None:
            enc = rec.secret_enc
            secret = enc[len(_PLAIN):] if enc.startswith(_PLAIN) else self.box.decrypt(enc)
            self._secrets[rec.id] = secret
        if secret is not None:
            self._used[rec.id] = self.clock()
        return secret, rec

    async def create(self, scope: str, function: str | None = None, description: str = "",
                     owner: str | None = None, namespace: str = DEFAULT) -> tuple[KeyRecord, str]:
        if scope not in KEY_SCOPES:
            raise ValueError(f"scope={scope!r} is not one of {', '.join(KEY_SCOPES)}")
        secret = secrets.token_urlsafe(30)
        rec = KeyRecord(id=new_id(), secret_sha256=digest(secret), scope=scope, function=function, owner=owner,
                        description=description, created_at=self.clock(), secret_enc=self._encrypt(secret),
                        namespace=namespace)
        await self.store.add_key(rec)
        self._by_digest[rec.secret_sha256] = rec
        self._by_id[rec.id] = rec
        self._fresh.add(rec.id)
        self._secrets[rec.id] = secret
        return rec, secret

    async def for_function(self, function: str, description: str = "") -> tuple[KeyRecord, str]:
        """The key of `function`'s instances (made on first use): scope `invoke`, owned by the function. Other
        owners of a key of their own use this too (an app's file grants: owner `app:{id}`)."""
        async with self._lock:
            rec = self._owned.get(function)
            if rec is not None and rec.revoked_at is None:
                found = self.signing_credentials(rec.id)
                if found is not None and found[0] is not None:
                    return rec, found[0]
            rec, secret = await self.create("invoke", None, description or f"instances of function {function!r}",
                                            owner=function, namespace=namespace_of(function))
            self._owned[function] = rec
            return rec, secret

    async def forget_function(self, function: str) -> None:
        """A deleted function's instance keys are revoked."""
        await self.store.revoke_owned(function, self.clock())
        self._owned.pop(function, None)
        await self.refresh()

    async def revoke(self, key_id: str) -> bool:
        ok = await self.store.revoke_key(key_id, self.clock())
        await self.refresh()
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
    if head in ("keys", "secrets") or (head == "storage" and len(parts) >= 2 and parts[1] == "keys"):
        return "admin", None
    if head == "functions" and len(parts) >= 3 and parts[2] == "invoke" and method == "POST":
        return "invoke", function
    if head == "logs" and method == "POST":
        return INGEST, None  # log shipping (`polyfn logs push`): an `ingest` key, or deploy/admin
    if head in ("workflows", "executions") and method == "POST" and parts[-1] in ("executions", "stop"):
        return "invoke", None  # starting and stopping workflow executions (api/workflows.py)
    if method in ("GET", "HEAD"):
        return "read", function
    return "deploy", function
