"""Who may make the node POST a result to a URL (`X-Callback-Url`): the SSRF policy.

A callback makes the node send an HTTP request from inside the network it runs in. On the authenticated
APIs that is the key holder's decision; on the anonymous paths (`/fn/NAME` with `X-Polyfn-Async`, OpenFaaS
`/async-function/NAME`) anyone could aim it at internal services (metadata endpoints, databases' HTTP ports,
the node's own admin API). So a callback on those paths is accepted only when the caller sends a key of
scope `invoke` (or above) that may act on the function — as `Authorization: Bearer ID:SECRET`, basic auth
or `x-functions-key` — or when the URL's host is in `POLYFN_CALLBACK_ALLOW` (comma-separated host names or
addresses; `*` allows any host). Pure: the caller passes the key it found and the allow-list.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from polyfn.auth.keys import allows
from polyfn.store.security import KeyRecord

NOT_ALLOWED = "callback_not_allowed"


def callback_refusal(url: str, function: str, key: KeyRecord | None, allowed_hosts: frozenset[str]) -> str | None:
    """None when the callback may be queued, else the message of a 400 `callback_not_allowed`."""
    if key is not None and allows(key, "invoke", function):
        return None
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None  # not a URL: the queue refuses it as `invalid_callback_url`, the more useful error
    if parts.scheme not in ("http", "https"):
        return None  # likewise
    if "*" in allowed_hosts or (host and host in allowed_hosts):
        return None
    return (f"X-Callback-Url to host {host or '?'!r} is not allowed on an unauthenticated call: send a key of "
            "scope 'invoke' (Authorization: Bearer ID:SECRET) or add the host to POLYFN_CALLBACK_ALLOW")
