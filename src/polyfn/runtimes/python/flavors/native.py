"""polyfn's own convention: `def handler(event, context)`.

`event` is the parsed JSON payload for events and the invoke API. For HTTP calls it is an `HttpRequest`: a
dict of the request's parameters (query string merged with a JSON-object or form body, the body winning,
as OpenWhisk web actions do), so `event.get("name")` reads the same whether the caller used
`?name=ada`, a JSON POST or `polyfn invoke --data '{"name": "ada"}'`; the raw request is on its
attributes (`method`, `path`, `headers`, `query`, `body`, `text`, `json()`).
Return values: a `(body, status[, headers])` tuple, a dict with `statusCode` (API-gateway style), or any
value (str → text, bytes → binary, else JSON).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, parse_qsl

from polyfn.protocol import Invoke
from polyfn.runtimes.python.flavors import base

FORM_CT = "application/x-www-form-urlencoded"


def request_params(query_string: str, content_type: str, body: bytes) -> dict[str, Any]:
    """The parameters of an HTTP request: the query string (last value wins) updated with the body's
    fields when the body is a JSON object (content type `*json*`, or none and it parses) or a urlencoded
    form. Any other body (text, binary, a JSON list or scalar, malformed or 1,000-deep JSON) adds nothing:
    the handler reads it from `body`/`text`/`json()`."""
    params: dict[str, Any] = dict(parse_qsl(query_string, keep_blank_values=True)) if query_string else {}
    if not body:
        return params
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct == FORM_CT:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif (not ct or "json" in ct) and body.lstrip()[:1] == b"{":
        try:
            fields = json.loads(body)
        except (ValueError, RecursionError):  # malformed, or nested deeper than Python parses
            return params
        if isinstance(fields, dict):
            params.update(fields)
    return params


class HttpRequest(dict):
    """An HTTP request as a native handler sees it: a dict of its parameters (see `request_params`), with
    the raw request on attributes. Being a dict, it prints, compares and serialises as its parameters.
    `headers` (a case-insensitive `Headers`) is made when first read: most handlers never read it."""

    __slots__ = ("_headers", "_query", "_raw", "body", "method", "path", "query_string")

    def __init__(self, inv: Invoke):
        query, body = inv.query, inv.body
        if query or body:
            super().__init__(request_params(query, inv.content_type or "", body))
        self.method = inv.method
        self.path = inv.path or "/"
        self.query_string = query
        self._raw = inv.headers
        self._headers: base.Headers | None = None
        self.body = body
        self._query: dict[str, str] | None = None

    @property
    def headers(self) -> base.Headers:
        headers = self._headers
        if headers is None:
            headers = self._headers = base.Headers(self._raw)
        return headers

    @headers.setter
    def headers(self, value: base.Headers) -> None:
        self._headers = value

    @property
    def query(self) -> dict[str, str]:
        """Query parameters only, last value wins (all values in `query_all`)."""
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


def http_response(value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """The shapes a handler may return for an HTTP call."""
    if type(value) is str:  # (the commonest answer, first)
        return 200, base.TEXT_CT, value.encode()
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
