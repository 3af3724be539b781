"""Alibaba Cloud Function Compute (Python).

- Event handler `def handler(event, context)`: `event` is **bytes** (the raw payload; the OSS or timer
  event JSON for triggers; for HTTP calls the FC 3.0 HTTP-trigger event JSON). The return value is the
  answer: str/bytes as is, anything else JSON; for HTTP calls a `{statusCode, headers, body,
  isBase64Encoded}` dict maps to the response (FC 3.0 HTTP trigger).
- HTTP handler (FC 2.0) `def handler(environ, start_response)`: a WSGI application; `environ['fc.context']`
  and `environ['fc.request_uri']` are set. Detected by those two parameter names.
- `context`: `request_id`, `credentials`, `function` (name, handler, memory, timeout, initializer),
  `service`, `region`, `account_id`, `tracing`, `getLogger()`.
- Errors: `{errorMessage, errorType, stackTrace}`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time
import urllib.parse
from typing import Any

from polyfn.events.shapes import shaper
from polyfn.protocol import Invoke
from polyfn.runtimes.python.flavors import base

REGION_DEFAULT = "cn-hangzhou"
ACCOUNT = "000000000000"


class Credentials:
    __slots__ = ("access_key_id", "access_key_secret", "security_token")

    def __init__(self, access_key_id: str, access_key_secret: str, security_token: str):
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.security_token = security_token


class FunctionInfo:
    __slots__ = ("handler", "initialization_timeout", "initializer", "memory", "name", "timeout")

    def __init__(self, name: str, handler: str, memory: int, timeout: int):
        self.name = name
        self.handler = handler
        self.memory = memory
        self.timeout = timeout
        self.initializer = None
        self.initialization_timeout = None


class ServiceMeta:
    __slots__ = ("log_project", "log_store", "name", "qualifier", "version_id")

    def __init__(self, name: str, qualifier: str, version_id: str):
        self.name = name
        self.log_project = ""
        self.log_store = ""
        self.qualifier = qualifier
        self.version_id = version_id


class Tracing:
    __slots__ = ("jaeger_endpoint", "openTracingSpanBaggages", "openTracingSpanContext")

    def __init__(self, span: str):
        self.openTracingSpanContext = span
        self.openTracingSpanBaggages: dict[str, str] = {}
        self.jaeger_endpoint = ""


_gcp: Any = None


def warm() -> Any:
    """The gcp flavor's module (its WSGI environ serves aliyun's WSGI handlers), imported once: called
    while polyfn's modules can still be imported by name (flavors.module_for)."""
    global _gcp
    if _gcp is None:
        import importlib

        _gcp = importlib.import_module("polyfn.runtimes.python.flavors.gcp")
    return _gcp


_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("fc_request_id", default="")


class _FCFormatter(logging.Formatter):
    """FC's log line: `<UTC time> <request id> [LEVEL] message`."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        return f"{t} {_request_id.get()} [{record.levelname}] {record.getMessage()}"


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stdout` is now (the instance captures it per invocation)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _fc_logger() -> logging.Logger:
    logger = logging.getLogger("fc.function")
    if not logger.handlers:
        logger.propagate = False
        logger.setLevel(logging.INFO)
        h = _StdoutHandler()
        h.setFormatter(_FCFormatter())
        logger.addHandler(h)
    return logger


class FCContext:
    """The `context` argument (as `fc_runtime`'s FCContext)."""

    __slots__ = ("account_id", "credentials", "function", "region", "request_id", "service", "tracing")

    def __init__(self, adapter: Adapter, inv: Invoke):
        self.request_id = inv.activation_id
        self.credentials = adapter.credentials
        self.function = adapter.function
        self.service = adapter.service
        self.region = adapter.region
        self.account_id = ACCOUNT
        self.tracing = Tracing(inv.trace_id)
        _request_id.set(inv.activation_id)

    def getLogger(self) -> logging.Logger:
        """One logger for the process (a logger per request would never be freed); lines carry the
        current request id."""
        return _fc_logger()


def http_event(inv: Invoke) -> dict[str, Any]:
    """FC 3.0 HTTP trigger event."""
    headers = dict(base.Headers(inv.headers))
    q = {k: v[-1] for k, v in base.query_params(inv.query).items()}
    body, b64 = base.body_string(inv.content_type, inv.body)
    now = time.time()
    return {
        "version": "v1", "rawPath": inv.path or "/", "body": body, "isBase64Encoded": b64, "headers": headers,
        "queryParameters": q,
        "requestContext": {"accountId": ACCOUNT, "domainName": headers.get("host", "localhost"),
                           "domainPrefix": headers.get("host", "localhost").split(".")[0],
                           "http": {"method": inv.method, "path": inv.path or "/", "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent", "")},
                           "requestId": inv.activation_id,
                           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                           "timeEpoch": str(int(now * 1000))},
    }


