"""What a call answers (`Outcome`), and the answers polyfn itself makes (`platform_error`): every ingress
serialises one of these at its edge."""

from __future__ import annotations

import json
from typing import Any

from polyfn.streaming import ResponseStream

JSON_HEADERS = [(b"content-type", b"application/json")]


class Outcome:
    """What a call answers: status, headers (ASGI byte pairs), body, the activation's id and cold flag, and —
    when the platform made the answer (not the function) — `error`, the typed error (`code`, `message`, …)
    that the body serialises: readers take it from here instead of parsing the body back. A streamed response
    (only for a `Call` with `stream` set) has an empty body and its chunks in `stream` (polyfn.streaming)."""

    __slots__ = ("activation_id", "body", "cold", "error", "headers", "status", "stream")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                 activation_id: str = "", cold: bool = False, error: dict[str, Any] | None = None,
                 stream: ResponseStream | None = None):
        self.status = status
        self.headers = headers
        self.body = body
        self.activation_id = activation_id
        self.cold = cold
        self.error = error
        self.stream = stream


def platform_error(status: int, code: str, message: str, extra: dict[str, Any] | None = None,
                   headers: list[tuple[bytes, bytes]] | None = None, activation_id: str = "") -> Outcome:
    """An error produced by polyfn itself (not by the function), marked with `X-Polyfn-Error`."""
    err: dict[str, Any] = {"code": code, "message": message}
    if extra:
        err.update(extra)
    hdrs = [*JSON_HEADERS, (b"x-polyfn-error", code.encode())]
    if activation_id:
        hdrs.append((b"x-polyfn-activation-id", activation_id.encode()))
    if headers:
        hdrs.extend(headers)
    return Outcome(status, hdrs, json.dumps({"error": err}).encode(), activation_id, error=err)
