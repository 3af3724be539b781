"""CORS per function (`spec.cors`): preflight answers and response headers, for browsers and mini-programs.

    {"origins": ["https://app.example.com"] | ["*"], "methods": ["GET", "POST"], "headers": ["content-type"],
     "max_age": 600, "credentials": false, "expose_headers": []}
"""

from __future__ import annotations

from typing import Any

from polyfn.invoker import Outcome

DEFAULT_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"


def _origin(cfg: dict[str, Any], headers: list[tuple[str, str]]) -> str | None:
    origin = next((v for k, v in headers if k == "origin"), None)
    if origin is None:
        return None
    allowed = cfg.get("origins") or []
    if "*" in allowed:
        return origin if cfg.get("credentials") else "*"
    return origin if origin in allowed else None


def response_headers(cfg: dict[str, Any], headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    origin = _origin(cfg, headers)
    if origin is None:
        return []
    out = [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin")]
    if cfg.get("credentials"):
        out.append((b"access-control-allow-credentials", b"true"))
    if cfg.get("expose_headers"):
        out.append((b"access-control-expose-headers", ", ".join(cfg["expose_headers"]).encode()))
    return out


def preflight(cfg: dict[str, Any], headers: list[tuple[str, str]]) -> Outcome | None:
    """The answer to an OPTIONS preflight, or None when it is not one (the function handles OPTIONS)."""
    if not any(k == "access-control-request-method" for k, _ in headers):
        return None
    hdrs = response_headers(cfg, headers)
    if hdrs:
        methods = ", ".join(cfg.get("methods") or []) or DEFAULT_METHODS
        req_headers = next((v for k, v in headers if k == "access-control-request-headers"), "")
        allow_headers = ", ".join(cfg.get("headers") or []) or req_headers
        hdrs += [(b"access-control-allow-methods", methods.encode()),
                 (b"access-control-max-age", str(int(cfg.get("max_age", 600))).encode())]
        if allow_headers:
            hdrs.append((b"access-control-allow-headers", allow_headers.encode()))
    return Outcome(204, hdrs, b"")