class Adapter(base.Adapter):
    convention = "Alibaba FC `def handler(event, context)` or WSGI `def handler(environ, start_response)`"

    def __init__(self, handler: Any, meta: base.FunctionMeta):
        super().__init__(handler, meta)
        self.wsgi = base.first_param_names(handler)[:2] == ["environ", "start_response"]
        self.region = meta.env.get("ALIBABA_CLOUD_REGION", meta.env.get("FC_REGION", REGION_DEFAULT))
        self.credentials = Credentials(meta.env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", ""),
                                       meta.env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ""),
                                       meta.env.get("ALIBABA_CLOUD_SECURITY_TOKEN", ""))
        self.function = FunctionInfo(meta.name, meta.handler, meta.memory_mb, int(meta.timeout))
        self.service = ServiceMeta(meta.env.get("FC_SERVICE_NAME", "polyfn"), "LATEST", str(meta.revision))
        self.shape = shaper("aliyun")
        for k, v in {"FC_FUNCTION_NAME": meta.name, "FC_FUNCTION_HANDLER": meta.handler,
                     "FC_FUNCTION_MEMORY_SIZE": str(meta.memory_mb), "FC_REGION": self.region,
                     "FC_ACCOUNT_ID": ACCOUNT, "FC_SERVICE_NAME": self.service.name,
                     "FC_RUNTIME": "python3.11", "FC_FUNC_CODE_PATH": os.getcwd()}.items():
            os.environ.setdefault(k, v)
        if self.wsgi:
            self.user = handler
            self.is_async = False
            self.handler = self._wsgi

    def check(self) -> None:
        base.check_arity(self.handler, 2, self.convention)

    def args(self, inv: Invoke) -> tuple[Any, ...]:
        if self.wsgi:
            return (inv,)
        kind = inv.kind
        if kind == "http":
            event = json.dumps(http_event(inv)).encode()
        elif kind == "cloudevent":
            shaped = self.shape(base.cloudevent(inv))
            event = json.dumps(shaped).encode()
        else:
            event = inv.body
        return event, FCContext(self, inv)

    def _wsgi(self, inv: Invoke) -> tuple[int, list[tuple[str, str]], bytes]:
        environ = warm().wsgi_environ(inv)
        environ["fc.context"] = FCContext(self, inv)
        # the request URI as sent: the path percent-encoded again (a URI is ASCII)
        uri = urllib.parse.quote(inv.path or "/", safe="/!$&'()*+,;=:@-._~")
        environ["fc.request_uri"] = uri + (f"?{inv.query}" if inv.query else "")
        status_headers: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status_headers[:] = [status, headers]
            return lambda _data: None

        chunks = self.user(environ, start_response)
        try:
            body = b"".join(c if isinstance(c, bytes) else str(c).encode() for c in chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        if not status_headers:
            raise RuntimeError("the WSGI handler returned without calling start_response")
        return int(str(status_headers[0]).split()[0]), [(str(k), str(v)) for k, v in status_headers[1]], body

    def respond(self, inv: Invoke, value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if self.wsgi:
            return value  # type: ignore[no-any-return]
        if inv.kind == "http" and isinstance(value, dict) and "statusCode" in value:
            hdrs = [(str(k), str(v)) for k, v in (value.get("headers") or {}).items()]
            body = base.decode_body(value.get("body"), bool(value.get("isBase64Encoded")))
            if not any(k.lower() == "content-type" for k, _ in hdrs):
                hdrs += base.TEXT_CT if isinstance(value.get("body"), str) else base.JSON_CT
            return int(value["statusCode"]), hdrs, body
        if value is None:
            return 200, base.TEXT_CT, b""
        hdrs, body = base.encode_value(value)
        return 200, hdrs, body

    def fail(self, inv: Invoke, exc: BaseException) -> tuple[int, list[tuple[str, str]], bytes, dict[str, Any]]:
        err = base.error_payload(exc)
        err = {"errorMessage": err["errorMessage"], "errorType": err["errorType"], "stackTrace": err["stackTrace"]}
        return 500, base.JSON_CT, json.dumps(err).encode(), err
