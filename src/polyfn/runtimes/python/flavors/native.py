"""polyfn's own convention: `def handler(event, context)`.

`event` is the parsed JSON payload for events and the invoke API, and an `HttpRequest` for HTTP calls.
Return values: a `(body, status[, headers])` tuple, a dict with `statusCode` (API-gateway style), or any
value (str → text, bytes → binary, else JSON).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from polyfn.protocol import Invoke
from polyfn.runtimes.python.flavors import base


class HttpRequest:
    """An HTTP request as a native handler sees it."""

    __slots__ = ("_query", "body", "headers", "method", "path", "query_string")

    def __init__(self, inv: Invoke):
        self.method = inv.method
        self.path = inv.path or "/"
        self.query_string = inv.query
        self.headers = base.Headers(inv.headers)
        self.body = inv.body
        self._query: dict[str, str] | None = None

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, last value wins (all values in `query_all`)."""
        if self._query is None:
            self._query = {k: v[-1] for k, v in parse_qs(self.query_string, keep_blank_values=True).items()}
        return self._query

    @property
    def query_all(self) -> dict[str, list[str]]:
        return parse_qs(self.query_string, keep_blank_values=True)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def __repr__(self) -> str:
        return f"<HttpRequest {self.method} {self.path}>"


def http_response(value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """The shapes a handler may return for an HTTP call."""
    if isinstance(value, tuple) and 2 <= len(value) <= 3 and isinstance(value[1], int):
        hdrs, body = base.encode_value(value[0])
        if len(value) == 3 and value[2]:
            extra = list(value[2].items())
            keys = {k.lower() for k, _ in extra}
            hdrs = [h for h in hdrs if h[0] not in keys] + extra
        return value[1], hdrs, body
    if isinstance(value, dict) and "statusCode" in value:
        body = value.get("body", "")
        hdrs, raw = base.encode_value(body) if body is not None else (base.TEXT_CT, b"")
        extra = [(str(k), str(v)) for k, v in (value.get("headers") or {}).items()]
        if extra:
            keys = {k.lower() for k, _ in extra}
            hdrs = [h for h in hdrs if h[0] not in keys] + extra
        return int(value["statusCode"]), hdrs, raw
    if value is None:
        return 204, [], b""
    hdrs, body = base.encode_value(value)
    return 200, hdrs, body


class Adapter(base.Adapter):
    convention = "native `def handler(event, context)`"

    def check(self) -> None:
        base.check_arity(self.handler, 2, self.convention)

    def args(self, inv: Invoke) -> tuple[Any, ...]:
        # HTTP calls get a request object; events (the invoke API) and CloudEvents from triggers arrive
        # as parsed JSON (a CloudEvent as its structured-mode dict: id, source, type, time, data, ...).
        event = HttpRequest(inv) if inv.kind == "http" else base.parse_event_payload(inv)
        return event, base.Context(inv, self.meta)

    def respond(self, inv: Invoke, value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if inv.kind == "http":
            return http_response(value)
        if isinstance(value, bytes | bytearray):
            return 200, base.BINARY_CT, bytes(value)
        return 200, base.JSON_CT, json.dumps(value, default=str).encode()
