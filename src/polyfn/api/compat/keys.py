"""Who may call the compat APIs: the node's one key store (`auth/keys.py`) seen through each vendor's scheme.

SigV4 (Lambda API) verifies with `auth/sigv4.py` against `KeyRing.signing_credentials` (every key made since
migration 0007 keeps its secret encrypted, so any key can sign); basic auth (OpenFaaS `admin:<key>`,
OpenWhisk `<id>:<key>`) compares the secret's hash like a bearer key. The node's admin key is also accepted
under the ids `polyfn-admin` and `admin` (faas-cli's fixed user name). What a key may then do is its
scope (`allows`): read < invoke < deploy < admin, optionally bound to one function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyfn.auth.keys import allows

if TYPE_CHECKING:
    from polyfn.services import Keys

ADMIN_ACCESS_KEY_ID = "polyfn-admin"


def check_basic(ring: Keys | None, authorization: str, scope: str = "admin") -> str | None:
    """The access key id when `Authorization: Basic base64(id:secret)` names a live key of `scope` (on every
    function), else None."""
    if ring is None or not authorization[:6].lower() == "basic ":
        return None
    rec = ring.from_authorization(authorization)
    return rec.id if rec is not None and allows(rec, scope, None) else None
