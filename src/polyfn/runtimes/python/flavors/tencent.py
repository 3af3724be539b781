"""Tencent Cloud SCF (Python): `def main_handler(event, context)` where **`context` is a dict**.

- Events arrive as parsed JSON; HTTP calls as the API Gateway event (`requestContext`, `headers`, `body`,
  `queryString`, `httpMethod`, `path`, ...); triggers as COS `Records`, the timer event or CMQ `Records`.
- HTTP answer: a `{isBase64Encoded, statusCode, headers, body}` dict (API Gateway integration response)
  maps to the response; any other value is JSON with 200.
- Errors: `{errorCode: -1, errorMessage, errorType, stackTrace, requestId}`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from polyfn.events.shapes import shaper
from polyfn.protocol import Invoke
from polyfn.runtimes.python.flavors import base

REGION_DEFAULT = "ap-guangzhou"
APPID = "1250000000"


def apigw_event(inv: Invoke) -> dict[str, Any]:
    headers = base.CaseInsensitiveDict(base.Headers(inv.headers))
    q = {k: v[-1] for k, v in base.query_params(inv.query).items()}
    body, _b64 = base.body_string(inv.content_type, inv.body)
    path = inv.path or "/"
    return {
        "requestContext": {"serviceId": "service-polyfn", "path": path, "httpMethod": inv.method,
                           "requestId": inv.activation_id, "identity": {}, "sourceIp": "127.0.0.1",
                           "stage": "release"},
        "headers": headers,
        "body": body,
        "isBase64Encoded": _b64,
        "pathParameters": {},
        "queryStringParameters": q,
        "headerParameters": {},
        "stageVariables": {"stage": "release"},
        "path": path,
        "queryString": q,
        "httpMethod": inv.method,
    }


class Adapter(base.Adapter):
    convention = "Tencent SCF `def main_handler(event, context)`"

    def __init__(self, handler: Any, meta: base.FunctionMeta):
        super().__init__(handler, meta)
        region = meta.env.get("TENCENTCLOUD_REGION", REGION_DEFAULT)
        self.static = {
            "memory_limit_in_mb": meta.memory_mb, "time_limit_in_ms": int(meta.timeout * 1000),
            "environment": json.dumps({k: v for k, v in meta.env.items()}), "environ": ";".join(
                f"{k}={v}" for k, v in meta.env.items()),
            "function_version": "$LATEST", "function_name": meta.name, "namespace": "default",
            "tencentcloud_region": region, "tencentcloud_appid": APPID, "tencentcloud_uin": APPID,
        }
        self.shape = shaper("tencent")
        for k, v in {"SCF_FUNCTIONNAME": meta.name, "SCF_FUNCTIONVERSION": "$LATEST", "SCF_NAMESPACE": "default",
                     "SCF_MEMORYSIZE": str(meta.memory_mb), "SCF_TIMEOUT": f"{meta.timeout:g}",
                     "TENCENTCLOUD_REGION": region, "TENCENTCLOUD_APPID": APPID,
                     "SCF_RUNTIME": "Python3.11", "SCF_CODE_PATH": os.getcwd()}.items():
            os.environ.setdefault(k, v)

    def check(self) -> None:
        base.check_arity(self.handler, 2, self.convention)

    def args(self, inv: Invoke) -> tuple[Any, ...]:
        kind = inv.kind
        if kind == "http":
            event: Any = apigw_event(inv)
        elif kind == "cloudevent":
            event = self.shape(base.cloudevent(inv))
        else:
            event = base.parse_event_payload(inv)
        ctx = dict(self.static)
        ctx["request_id"] = inv.activation_id
        ctx["time_limit_in_ms"] = max(0, int((inv.deadline - time.time()) * 1000))
        return event, ctx

    def respond(self, inv: Invoke, value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if inv.kind == "http" and isinstance(value, dict) and "statusCode" in value:
            hdrs = [(str(k), str(v)) for k, v in (value.get("headers") or {}).items()]
            body = base.decode_body(value.get("body"), bool(value.get("isBase64Encoded")))
            if not any(k.lower() == "content-type" for k, _ in hdrs):
                hdrs += base.JSON_CT
            return int(value["statusCode"]), hdrs, body
        if inv.kind == "http" and isinstance(value, str):
            return 200, base.TEXT_CT, value.encode()
        if isinstance(value, bytes | bytearray):
            return 200, base.BINARY_CT, bytes(value)
        return 200, base.JSON_CT, json.dumps(value, default=str).encode()

    def fail(self, inv: Invoke, exc: BaseException) -> tuple[int, list[tuple[str, str]], bytes, dict[str, Any]]:
        err = base.error_payload(exc)
        err = {"errorCode": -1, "errorMessage": err["errorMessage"], "errorType": err["errorType"],
               "stackTrace": err["stackTrace"], "requestId": inv.activation_id}
        return 500, base.JSON_CT, json.dumps(err).encode(), err
