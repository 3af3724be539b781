"""AWS Lambda: `def handler(event, context)` with Lambda's context object.

- Events (invoke API) arrive as parsed JSON; triggers' CloudEvents are shaped into S3, SQS, EventBridge
  and CloudWatch Logs events (`polyfn.events.shapes`).
- HTTP calls arrive as API Gateway proxy events: REST payload 1.0 by default, HTTP API payload 2.0 when
  the function's env sets `POLYFN_AWS_HTTP_PAYLOAD=2.0` (alias `AWS_LAMBDA_PAYLOAD_VERSION=2.0`, the
  Node.js runtime's name). A `{statusCode, headers, multiValueHeaders,
  cookies, body, isBase64Encoded}` result becomes the HTTP response; any other value is JSON with 200
  (payload 2.0's rule, applied to 1.0 too, where API Gateway would answer 502).
- Errors: `{errorMessage, errorType, requestId, stackTrace}`; an unserialisable result is
  `Runtime.MarshalError`. `async def` handlers are awaited (a polyfn extension: Lambda's Python runtime
  rejects coroutines).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from polyfn.events.shapes import shaper
from polyfn.protocol import Invoke
from polyfn.runtimes.python.flavors import base

REGION_DEFAULT = "us-east-1"
ACCOUNT = "000000000000"  # the default namespace's account id; another's comes in POLYFN_ACCOUNT_ID (instances/specs.py)


class CognitoIdentity:
    """`context.identity`: empty, or a signed-in app user (polyfn.apps) as a Cognito identity (id = the user,
    pool = the app)."""

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity: dict[str, Any] | None = None) -> None:
        self.cognito_identity_id = identity["uid"] if identity else None
        self.cognito_identity_pool_id = identity["app"] if identity else None


_IDENTITY = CognitoIdentity()  # no signed-in user: one shared instance


class LambdaContext:
    """The `context` argument, attribute for attribute as `awslambdaric.lambda_context.LambdaContext`."""

    __slots__ = ("_deadline", "aws_request_id", "client_context", "function_name", "function_version",
                 "identity", "invoked_function_arn", "log_group_name", "log_stream_name", "memory_limit_in_mb",
                 "tenant_id")

    def __init__(self, adapter: Adapter, inv: Invoke):
        self.aws_request_id = inv.activation_id
        self.function_name = adapter.meta.name
        self.function_version = adapter.version
        self.invoked_function_arn = adapter.arn
        self.memory_limit_in_mb = adapter.memory
        self.log_group_name = adapter.log_group
        self.log_stream_name = adapter.log_stream
        self.identity = _IDENTITY if inv.identity is None else CognitoIdentity(inv.identity)
        self.client_context = None
        self.tenant_id = None
        self._deadline = inv.deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))

    def log(self, msg: str) -> None:
        print(msg, end="" if msg.endswith("\n") else "\n")

    def __repr__(self) -> str:
        return (f"LambdaContext([aws_request_id={self.aws_request_id},log_group_name={self.log_group_name},"
                f"log_stream_name={self.log_stream_name},function_name={self.function_name},"
                f"memory_limit_in_mb={self.memory_limit_in_mb},function_version={self.function_version},"
                f"invoked_function_arn={self.invoked_function_arn}])")


_time_cache: list[Any] = [-1, ""]


def _http_time(ts: float) -> str:
    """API Gateway's requestTime; formatted once per second (strftime is costly on the hot path)."""
    sec = int(ts)
    if _time_cache[0] != sec:
        _time_cache[0] = sec
        _time_cache[1] = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(sec))
    return _time_cache[1]


def apigw_v1(inv: Invoke, request_id: str, account: str = ACCOUNT) -> dict[str, Any]:
    """API Gateway REST API proxy event (payload format 1.0)."""
    headers: dict[str, str] = base.CaseInsensitiveDict()
    multi: dict[str, list[str]] = base.CaseInsensitiveDict()
    for k, v in inv.headers:
        headers[k] = v
        multi.setdefault(k, []).append(v)
    q = base.query_params(inv.query)
    body, b64 = base.body_string(inv.content_type, inv.body)
    path = inv.path or "/"
    now = time.time()
    proxy = path.lstrip("/")
    return {
        "resource": "/{proxy+}" if proxy else "/",
        "path": path,
        "httpMethod": inv.method,
        "headers": headers or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": {k: v[-1] for k, v in q.items()} or None,
        "multiValueQueryStringParameters": q or None,
        "pathParameters": {"proxy": proxy} if proxy else None,
        "stageVariables": None,
        "requestContext": {
            "accountId": account, "resourceId": "polyfn", "stage": "$default", "requestId": request_id,
            "identity": {"sourceIp": _source_ip(headers), "userAgent": headers.get("user-agent", ""),
                         "cognitoIdentityPoolId": None, "accountId": None, "cognitoIdentityId": None,
                         "caller": None, "apiKey": None, "accessKey": None, "cognitoAuthenticationType": None,
                         "cognitoAuthenticationProvider": None, "userArn": None, "user": None},
            "resourcePath": "/{proxy+}" if proxy else "/", "httpMethod": inv.method, "apiId": "polyfn",
            "path": path, "protocol": "HTTP/1.1", "domainName": headers.get("host", "localhost"),
            "requestTime": _http_time(now), "requestTimeEpoch": int(now * 1000),
            **({"authorizer": {"claims": inv.identity.get("claims") or {}, "principalId": inv.identity["uid"]}}
               if inv.identity else {}),
        },
        "body": body if inv.body else None,
        "isBase64Encoded": b64,
    }


