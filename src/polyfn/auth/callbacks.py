"""Callback URLs (`X-Callback-Url`): parsed once at the edge, and who may make the node POST to them (SSRF).

**Parsing.** A callback URL is checked where it enters the node (`parse_callback_url`), with the same rules
the queue applies to URLs from triggers, and anything the HTTP client would not be able to POST to is a
400 `invalid_callback_url` there: nothing unusable is ever queued (one such row once stopped every callback
of the node, because the client raised on it in the delivery loop).

**Policy.** A callback makes the node send an HTTP request from inside the network it runs in. On the
authenticated APIs that is the key holder's decision; on the anonymous paths (`/fn/NAME` with
`X-Polyfn-Async`, OpenFaaS `/async-function/NAME`) anyone could aim it at internal services (metadata
endpoints, databases' HTTP ports, the node's own admin API). So a callback on those paths is accepted only
when the caller sends a key of scope `invoke` (or above) that may act on the function — as `Authorization:
Bearer ID:SECRET`, basic auth or `x-functions-key` — or when the URL's host is in `POLYFN_CALLBACK_ALLOW`
(comma-separated host names or addresses; `*` allows any host). Pure: the caller passes the key it found and
the allow-list.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from polyfn.auth.keys import allows
from polyfn.store.security import KeyRecord

NOT_ALLOWED = "callback_not_allowed"
INVALID = "invalid_callback_url"
MAX_LENGTH = 2048


class InvalidCallbackUrl(ValueError):
    """The URL cannot be POSTed to; its message says why (the 400 `invalid_callback_url`'s message)."""


def parse_callback_url(url: str) -> str:
    """`url` if the node can POST to it (http or https, a host, a valid port, no spaces or control
    characters, at most MAX_LENGTH characters), else InvalidCallbackUrl."""
    import httpx

    shown = url if len(url) <= 200 else url[:200] + "…"
    if len(url) > MAX_LENGTH:
        raise InvalidCallbackUrl(f"X-Callback-Url is {len(url)} characters long; the limit is {MAX_LENGTH}")
    if any(c <= " " or c == "\x7f" for c in url):
        raise InvalidCallbackUrl(f"X-Callback-Url must not contain spaces or control characters: {shown!r}")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in 0-65535
        parsed = httpx.URL(url)  # what delivery uses: it must accept the URL as well
    except (ValueError, httpx.InvalidURL) as e:
        raise InvalidCallbackUrl(f"X-Callback-Url {shown!r} is not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https") or parsed.scheme not in ("http", "https"):
        raise InvalidCallbackUrl(f"X-Callback-Url must be an http(s) URL, not {shown!r}")
    if not parts.hostname or not parsed.host:
        raise InvalidCallbackUrl(f"X-Callback-Url {shown!r} has no host")
    if port == 0:
        raise InvalidCallbackUrl(f"X-Callback-Url {shown!r}: port 0 cannot be reached")
    return url


def callback_refusal(url: str, function: str, key: KeyRecord | None, allowed_hosts: frozenset[str]) -> str | None:
    """None when the (parsed: `parse_callback_url`) callback may be queued, else the message of a 400
    `callback_not_allowed`."""
    if key is not None and allows(key, "invoke", function):
        return None
    host = (urlsplit(url).hostname or "").lower()
    if "*" in allowed_hosts or (host and host in allowed_hosts):
        return None
    return (f"X-Callback-Url to host {host or '?'!r} is not allowed on an unauthenticated call: send a key of "
            "scope 'invoke' (Authorization: Bearer ID:SECRET) or add the host to POLYFN_CALLBACK_ALLOW")


def check_callback(url: str, function: str, key: KeyRecord | None,
                   allowed_hosts: frozenset[str]) -> tuple[str, str] | None:
    """For the anonymous paths: None when the callback may be queued, else (code, message) of the 400:
    `invalid_callback_url` first (the more useful error), then `callback_not_allowed`."""
    try:
        parse_callback_url(url)
    except InvalidCallbackUrl as e:
        return INVALID, str(e)
    refusal = callback_refusal(url, function, key, allowed_hosts)
    return None if refusal is None else (NOT_ALLOWED, refusal)
