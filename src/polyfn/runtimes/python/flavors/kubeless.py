"""Kubeless (Python): `def f(event, context)`.

`event = {"data", "event-id", "event-type", "event-time", "event-namespace", "extensions": {"request"}}`;
`data` is parsed JSON when the content type is JSON, else the raw bytes (Kubeless' python runtime reads
`bottle.request.body`). `context = {"function-name", "timeout", "runtime", "memory-limit"}`. The return
value is the body (dicts as JSON); an exception is a 500.
"""

from __future__ import annotations

import json
import time
from typing import Any

from polyfn.protocol import Invoke
from polyfn.runtimes.python.flavors import base


class Request:
    """`event['extensions']['request']`: the HTTP request (the parts of bottle's request people use)."""

    __slots__ = ("body", "headers", "method", "path", "query_string")

    def __init__(self, inv: Invoke):
        self.method = inv.method or "POST"
        self.path = inv.path or "/"
        self.query_string = inv.query
        self.headers = base.Headers(inv.headers)
        self.body = inv.body

    def get_header(self, name: str, default: Any = None) -> Any:
        return self.headers.get(name, default)

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in base.query_params(self.query_string).items()}

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Adapter(base.Adapter):
    convention = "Kubeless `def f(event, context)`"

    def __init__(self, handler: Any, meta: base.FunctionMeta):
        super().__init__(handler, meta)
        self.context = {"function-name": meta.handler.rpartition(".")[2], "timeout": f"{meta.timeout:g}",
                        "runtime": "python3.11", "memory-limit": f"{meta.memory_mb}Mi"}

    def check(self) -> None:
        base.check_arity(self.handler, 2, self.convention)

    def args(self, inv: Invoke) -> tuple[Any, ...]:
        hdrs = base.Headers(inv.headers)
        ct = inv.content_type or hdrs.get("content-type", "")
        if inv.kind == "cloudevent":
            ce = base.cloudevent(inv)
            data: Any = ce.get("data")
            event_id, event_type, event_time = ce.get("id"), ce.get("type"), ce.get("time")
        else:
            data = inv.body
            if "json" in ct and inv.body:
                try:
                    data = json.loads(inv.body)
                except ValueError:
                    pass
            event_id = hdrs.get("event-id") or inv.activation_id
            event_type = hdrs.get("event-type") or ct or "application/json"
            event_time = hdrs.get("event-time") or time.strftime("%Y-%m-%d %H:%M:%S.000000 +0000 UTC", time.gmtime())
        event = {"data": data, "event-id": event_id, "event-type": event_type, "event-time": event_time,
                 "event-namespace": hdrs.get("event-namespace") or "cli.kubeless.io",
                 "extensions": {"request": Request(inv)}}
        return event, self.context

    def respond(self, inv: Invoke, value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if value is None:
            return 200, base.TEXT_CT, b""
        if isinstance(value, bytes | bytearray):
            return 200, base.TEXT_CT, bytes(value)  # bottle sends bytes with its default text/html-ish type
        hdrs, body = base.encode_value(value)
        return 200, hdrs, body
