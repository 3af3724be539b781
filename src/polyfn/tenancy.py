"""Namespaces (tenants): names, how a function's name carries its namespace, quotas. Pure: no I/O.

A function of the `default` namespace keeps its plain name everywhere (store, registry, activations, code
directory, metrics), so a node without namespaces is exactly what it was. A function `hello` of namespace
`team-a` is held under its *qualified* name `team-a~hello` — `~` is in neither a namespace's nor a function's
name, so the split is unambiguous and no two namespaces' functions can collide. Every face resolves the
caller's namespace once, at the edge (the key's, or the one a node-admin key asks for), qualifies the names it
receives and shows local names back (docs/tenancy.md).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

DEFAULT = "default"
SEP = "~"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
HEADER = "x-polyfn-namespace"  # the namespace a control-API request acts in (or `?namespace=`)
#: names no namespace may take: `lambda` is where the workflow store keeps durable functions' executions
RESERVED = frozenset({"lambda"})
DEFAULT_ACCOUNT = "000000000000"  # the account id in the default namespace's ARNs (as before namespaces)


class NamespaceError(ValueError):
    """A bad namespace name or quota value; `code` is the stable API error code."""

    def __init__(self, message: str, code: str = "invalid_namespace") -> None:
        super().__init__(message)
        self.code = code


def validate(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise NamespaceError(f"invalid namespace name {name!r}: use 1-40 characters a-z, 0-9 and '-', "
                             "starting with a letter")
    if name in RESERVED:
        raise NamespaceError(f"namespace name {name!r} is reserved")
    return name


def account_id(namespace: str) -> str:
    """The 12-digit AWS account id a namespace's ARNs carry (`arn:aws:states:REGION:ACCOUNT:stateMachine:NAME`):
    a namespace is what an account is on AWS. `default` keeps polyfn's 000000000000; another's is derived from
    its name (stable across nodes and restarts, never 000000000000)."""
    if namespace == DEFAULT:
        return DEFAULT_ACCOUNT
    n = int.from_bytes(hashlib.sha256(f"polyfn-namespace:{namespace}".encode()).digest()[:8], "big") % 10**12
    return f"{n or 1:012d}"


def qualify(namespace: str, name: str) -> str:
    """The name a function `name` of `namespace` is held under."""
    return name if namespace == DEFAULT else f"{namespace}{SEP}{name}"


def split(qualified: str) -> tuple[str, str]:
    """(namespace, local name) of a held function name."""
    ns, sep, name = qualified.partition(SEP)
    return (ns, name) if sep else (DEFAULT, qualified)


def namespace_of(qualified: str) -> str:
    return split(qualified)[0]


def local(qualified: str) -> str:
    return split(qualified)[1]


def owns(namespace: str, qualified: str) -> bool:
    return namespace_of(qualified) == namespace


def key_namespace(key: Any) -> str | None:
    """The namespace a key is confined to; None for a node administrator's key (an `admin` key of `default`),
    which may act in any namespace."""
    ns = getattr(key, "namespace", DEFAULT) or DEFAULT
    if ns == DEFAULT and getattr(key, "scope", "") == "admin" and getattr(key, "owner", None) is None:
        return None
    return ns


def key_may(key: Any, function: str | None) -> bool:
    """May `key` reach `function` (a held name) at all, namespace-wise?"""
    if function is None:
        return True
    ns = key_namespace(key)
    return ns is None or namespace_of(function) == ns


def for_key(key: Any, requested: str | None) -> str | None:
    """The namespace a request of `key` acts in, given the one it asks for (None: its own / `default`); None
    when the key may not act there — the caller answers exactly as for a namespace that does not exist."""
    ns = key_namespace(key)
    if ns is None:
        return requested or DEFAULT
    if requested and requested != ns:
        return None
    return ns


# -- quotas ------------------------------------------------------------------------------------------------

class Quotas(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A namespace's limits; None: unlimited."""

    functions: int | None = None  # deployed functions
    instances: int | None = None  # live instances (starting, idle or busy) of all its functions
    memory_mb: int | None = None  # configured memory of those instances, summed
    invocations_per_second: float | None = None  # sustained rate (a burst of one second's worth)
    async_backlog: int | None = None  # accepted async invocations not yet finished
    storage_bytes: int | None = None  # bytes its buckets hold (every version)
    db_items: int | None = None  # items its database tables hold
    db_bytes: int | None = None  # bytes of those items (DynamoDB's item size)


QUOTA_NAMES = tuple(Quotas.__struct_fields__)
QUOTA_RANGES: dict[str, tuple[float, float]] = {
    "functions": (0, 1_000_000), "instances": (0, 1_000_000), "memory_mb": (0, 1 << 30),
    "invocations_per_second": (0, 1e9), "async_backlog": (0, 1 << 40), "storage_bytes": (0, 1 << 62),
    "db_items": (0, 1 << 50), "db_bytes": (0, 1 << 62),
}
STORED = ("storage_bytes", "db_items", "db_bytes")  # quotas of what a namespace holds (no Retry-After)


def parse_quotas(raw: Any, base: Quotas | None = None) -> Quotas:
    """Quotas from a JSON object (`{"memory_mb": 2048, "functions": null}`: null lifts one), over `base`."""
    if not isinstance(raw, dict):
        raise NamespaceError("quotas must be a JSON object", "invalid_quota")
    out = msgspec.structs.asdict(base or Quotas())
    for k, v in raw.items():
        if k not in QUOTA_RANGES:
            raise NamespaceError(f"unknown quota {k!r}: use one of {', '.join(QUOTA_NAMES)}", "invalid_quota")
        if v is not None:
            lo, hi = QUOTA_RANGES[k]
            if isinstance(v, bool) or not isinstance(v, int | float) or not (lo <= v <= hi) or (
                    k != "invocations_per_second" and int(v) != v):
                kind = "a number" if k == "invocations_per_second" else "an integer"
                raise NamespaceError(f"quota {k}={v!r} is out of range: {kind} in {lo:g}..{hi:g}, or null "
                                     "for no limit", "invalid_quota")
            v = float(v) if k == "invocations_per_second" else int(v)
        out[k] = v
    return Quotas(**out)


def parse_quota_args(items: list[str]) -> dict[str, Any]:
    """`NAME=VALUE` pairs of the CLI (`memory_mb=2048`, `functions=none`) as the API's JSON object."""
    raw: dict[str, Any] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise NamespaceError(f"quota {item!r}: use NAME=VALUE (e.g. memory_mb=2048, functions=none)",
                                 "invalid_quota")
        k = k.strip().replace("-", "_")
        v = v.strip()
        if v.lower() in ("none", "null", "unlimited", ""):
            raw[k] = None
            continue
        m = SIZE_RE.match(v) if k.endswith("_bytes") else None
        try:
            if m is not None:  # (sizes: 10MB, 1.5GiB)
                raw[k] = int(float(m.group(1)) * SIZE_UNITS[m.group(2).lower()])
            else:
                raw[k] = float(v) if "." in v else int(v)
        except ValueError:
            raise NamespaceError(f"quota {k}={v!r} is not a number" + (
                " (sizes may end in kB, MB, GB, TB, KiB, MiB, GiB, TiB)" if k.endswith("_bytes") else ""),
                "invalid_quota") from None
    return raw


SIZE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([kmgt]i?b)$", re.IGNORECASE)
SIZE_UNITS = {"kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
              "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def over(quota: str, limit: float, used: float, adding: float = 1) -> bool:
    """Would `adding` more take `used` past `limit`?"""
    return used + adding > limit
