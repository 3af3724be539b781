"""Access tokens: JWTs (PyJWT, HS256) signed with keys derived from the node key, rotated, named by `kid`.

The signing key of rotation period `e` (`kid` = `k{e}`, e = ⌊now / rotation⌋) is HKDF(node key,
"polyfn app tokens {e}"): every node of a cluster (they share the node key) derives the same keys without
storing them, a key is never used for longer than one period, and tokens signed in the previous period stay
valid while they live (a token lives at most one period: `AppConfig.token_ttl` ≤ 7 days = the default
period). A `kid` older than that, or from the future, is refused.

`decode` checks the signature first (a tampered token is `token_invalid`, whatever else it claims), then
the audience (the app: `token_wrong_app`), then the expiry against the clock passed in (`token_expired`).
Revocation is the service's job: it knows the sessions.

Refresh tokens are not JWTs: `pfr_{session}.{secret}`, of which the database keeps the SHA-256 of the secret.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any

import jwt

ISSUER = "polyfn"
ALGORITHM = "HS256"
DEFAULT_ROTATION = 7 * 24 * 3600.0
REFRESH_PREFIX = "pfr_"


class TokenError(Exception):
    """A token was refused. `code` says why (stable, in the 401 answer): token_missing, token_invalid,
    token_expired, token_revoked, token_wrong_app, user_disabled."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class TokenSigner:
    def __init__(self, derive: Callable[[bytes], bytes], rotation: float = DEFAULT_ROTATION):
        self.derive = derive  # SecretBox.derive: purpose → 32 bytes
        self.rotation = rotation
        self._keys: dict[str, bytes] = {}

    def kid(self, now: float) -> str:
        return f"k{int(now // self.rotation)}"

    def _key(self, kid: str, now: float) -> bytes | None:
        if not kid.startswith("k") or not kid[1:].isdigit() or len(kid) > 16:
            return None
        period, current = int(kid[1:]), int(now // self.rotation)
        if not current - 1 <= period <= current:  # retired, or not yet in use
            return None
        key = self._keys.get(kid)
        if key is not None:
            return key
        key = self.derive(f"polyfn app tokens {period}".encode())
        if len(self._keys) > 8:
            self._keys.clear()
        self._keys[kid] = key
        return key

    def issue(self, claims: dict[str, Any], now: float) -> str:
        kid = self.kid(now)
        key = self._key(kid, now)
        assert key is not None
        return jwt.encode({"iss": ISSUER, **claims}, key, algorithm=ALGORITHM, headers={"kid": kid})

    def decode(self, token: str, app: str | None, now: float) -> dict[str, Any]:
        """The claims of a genuine, unexpired token for `app` (None: any app); TokenError otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("token_invalid", "the token is not a JWT") from None
        kid = header.get("kid")
        key = self._key(kid, now) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("token_invalid", "the token was not signed by this node's current keys")
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"verify_exp": False, "verify_aud": False, "verify_iat": False,
                                         "verify_nbf": False, "require": ["exp", "aud", "sub", "iss"]})
        except jwt.InvalidSignatureError:
            raise TokenError("token_invalid", "the token's signature does not match: it was altered") from None
        except jwt.PyJWTError as e:
            raise TokenError("token_invalid", f"the token is malformed: {e}") from None
        if app is not None and claims.get("aud") != app:
            raise TokenError("token_wrong_app", f"the token is for app {claims.get('aud')!r}, not {app!r}")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= now:
            raise TokenError("token_expired", "the token has expired: refresh it (POST /app/{env}/auth/refresh)")
        return claims


def new_refresh(session: str) -> tuple[str, str]:
    """(refresh token, SHA-256 of its secret)."""
    secret = secrets.token_urlsafe(32)
    return f"{REFRESH_PREFIX}{session}.{secret}", digest(secret)


def split_refresh(token: str) -> tuple[str, str] | None:
    """(session id, secret digest) of a refresh token, None when it is not one."""
    if not isinstance(token, str) or not token.startswith(REFRESH_PREFIX):
        return None
    session, dot, secret = token[len(REFRESH_PREFIX):].partition(".")
    if not dot or not session or not secret or len(token) > 200:
        return None
    return session, digest(secret)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
