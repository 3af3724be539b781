"""Who may call the compat APIs: the node's one key store (`auth/keys.py`) seen through each vendor's scheme.

SigV4 (Lambda API) verifies with `auth/sigv4.py` against `KeyRing.signing_credentials` (every key made since
migration 0006 keeps its secret encrypted, so any key can sign); basic auth (OpenFaaS `admin:<key>`,
OpenWhisk `<id>:<key>`) compares the secret's hash like a bearer key. The node's admin key is also accepted
under the ids `polyfn-admin` and `admin` (faas-cli's fixed user name). What a key may then do is its
scope (`allows`): read < invoke < deploy < admin, optionally bound to one function.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import TYPE_CHECKING, Any

from polyfn.auth.keys import ADMIN_ALIASES, allows

if TYPE_CHECKING:
    from polyfn.server import Node
    from polyfn.store.security import KeyRecord

ADMIN_ACCESS_KEY_ID = "polyfn-admin"


def basic_key(node: Node, authorization: str) -> KeyRecord | None:
    """The live key named by `Authorization: Basic base64(id:secret)`, or None."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic" or not value or node.keys is None:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not sep:
        return None
    if user in ADMIN_ALIASES:
        if not hmac.compare_digest(password.encode(), node.admin_key.encode()):
            return None
        return node.keys.get(user)
    return node.keys.verify(f"{user}:{password}")


def check_basic(node: Node, authorization: str, scope: str = "admin") -> str | None:
    """The access key id when basic auth names a valid key of `scope` (on every function), else None."""
    rec = basic_key(node, authorization)
    if rec is None or not allows(rec, scope, None):
        return None
    return rec.id


def request_key(node: Node, headers: Any) -> KeyRecord | None:
    """The key a plain HTTP request carries (`Authorization: Bearer ID:SECRET` or basic auth), if any."""
    auth = headers.get("authorization", "") if headers is not None else ""
    scheme, _, token = auth.partition(" ")
    if node.keys is None or not token:
        return None
    if scheme.lower() == "bearer":
        return node.keys.verify(token)
    return basic_key(node, auth)
