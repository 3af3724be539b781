"""The `X-Polyfn-*` header names are the node's own: callers never set them for a function.

The node passes facts to functions and to its own later steps in such headers (`X-Polyfn-Revision` pins a
queued job to a revision, `X-Polyfn-Idempotency-Key` and `X-Polyfn-Attempt` carry the job's id and attempt,
`X-Polyfn-Event-Hops` bounds CloudEvent reply chains, `X-Polyfn-Trigger` names the trigger). A caller who
could set them could run an old revision, forge the idempotency key a function relies on, or queue a job
that can never run. So every ingress drops them from requests that come from outside (`from_outside`), after
reading the few a caller may send to the node itself (`X-Polyfn-Async`), and the node adds its own after.
"""

from __future__ import annotations

INTERNAL_PREFIX = "x-polyfn-"
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"})


def is_internal(name: str) -> bool:
    return name[:9].lower() == INTERNAL_PREFIX


def from_outside(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`pairs` without the node's internal headers (the list itself when it has none)."""
    if not any(is_internal(k) for k, _ in pairs):
        return pairs
    return [(k, v) for k, v in pairs if not is_internal(k)]


#: Request headers through which vendors' platforms tell a function who the caller is (WeChat cloud hosting,
#: Azure App Service authentication, Google API Gateway and IAP, AWS ALB OIDC, polyfn's own). A caller can
#: send them too, so they are dropped from every invocation: a function learns the caller only from a token
#: the node verified (`Invoke.identity`, put in each vendor's place by its flavor).
IDENTITY_HEADER_PREFIXES = ("x-wx-", "x-ms-client-principal", "x-apigateway-api-userinfo", "x-goog-authenticated-user-",
                            "x-goog-iap-jwt-assertion", "x-amzn-oidc-", "x-polyfn-identity", "x-endpoint-api-userinfo")
assert all(p.startswith("x-") for p in IDENTITY_HEADER_PREFIXES)  # (strip_identity_headers relies on it)


def strip_identity_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`headers` without any that claim an identity (IDENTITY_HEADER_PREFIXES); the same list when none does."""
    prefixes = IDENTITY_HEADER_PREFIXES
    for k, _ in headers:
        if k[:1] in "xX" and k.lower().startswith(prefixes):  # (every prefix begins with "x-")
            return [(k, v) for k, v in headers if not k.lower().startswith(prefixes)]
    return headers


#: `safe_headers`' answers by the instance's header list (a function answers with the same few lists): a dict
#: lookup instead of ~0.4 µs a header. Bounded: cleared past `_SAFE_MAX` lists.
_safe: dict[tuple[tuple[str, str], ...], list[tuple[bytes, bytes]]] = {}
_SAFE_MAX = 1024
#: only small lists are kept (an instance's headers are untrusted: 1,024 large lists would be megabytes)
_SAFE_KEPT_CHARS = 1024


def safe_headers(pairs: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Response headers from an (untrusted) instance: no CR/LF injection, no framing headers. A new list each
    time (callers add to it)."""
    try:
        key = tuple(pairs)
        out = _safe.get(key)
    except TypeError:  # (a pair that is not hashable: checked as it is)
        return _safe_headers(pairs)
    if out is None:
        out = _safe_headers(pairs)
        if sum(len(str(k)) + len(str(v)) for k, v in key) > _SAFE_KEPT_CHARS:
            return out
        if len(_safe) >= _SAFE_MAX:
            _safe.clear()
        _safe[key] = out
    return out.copy()


def _safe_headers(pairs: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    out = []
    for k, v in pairs:
        if not isinstance(k, str) or not isinstance(v, str) or not k:
            continue
        if "\r" in k or "\n" in k or "\r" in v or "\n" in v or ":" in k or " " in k:
            continue
        if k.lower() in _HOP_BY_HOP:
            continue
        try:
            out.append((k.encode("latin-1"), v.encode("latin-1")))
        except UnicodeEncodeError:
            continue
    return out
