"""OpenFaaS python3-http template: `def handle(event, context)`.

`event.body` (bytes), `.headers`, `.method`, `.query`, `.path`; `context.hostname`. The return value is
`{"statusCode", "body", "headers"}` (a dict body becomes JSON, other bodies `str()`), or None for an empty
200 — the template's `format_response`, rule for rule.
"""

from __future__ import annotations

import json
import os
from typing import Any

from polyfn.protocol import Invoke
from polyfn.runtimes.python.flavors import base


class Event:
    __slots__ = ("body", "headers", "method", "path", "query")

    def __init__(self, inv: Invoke):
        self.body = inv.body
        self.headers = base.Headers(inv.headers)
        self.method = inv.method or "POST"
        self.query = {k: v[-1] for k, v in base.query_params(inv.query).items()}
        self.path = inv.path or "/"


class Context:
    __slots__ = ("hostname",)

    def __init__(self, hostname: str):
        self.hostname = hostname


class Adapter(base.Adapter):
    convention = "OpenFaaS python3-http `def handle(event, context)`"

    def __init__(self, handler: Any, meta: base.FunctionMeta):
        super().__init__(handler, meta)
        self.context = Context(os.environ.get("HOSTNAME", "localhost"))

    def check(self) -> None:
        base.check_arity(self.handler, 2, self.convention)

    def args(self, inv: Invoke) -> tuple[Any, ...]:
        return Event(inv), self.context

    def respond(self, inv: Invoke, value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if value is None:
            return 200, base.TEXT_CT, b""
        if not isinstance(value, dict):  # the template would fail; be useful instead
            hdrs, body = base.encode_value(value)
            return 200, hdrs, body
        status = int(value.get("statusCode", 200))
        headers = value.get("headers") or {}
        hdrs = [(str(k), str(v)) for k, v in (headers.items() if isinstance(headers, dict) else headers)]
        ct = next((v for k, v in hdrs if k.lower() == "content-type"), "")
        b = value.get("body")
        if ct == "application/octet-stream" and isinstance(b, bytes | bytearray):
            body = bytes(b)
        elif "body" not in value:
            body = b""
        elif isinstance(b, dict):
            body = json.dumps(b).encode()
            if not ct:
                hdrs.append(("content-type", "application/json"))
        elif isinstance(b, bytes | bytearray):
            body = bytes(b)
        else:
            body = str(b).encode()
        if not any(k.lower() == "content-type" for k, _ in hdrs):
            hdrs += base.TEXT_CT
        return status, hdrs, body
