"""Who may call the compat APIs: one lookup from an access key id to its secret.

Every compat API authenticates against polyfn keys through `secret_for`: SigV4 (Lambda API) needs the
secret to recompute the signature; basic auth (OpenFaaS `admin:<key>`, OpenWhisk `<id>:<key>`) compares it.

Today polyfn has one key, the node's admin key, so the only access key id is `polyfn-admin` (and `admin`
for faas-cli, whose user name is fixed). When scoped keys land, this lookup is the one function to swap for
the key store's.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyfn.server import Node

ADMIN_ACCESS_KEY_ID = "polyfn-admin"
ADMIN_ALIASES = frozenset({ADMIN_ACCESS_KEY_ID, "admin"})


def secret_for(node: Node, access_key_id: str) -> str | None:
    """The secret of `access_key_id`, or None when no such key exists."""
    if access_key_id in ADMIN_ALIASES:
        return node.admin_key
    return None


def check_basic(node: Node, authorization: str) -> str | None:
    """The access key id when `Authorization: Basic base64(id:secret)` names a valid key, else None."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not sep:
        return None
    secret = secret_for(node, user)
    if secret is None or not hmac.compare_digest(password.encode(), secret.encode()):
        return None
    return user