def apigw_v2(inv: Invoke, request_id: str, account: str = ACCOUNT) -> dict[str, Any]:
    """HTTP API / Function URL event (payload format 2.0)."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for k, v in inv.headers:
        k = k.lower()
        if k == "cookie":
            cookies.extend(c.strip() for c in v.split(";") if c.strip())
            continue
        headers[k] = headers[k] + "," + v if k in headers else v
    q = base.query_params(inv.query)
    body, b64 = base.body_string(inv.content_type, inv.body)
    path = inv.path or "/"
    host = headers.get("host", "localhost")
    now = time.time()
    ev: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": inv.query,
        "headers": headers,
        "requestContext": {
            "accountId": account, "apiId": "polyfn", "domainName": host, "domainPrefix": host.split(".")[0],
            "http": {"method": inv.method, "path": path, "protocol": "HTTP/1.1", "sourceIp": _source_ip(headers),
                     "userAgent": headers.get("user-agent", "")},
            "requestId": request_id, "routeKey": "$default", "stage": "$default",
            "time": _http_time(now), "timeEpoch": int(now * 1000),
            **({"authorizer": {"jwt": {"claims": inv.identity.get("claims") or {}, "scopes": None}}}
               if inv.identity else {}),
        },
        "isBase64Encoded": b64,
    }
    if cookies:
        ev["cookies"] = cookies
    if q:
        ev["queryStringParameters"] = {k: ",".join(v) for k, v in q.items()}
    if inv.body:
        ev["body"] = body
    return ev


def _source_ip(headers: dict[str, str]) -> str:
    fwd = headers.get("x-forwarded-for") or headers.get("X-Forwarded-For")
    return fwd.split(",")[0].strip() if fwd else "127.0.0.1"


def proxy_response(value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A Lambda proxy-integration result → HTTP. Anything without `statusCode` is a JSON 200."""
    if not (isinstance(value, dict) and "statusCode" in value):
        if isinstance(value, str):
            return 200, base.TEXT_CT, value.encode()
        return 200, base.JSON_CT, _marshal(value)
    hdrs: list[tuple[str, str]] = []
    for k, v in (value.get("headers") or {}).items():
        hdrs.append((str(k), str(v)))
    for k, vs in (value.get("multiValueHeaders") or {}).items():
        hdrs = [h for h in hdrs if h[0].lower() != str(k).lower()]
        hdrs.extend((str(k), str(v)) for v in (vs if isinstance(vs, list) else [vs]))
    for cookie in value.get("cookies") or []:
        hdrs.append(("set-cookie", str(cookie)))
    if not any(k.lower() == "content-type" for k, _ in hdrs):
        hdrs.append(("content-type", "application/json"))
    body = base.decode_body(value.get("body"), bool(value.get("isBase64Encoded")))
    return int(value["statusCode"]), hdrs, body


class MarshalError(Exception):
    pass


def _marshal(value: Any) -> bytes:
    try:
        return json.dumps(value).encode()
    except (TypeError, ValueError) as e:
        raise MarshalError(f"Unable to marshal response: {e}") from None


class Adapter(base.Adapter):
    convention = "AWS Lambda `def handler(event, context)`"

    def __init__(self, handler: Any, meta: base.FunctionMeta):
        super().__init__(handler, meta)
        region = meta.env.get("AWS_REGION", REGION_DEFAULT)
        self.version = "$LATEST"
        self.account = meta.env.get("POLYFN_ACCOUNT_ID") or ACCOUNT  # (its namespace's: an account on AWS)
        self.arn = f"arn:aws:lambda:{region}:{self.account}:function:{meta.name}"
        self.memory = str(meta.memory_mb)
        self.log_group = f"/aws/lambda/{meta.name}"
        self.log_stream = f"{time.strftime('%Y/%m/%d')}/[{self.version}]{os.getpid():x}"
        payload = meta.env.get("POLYFN_AWS_HTTP_PAYLOAD") or meta.env.get("AWS_LAMBDA_PAYLOAD_VERSION", "1.0")
        self.v2 = payload in ("2", "2.0")
        self.shape = shaper("aws")
        for k, v in {
            "AWS_LAMBDA_FUNCTION_NAME": meta.name, "AWS_LAMBDA_FUNCTION_VERSION": self.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": self.memory, "AWS_LAMBDA_LOG_GROUP_NAME": self.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream, "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11", "LAMBDA_TASK_ROOT": os.getcwd(),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": f"{meta.timeout:g}",
        }.items():
            os.environ.setdefault(k, v)

    def check(self) -> None:
        base.check_arity(self.handler, 2, self.convention)

    def args(self, inv: Invoke) -> tuple[Any, ...]:
        kind = inv.kind
        if kind == "http":
            event: Any = (apigw_v2 if self.v2 else apigw_v1)(inv, inv.activation_id, self.account)
        elif kind == "cloudevent":
            event = self.shape(base.cloudevent(inv))
        else:
            event = base.parse_event_payload(inv)
        return event, LambdaContext(self, inv)

    def respond(self, inv: Invoke, value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if inv.kind == "http":
            return proxy_response(value)
        return 200, base.JSON_CT, _marshal(value)

    def fail(self, inv: Invoke, exc: BaseException) -> tuple[int, list[tuple[str, str]], bytes, dict[str, Any]]:
        err = base.error_payload(exc)
        if isinstance(exc, MarshalError):
            err = {"errorType": "Runtime.MarshalError", "errorMessage": str(exc), "stackTrace": []}
        err = {"errorMessage": err["errorMessage"], "errorType": err["errorType"], "requestId": inv.activation_id,
               "stackTrace": err["stackTrace"]}
        return 500, base.JSON_CT, json.dumps(err).encode(), err
