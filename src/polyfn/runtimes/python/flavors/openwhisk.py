"""Apache OpenWhisk (Python): `def main(params)` returning a dict.

- Invocations: `params` is the JSON payload (an object). Web actions (HTTP): query parameters and a JSON
  object body are merged into `params`, plus `__ow_method` (lower case), `__ow_headers`, `__ow_path`,
  `__ow_query` and `__ow_body` (the body when it is not a JSON object; base64 when binary).
- Results: a dict. For HTTP, a result with `statusCode`/`headers`/`body` is the response (body base64
  decoded for non-text content types); otherwise the dict is the JSON body (204 when empty).
- `{"error": ...}` in the result marks an application error: the result is the body, with 400 for web
  actions (HTTP) and 502 for invocations (as a blocking OpenWhisk invoke). Activation facts are in `__OW_*` environment variables per invocation.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from polyfn.protocol import Invoke
from polyfn.runtimes.python.flavors import base

NAMESPACE = "guest"


class ApplicationError(Exception):
    def __init__(self, result: dict[str, Any]):
        super().__init__(str(result.get("error")))
        self.result = result


class Adapter(base.Adapter):
    convention = "OpenWhisk `def main(params)`"

    def __init__(self, handler: Any, meta: base.FunctionMeta):
        super().__init__(handler, meta)
        self.action = f"/{NAMESPACE}/{meta.name}"
        self.env = os.environ
        self.env.setdefault("__OW_NAMESPACE", NAMESPACE)
        self.env.setdefault("__OW_ACTION_NAME", self.action)
        self.env.setdefault("__OW_API_HOST", "http://127.0.0.1:8080")
        self.env.setdefault("__OW_ACTION_VERSION", f"0.0.{meta.revision}")

    def check(self) -> None:
        base.check_arity(self.handler, 1, self.convention)

    def args(self, inv: Invoke) -> tuple[Any, ...]:
        env = self.env
        env["__OW_ACTIVATION_ID"] = inv.activation_id
        env["__OW_DEADLINE"] = str(int(inv.deadline * 1000))
        env["__OW_TRANSACTION_ID"] = inv.trace_id or inv.activation_id
        if inv.kind == "http":
            return (self._web_params(inv),)
        if inv.kind == "cloudevent":
            return (base.cloudevent(inv),)
        value = base.parse_event_payload(inv)
        if not isinstance(value, dict):
            value = {"payload": value if not isinstance(value, bytes) else base64.b64encode(value).decode()}
        return (value,)

    def _web_params(self, inv: Invoke) -> dict[str, Any]:
        params: dict[str, Any] = {k: v[-1] for k, v in base.query_params(inv.query).items()}
        body = inv.body
        merged = False
        if body and "json" in (inv.content_type or ""):
            try:
                obj = json.loads(body)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                params.update(obj)
                merged = True
        params.update({"__ow_method": (inv.method or "post").lower(), "__ow_headers": dict(base.Headers(inv.headers)),
                       "__ow_path": "" if inv.path in ("", "/") else inv.path, "__ow_query": inv.query})
        if body and not merged:
            text, _b64 = base.body_string(inv.content_type, body)
            params["__ow_body"] = text
        return params

    def respond(self, inv: Invoke, value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if isinstance(value, dict) and "error" in value:
            raise ApplicationError(value)
        if value is None:
            value = {}
        if inv.kind == "http" and isinstance(value, dict) and value.keys() & {"statusCode", "body", "headers"} \
                and value.keys() <= {"statusCode", "body", "headers"}:
            hdrs = [(str(k), str(v)) for k, v in (value.get("headers") or {}).items()]
            ct = next((v for k, v in hdrs if k.lower() == "content-type"), "")
            b = value.get("body")
            if isinstance(b, dict | list):
                body = json.dumps(b).encode()
                ct = ct or "application/json"
            elif isinstance(b, str) and ct and not base.is_text(ct, b"x"):
                body = base64.b64decode(b)
            else:
                body = base.decode_body(b, False)
            if not any(k.lower() == "content-type" for k, _ in hdrs):
                hdrs.append(("content-type", ct or "text/html"))
            status = int(value.get("statusCode") or (200 if body else 204))
            return status, hdrs, body
        if not isinstance(value, dict):
            raise TypeError(f"the action returned a {type(value).__name__}; OpenWhisk actions must return a dict")
        if inv.kind == "http" and not value:
            return 204, [], b""
        return 200, base.JSON_CT, json.dumps(value, default=str).encode()

    def fail(self, inv: Invoke, exc: BaseException) -> tuple[int, list[tuple[str, str]], bytes, dict[str, Any]]:
        if isinstance(exc, ApplicationError):  # web actions answer 400, blocking invokes 502 (as OpenWhisk)
            body = json.dumps(exc.result, default=str).encode()
            err = {"errorType": "ApplicationError", "errorMessage": str(exc), "stackTrace": []}
            return (400 if inv.kind == "http" else 502), base.JSON_CT, body, err
        err = base.error_payload(exc)
        body = json.dumps({"error": f"An error has occurred: {err['errorType']}: {err['errorMessage']}",
                           **err}).encode()
        return 502, base.JSON_CT, body, err
