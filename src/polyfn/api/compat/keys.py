"""Who may call the compat APIs: one lookup from an access key id to its secret.

Every compat API authenticates against polyfn keys through `secret_for`: SigV4 (Lambda API) needs the
secret to recompute the signature; basic auth (OpenFaaS `admin:<key>`, OpenWhisk `<id>:<key>`) compares it.

The node's admin key is always accepted as access key id `polyfn-admin` (and `admin` for faas-cli, whose
user name is fixed). When the node has a key ring (`node.keys`, scoped API keys), basic auth also accepts
any live key of sufficient scope as `ID:SECRET`, and SigV4 also accepts the admin key's own id. Scoped keys
cannot sign SigV4 requests yet: the ring stores only a hash of each secret, and SigV4 verification needs
the secret itself (see docs/compat.md).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polyfn.server import Node

ADMIN_ACCESS_KEY_ID = "polyfn-admin"
ADMIN_ALIASES = frozenset({ADMIN_ACCESS_KEY_ID, "admin"})


def _ring(node: Node) -> Any:
    return getattr(node, "keys", None)  # the scoped-key ring, when the node has one


def secret_for(node: Node, access_key_id: str) -> str | None:
    """The secret of `access_key_id`, or None when no such key exists (or its secret is not known)."""
    if access_key_id in ADMIN_ALIASES:
        return node.admin_key
    ring = _ring(node)
    if ring is not None and hasattr(ring, "verify"):
        rec = ring.verify(f"{access_key_id}:{node.admin_key}")
        if rec is not None:
            return node.admin_key
    return None


def check_basic(node: Node, authorization: str, scope: str = "admin") -> str | None:
    """The access key id when `Authorization: Basic base64(id:secret)` names a valid key of `scope`, else None."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not sep:
        return None
    if user in ADMIN_ALIASES:
        return user if hmac.compare_digest(password.encode(), node.admin_key.encode()) else None
    ring = _ring(node)
    if ring is None or not hasattr(ring, "verify"):
        return None
    rec = ring.verify(f"{user}:{password}")
    if rec is None:
        return None
    try:
        from polyfn.auth.keys import allows
    except ImportError:  # pragma: no cover - a ring without scopes
        return user
    return user if allows(rec, scope, None) else None
