"""The identity service: apps, sessions and token verification, and sign-in (`signin`, apps/signin.py). The
one object the node builds.

It is made from narrow parts: the app store (`apps/store.py`), a `TokenSigner` (keys from the node key), a
`Limiter` (token buckets, `auth/ratelimit.py`) and a `call_function(name, payload) -> (status, body)` for
sign-in, and a clock. It knows no wire format: the HTTP faces turn its answers and `AppError`s into
responses.

Hot path: `verify(app, token)` is a dict lookup once a token has been seen (verified tokens are cached until
they expire; the cache is dropped whole when it grows past `CACHE_MAX`), plus a set lookup for revocation.
Apps are cached (reloaded every `reload_interval` and at once for an id not known here, at most once a
second), and so are revoked sessions whose access tokens may still be alive: a revocation on this node
takes effect at once, one on another node of a cluster within `reload_interval`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from polyfn.apps.model import (
    App,
    AppConfig,
    AppError,
    ConfigError,
    Identity,
    Session,
    User,
    check_app_id,
    parse_config,
)
from polyfn.apps.signin import CallFunction, SignIn
from polyfn.apps.store import AppStore, Conflict
from polyfn.apps.tokens import TokenError, TokenSigner, new_refresh, split_refresh
from polyfn.auth.ratelimit import Limiter
from polyfn.loops import cancelled

log = logging.getLogger("polyfn.apps")

CACHE_MAX = 100_000
MAX_TOKEN_TTL = 7 * 24 * 3600


class AppService:
    def __init__(self, store: AppStore, signer: TokenSigner, limiter: Limiter,
                 call_function: CallFunction | None = None, clock: Callable[[], float] = time.time,
                 reload_interval: float = 5.0):
        self.store = store
        self.signer = signer
        self.clock = clock
        self.reload_interval = reload_interval
        self.apps: dict[str, App] = {}
        self._revoked: set[str] = set()
        self._verified: dict[str, Identity] = {}
        self._loaded_at = 0.0
        self._task: asyncio.Task[None] | None = None
        # anonymous, email/password and custom sign-in (apps/signin.py): each starts a session here
        self.signin = SignIn(store, limiter, self.require_app, self.start_session, call_function, clock)

    # -- life ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.load()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await cancelled(self._task)

    async def load(self) -> None:
        now = self.clock()
        # revocations since the last load (a minute's overlap for clocks and slow commits), all of the last
        # token lifetime the first time
        since = self._loaded_at - 60 if self._loaded_at else now - MAX_TOKEN_TTL
        self._loaded_at = now
        self.apps = {a.id: a for a in await self.store.list_apps()}
        self._revoked.update(await self.store.revoked_since(since))

    async def _loop(self) -> None:
        pruned_at = 0.0
        while True:
            await asyncio.sleep(self.reload_interval)
            try:
                await self.load()
                now = self.clock()
                if now - pruned_at > 3600:
                    pruned_at = now
                    await self.store.prune_sessions(now, MAX_TOKEN_TTL)
                    self._revoked = set(await self.store.revoked_since(now - MAX_TOKEN_TTL))
            except Exception:  # a database hiccup must not stop the loop
                log.exception("reloading apps failed")

    # -- apps ------------------------------------------------------------------------------------------

    def app(self, app_id: str) -> App | None:
        """The cached app (hot path)."""
        return self.apps.get(app_id)

    async def find_app(self, app_id: str) -> App | None:
        """The app, reloading first when it is not known here (made on another node), at most once a second."""
        found = self.apps.get(app_id)
        if found is None and self.clock() - self._loaded_at >= 1.0:
            await self.load()
            found = self.apps.get(app_id)
        return found

    async def require_app(self, app_id: str) -> App:
        found = await self.find_app(app_id)
        if found is None:
            raise AppError(404, "app_not_found", f"app {app_id!r} does not exist (create it with "
                                                 f"`polyfn apps create {app_id}`)")
        return found

    async def create_app(self, app_id: str, settings: dict[str, Any], namespace: str = "default") -> App:
        try:
            check_app_id(app_id)
            config = parse_config(settings)
        except ConfigError as e:
            raise AppError(400, "invalid_app", str(e)) from None
        now = self.clock()
        app = App(id=app_id, config=config, created_at=now, updated_at=now, namespace=namespace)
        try:
            await self.store.create_app(app)
        except Conflict:
            raise AppError(409, "app_exists", f"app {app_id!r} exists already") from None
        self.apps[app_id] = app
        return app

    async def update_app(self, app_id: str, settings: dict[str, Any]) -> App:
        app = await self.require_app(app_id)
        try:
            config = parse_config(settings, app.config)
        except ConfigError as e:
            raise AppError(400, "invalid_app", str(e)) from None
        now = self.clock()
        if not await self.store.update_app(app_id, config, now):
            raise AppError(404, "app_not_found", f"app {app_id!r} does not exist")
        updated = App(id=app_id, config=config, created_at=app.created_at, updated_at=now, namespace=app.namespace)
        self.apps[app_id] = updated
        self._verified.clear()  # identities carry the app's appid
        return updated

    async def delete_app(self, app_id: str) -> None:
        if not await self.store.delete_app(app_id):
            raise AppError(404, "app_not_found", f"app {app_id!r} does not exist")
        self.apps.pop(app_id, None)
        self._verified.clear()

    async def forget_namespace(self, namespace: str) -> dict[str, Any]:
        """A deleted namespace's apps go, with their users and sessions (their keys are the namespace's)."""
        gone = [a.id for a in await self.store.list_apps() if a.namespace == namespace]
        for app_id in gone:
            await self.delete_app(app_id)
        return {"apps": gone}

    async def refresh(self, app_id: str, refresh_token: str) -> dict[str, Any]:
        """A new access token and a new refresh token (the old one stops working: rotation). Reusing an old
        refresh token means it was copied: the whole session is revoked."""
        app = await self.require_app(app_id)
        parts = split_refresh(refresh_token)
        if parts is None:
            raise AppError(401, "token_invalid", "not a refresh token")
        sid, sha = parts
        session = await self.store.get_session(sid)
        now = self.clock()
        if session is None or session.app != app_id:
            raise AppError(401, "token_invalid" if session is None else "token_wrong_app",
                           "unknown refresh token" if session is None else f"the token is for app {session.app!r}")
        if session.revoked_at is not None:
            raise AppError(401, "token_revoked", "this session was signed out or revoked; sign in again")
        if session.expires_at <= now:
            raise AppError(401, "token_expired", "this session expired; sign in again")
        token, new_sha = new_refresh(sid)
        if session.refresh_sha256 != sha or not await self.store.rotate_session(sid, sha, new_sha,
                                                                               now + app.config.refresh_ttl):
            await self._revoke_sessions([sid])
            raise AppError(401, "token_revoked", "this refresh token was already used: the session is revoked; "
                                                 "sign in again")
        user = await self.store.get_user(app_id, session.uid)
        if user is None or user.disabled:
            await self._revoke_sessions([sid])
            raise AppError(401, "token_revoked", "the user was deleted or disabled")
        return self._tokens(app, user, sid, token, now, session.created_at)

    async def sign_out(self, app_id: str, identity: Identity | None, refresh_token: str = "") -> None:
        sid = identity.session if identity is not None else ""
        if not sid and refresh_token:
            parts = split_refresh(refresh_token)
            session = await self.store.get_session(parts[0]) if parts else None
            if session is None or session.app != app_id or session.refresh_sha256 != parts[1]:  # type: ignore[index]
                raise AppError(401, "token_invalid", "unknown refresh token")
            sid = session.id
        if not sid:
            raise AppError(401, "token_missing", "sign out needs the access token or the refresh token")
        await self._revoke_sessions([sid])

    # -- admin -----------------------------------------------------------------------------------------

    async def revoke_user(self, app_id: str, uid: str, disable: bool = False) -> int:
        """Sign a user out everywhere (their access tokens are refused from now on); `disable` also stops new
        sign-ins."""
        if await self.store.get_user(app_id, uid) is None:
            raise AppError(404, "user_not_found", f"app {app_id!r} has no user {uid!r}")
        if disable:
            await self.store.update_user(app_id, uid, disabled=True)
        ids = await self.store.revoke_user_sessions(app_id, uid, self.clock())
        self._forget(ids)
        return len(ids)

    async def enable_user(self, app_id: str, uid: str) -> None:
        if not await self.store.update_user(app_id, uid, disabled=False):
            raise AppError(404, "user_not_found", f"app {app_id!r} has no user {uid!r}")

    async def delete_user(self, app_id: str, uid: str) -> None:
        ids = await self.store.revoke_user_sessions(app_id, uid, self.clock())
        self._forget(ids)
        if not await self.store.delete_user(app_id, uid):
            raise AppError(404, "user_not_found", f"app {app_id!r} has no user {uid!r}")

    # -- verification (hot path) -----------------------------------------------------------------------

    def verify(self, app_id: str, token: str) -> Identity:
        """The identity behind an access token for `app_id`; TokenError (a 401 with its code) otherwise."""
        now = self.clock()
        ident = self._verified.get(token)
        if ident is None:
            ident = self._decode(app_id, token, now)
        elif ident.app != app_id:
            raise TokenError("token_wrong_app", f"the token is for app {ident.app!r}, not {app_id!r}")
        elif ident.exp <= now:
            del self._verified[token]
            raise TokenError("token_expired", "the token has expired: refresh it (POST /app/{env}/auth/refresh)")
        if ident.session in self._revoked:
            raise TokenError("token_revoked", "the token's session was signed out or revoked; sign in again")
        return ident

    def revoked(self, ident: Identity) -> bool:
        """Whether a verified identity's session was revoked since (a long-lived stream asks while it runs)."""
        return ident.session in self._revoked

    def _decode(self, app_id: str, token: str, now: float) -> Identity:
        if not token:
            raise TokenError("token_missing", "no token: sign in first (Authorization: Bearer <access token>)")
        claims = self.signer.decode(token, app_id, now)
        app = self.apps.get(app_id)
        if app is None:
            raise TokenError("token_wrong_app", f"app {app_id!r} does not exist")
        ident = Identity(app=app_id, appid=app.appid, uid=claims["sub"], openid=claims.get("openid") or claims["sub"],
                         provider=claims.get("provider", ""), unionid=claims.get("unionid") or "",
                         email=claims.get("email") or "", claims=claims, exp=float(claims["exp"]),
                         session=claims.get("sid", ""), token=token)
        if len(self._verified) >= CACHE_MAX:
            self._verified.clear()
        self._verified[token] = ident
        return ident

    # -- internals -------------------------------------------------------------------------------------

    async def start_session(self, app: App, user: User) -> dict[str, Any]:
        now = self.clock()
        sid = secrets.token_hex(12)
        token, sha = new_refresh(sid)
        await self.store.add_session(Session(id=sid, app=app.id, uid=user.uid, refresh_sha256=sha, created_at=now,
                                             expires_at=now + app.config.refresh_ttl))
        await self.store.update_user(app.id, user.uid, last_sign_in_at=now)
        return self._tokens(app, user, sid, token, now, now)

    def _tokens(self, app: App, user: User, sid: str, refresh_token: str, now: float,
                signed_in_at: float) -> dict[str, Any]:
        ttl = app.config.token_ttl
        claims: dict[str, Any] = {"aud": app.id, "sub": user.uid, "iat": int(now), "exp": int(now) + ttl,
                                  "auth_time": int(signed_in_at),
                                  "sid": sid, "provider": user.provider, "user_id": user.uid,
                                  "firebase": {"sign_in_provider": user.provider, "identities": {}}}
        for key in ("openid", "unionid", "email"):
            if getattr(user, key):
                claims[key] = getattr(user, key)
        for key, value in user.claims.items():  # a custom sign-in's claims, never over the reserved ones
            claims.setdefault(key, value)
        access = self.signer.issue(claims, now)
        return {"access_token": access, "refresh_token": refresh_token, "token_type": "Bearer", "expires_in": ttl,
                "expires_at": int(now) + ttl, "user": user.public()}

    async def _revoke_sessions(self, ids: list[str]) -> None:
        now = self.clock()
        for sid in ids:
            await self.store.revoke_session(sid, now)
        self._forget(ids)

    def _forget(self, ids: list[str]) -> None:
        self._revoked.update(ids)


__all__ = ["AppConfig", "AppError", "AppService", "Identity", "TokenError"]
