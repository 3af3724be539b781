"""Sign-in: how a user of an app gets a session — anonymous, email and password, or the app's own sign-in
function (a `wx.login` code, another provider's token) — each rate-limited per app and client (`Limiter`,
auth/ratelimit.py). Password hashing (scrypt: 32 MiB and tens of milliseconds a hash) runs on threads, at most
`HASHING_AT_ONCE` at a time, so a flood of sign-ups waits instead of taking the node's memory. The session and
its tokens are the service's (`AppService.start_session`, apps/service.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import time
from collections.abc import Awaitable, Callable
from typing import Any

from polyfn.apps import passwords
from polyfn.apps.model import App, AppError, User
from polyfn.apps.store import AppStore, Conflict
from polyfn.auth.ratelimit import Limiter

HASHING_AT_ONCE = 4
EMAIL_MAX = 254
_ALNUM = string.ascii_letters + string.digits

#: call a function of the node: (function name, payload) → (HTTP status, body)
CallFunction = Callable[[str, bytes], Awaitable[tuple[int, bytes]]]


def new_uid() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(28))


class SignIn:
    def __init__(self, store: AppStore, limiter: Limiter, require_app: Callable[[str], Awaitable[App]],
                 start_session: Callable[[App, User], Awaitable[dict[str, Any]]],
                 call_function: CallFunction | None = None, clock: Callable[[], float] = time.time):
        self.store = store
        self.limiter = limiter
        self.require_app = require_app  # the app, or AppError 404
        self.start_session = start_session  # a new session of the user: its tokens
        self.call_function = call_function  # runs an app's custom sign-in function
        self.clock = clock
        # scrypt takes 32 MiB and tens of milliseconds a hash: a flood of sign-ups or sign-ins waits here instead
        # of running thousands at once (memory) on every core (the loop's own thread stays free either way)
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)

    async def sign_in_anonymous(self, app_id: str, client: str) -> dict[str, Any]:
        app = await self.require_app(app_id)
        if not app.config.anonymous:
            raise AppError(403, "method_not_allowed", f"app {app_id!r} does not allow anonymous sign-in")
        self._limit("signup", app, client, app.config.signup_rate, app.config.signup_burst)
        user = User(app=app_id, uid=new_uid(), provider="anonymous", created_at=self.clock())
        await self.store.add_user(user)
        return await self.start_session(app, user)

    async def sign_up(self, app_id: str, email: str, password: str, client: str) -> dict[str, Any]:
        app = await self.require_app(app_id)
        self._password_allowed(app)
        email = _email(email)
        try:
            passwords.check_strength(password)
        except passwords.WeakPassword as e:
            raise AppError(400, "weak_password", str(e)) from None
        self._limit("signup", app, client, app.config.signup_rate, app.config.signup_burst)
        async with self._hashing:
            hashed = await asyncio.to_thread(passwords.hash_password, password)
        user = User(app=app_id, uid=new_uid(), provider="password", email=email, password_hash=hashed,
                    created_at=self.clock())
        try:
            await self.store.add_user(user)
        except Conflict:
            raise AppError(409, "email_exists", f"a user with email {email!r} exists; sign in instead") from None
        return await self.start_session(app, user)

    async def sign_in_password(self, app_id: str, email: str, password: str, client: str) -> dict[str, Any]:
        app = await self.require_app(app_id)
        self._password_allowed(app)
        email = _email(email)
        cfg = app.config
        # Every attempt costs a token from the account's bucket and from the client's (ten times larger): a
        # guesser gets `signin_burst` tries, then `signin_rate` a second, whatever the answers were.
        self._limit("signin", app, "acct:" + email, cfg.signin_rate, cfg.signin_burst)
        self._limit("signin", app, "addr:" + client, cfg.signin_rate * 10, cfg.signin_burst * 10)
        user = await self.store.user_by_email(app_id, email)
        async with self._hashing:
            ok = await asyncio.to_thread(passwords.verify_password, str(password),
                                         user.password_hash if user is not None else None)
        if not ok or user is None:
            raise AppError(401, "invalid_credentials", "wrong email or password")
        if user.disabled:
            raise AppError(403, "user_disabled", "this user is disabled")
        if user.password_hash and passwords.needs_rehash(user.password_hash):
            async with self._hashing:
                rehashed = await asyncio.to_thread(passwords.hash_password, str(password))
            await self.store.update_user(app_id, user.uid, password_hash=rehashed)
        return await self.start_session(app, user)

    async def sign_in_custom(self, app_id: str, data: Any, client: str) -> dict[str, Any]:
        """The app's sign-in function turns what the client sent (a `wx.login` code, another provider's token)
        into a user: it returns `{"openid": …}` or `{"uid": …}` (plus `unionid`, `claims`), or fails."""
        app = await self.require_app(app_id)
        cfg = app.config
        if not cfg.custom or self.call_function is None:
            raise AppError(403, "method_not_allowed", f"app {app_id!r} has no custom sign-in function "
                                                      f"(polyfn apps update {app_id} --custom FUNCTION)")
        self._limit("signin", app, "addr:" + client, cfg.signin_rate * 10, cfg.signin_burst * 10)
        payload = json.dumps({"app": app_id, "data": data, "client": client}).encode()
        status, body = await self.call_function(app.function(cfg.custom), payload)
        try:
            answer = json.loads(body) if body else None
        except ValueError:
            answer = None
        if status >= 300 or not isinstance(answer, dict) or answer.get("error"):
            reason = answer.get("error") or answer.get("errorMessage") if isinstance(answer, dict) else None
            raise AppError(401, "signin_refused", f"the sign-in function {cfg.custom!r} refused: "
                           f"{reason or f'it answered {status}'}")
        openid, uid = answer.get("openid"), answer.get("uid")
        unionid, claims = answer.get("unionid"), answer.get("claims") or {}
        if not ((isinstance(openid, str) and openid) or (isinstance(uid, str) and uid)) or not isinstance(claims, dict):
            raise AppError(502, "signin_function_invalid", f"the sign-in function {cfg.custom!r} must return "
                           "{\"openid\": …} or {\"uid\": …} (and optionally unionid, claims)")
        user = await (self.store.user_by_openid(app_id, openid) if openid else self.store.get_user(app_id, uid))
        if user is None:
            user = User(app=app_id, uid=uid or new_uid(), provider="custom", openid=openid or None,
                        unionid=unionid if isinstance(unionid, str) else None, claims=claims, created_at=self.clock())
            try:
                await self.store.add_user(user)
            except Conflict:  # the same user signing in twice at once: the other request made it
                found = await (self.store.user_by_openid(app_id, openid) if openid else
                               self.store.get_user(app_id, user.uid))
                if found is None:
                    raise AppError(409, "user_exists", "a user with this uid or openid exists") from None
                user = found
        elif user.disabled:
            raise AppError(403, "user_disabled", "this user is disabled")
        elif claims != user.claims or (isinstance(unionid, str) and unionid != user.unionid):
            user.claims = claims
            user.unionid = unionid if isinstance(unionid, str) else user.unionid
            await self.store.update_user(app_id, user.uid, claims=claims, unionid=user.unionid)
        return await self.start_session(app, user)

    def _password_allowed(self, app: App) -> None:
        if not app.config.password:
            raise AppError(403, "method_not_allowed", f"app {app.id!r} does not allow email/password sign-in")

    def _limit(self, what: str, app: App, who: str, rate: float, burst: float) -> None:
        wait = self.limiter.check(f"{what}:{app.id}:{who}", rate, burst, time.monotonic())
        if wait:
            raise AppError(429, "too_many_attempts", f"too many {'sign-ups' if what == 'signup' else 'sign-in attempts'}"
                           f"; retry in {wait} s", {"retry-after": str(wait)})


def _email(email: Any) -> str:
    if not isinstance(email, str) or "@" not in email or len(email) > EMAIL_MAX or any(c.isspace() for c in email):
        raise AppError(400, "invalid_email", f"{email!r} is not an email address")
    return email.strip().lower()
