"""Authorisation of control-API requests: which key, which scope, within its rate."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from polyfn.auth.keys import allows, required_scope
from polyfn.errors import PolyfnError as ApiError
from polyfn.store.security import KeyRecord

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.services import Keys, RateLimits


def authorize(keys: Keys, limiter: RateLimits, settings: Settings, method: str, path: str, query: Mapping[str, str],
              authorization: str) -> KeyRecord:
    """The key of a control-API request, allowed and within its rate; raises the typed refusal (401, 403, 429)."""
    scheme, _, token = authorization.partition(" ")
    key = keys.verify(token) if scheme.lower() == "bearer" and token else None
    if key is None:
        raise ApiError(401, "unauthorized",
                       "missing, wrong or revoked API key: send 'Authorization: Bearer <key>' "
                       f"(the admin key is in {settings.data_dir / 'admin.key'})",
                       {"www-authenticate": "Bearer"})
    scope, function = required_scope(method, path, dict(query))
    if not allows(key, scope, function):
        bound = f" bound to function {key.function!r}" if key.function else ""
        raise ApiError(403, "forbidden",
                       f"key {key.id} has scope {key.scope!r}{bound}; this request needs {scope!r}"
                       + (f" on function {function!r}" if function else " (not limited to one function)"))
    s = settings
    wait = limiter.check("key:" + key.id, s.key_rate, s.key_burst, time.monotonic())
    if wait:
        raise ApiError(429, "too_many_requests", f"key {key.id} is over its rate limit ({s.key_rate:g}/s)",
                       {"retry-after": str(wait)})
    return key
