"""Who may call the compat APIs: the node's one key store (`auth/keys.py`) seen through each vendor's scheme.

SigV4 (Lambda API) verifies with `auth/sigv4.py` against `KeyRing.signing_credentials` (every key made since
migration 0007 keeps its secret encrypted, so any key can sign); basic auth (OpenFaaS `admin:<key>`,
OpenWhisk `<id>:<key>`) compares the secret's hash like a bearer key. The node's admin key is also accepted
under the ids `polyfn-admin` and `admin` (faas-cli's fixed user name). What a key may then do is its
scope (`allows`): read < invoke < deploy < admin, optionally bound to one function.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from polyfn.auth.keys import allows

if TYPE_CHECKING:
    from polyfn.services import Keys
    from polyfn.store.security import KeyRecord

ADMIN_ACCESS_KEY_ID = "polyfn-admin"


def check_basic(ring: Keys | None, authorization: str, scope: str = "admin") -> str | None:
    """The access key id when `Authorization: Basic base64(id:secret)` names a live key of `scope` (on every
    function), else None."""
    if ring is None or not authorization[:6].lower() == "basic ":
        return None
    rec = ring.from_authorization(authorization)
    return rec.id if rec is not None and allows(rec, scope, None) else None


def basic_key(ring: Keys | None, authorization: str) -> KeyRecord | None:
    """The live key of `Basic base64(user:secret)` whatever its scope: the key id as user, or faas-cli's fixed
    user `admin` with any key's secret (the secret alone names the key), so a face can tell a wrong key (401)
    from one of too small a scope (403)."""
    if ring is None or authorization[:6].lower() != "basic ":
        return None
    rec = ring.from_authorization(authorization)
    if rec is not None:
        return rec
    try:
        user, _, secret = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return ring.verify(secret) if user == "admin" and secret else None
