"""Google Cloud Functions (Python): the functions-framework's conventions, on real Flask objects.

Signature types, as the functions-framework decides them: `FUNCTION_SIGNATURE_TYPE` in the function's env
wins; else the decorator's registration (`@functions_framework.http` / `@functions_framework.cloud_event`,
read from the framework's registry); else the arity: one argument is an HTTP function (the seed's plain
`def hello_http(request)`), two is a legacy background function `def f(data, context)`.

- HTTP: the handler gets a `flask.Request` inside a Flask request context (so `flask.request`,
  `flask.jsonify`, `flask.abort` work); its return value goes through `Flask.make_response` (str, bytes,
  dict/list → JSON, `(body, status, headers)` tuples, `Response` objects).
- CloudEvent: the handler gets a `cloudevents.http.CloudEvent`; polyfn storage/queue/timer events arrive as
  Google's types (`google.cloud.storage.object.v1.finalized`, Pub/Sub `messagePublished`). HTTP requests to
  a CloudEvent function are read as CloudEvents (binary or structured mode). The answer is `OK`.
- Errors: 500 with `X-Google-Status: crash` and polyfn's error JSON.
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import flask
import werkzeug.exceptions

from polyfn.events import gcp as gcp_events
from polyfn.protocol import Invoke
from polyfn.runtimes.python.flavors import base

HTTP, CLOUDEVENT, EVENT = "http", "cloudevent", "event"
CRASH = [("x-google-status", "crash")]


def wsgi_path(path: str) -> str:
    """PATH_INFO as WSGI (PEP 3333) wants it: the path's UTF-8 bytes as a latin-1 string. `inv.path` is already
    percent-decoded text; handing "/€" over as such made Flask (werkzeug decodes PATH_INFO with latin-1) fail
    on any character beyond latin-1, a 500."""
    return path.encode("utf-8", "surrogateescape").decode("latin-1")


def wsgi_environ(inv: Invoke, server_name: str = "localhost") -> dict[str, Any]:
    """A WSGI environ for an HTTP invocation (also used by the Aliyun WSGI handler)."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": inv.method or "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": wsgi_path(inv.path or "/"),
        "QUERY_STRING": inv.query,
        "SERVER_NAME": server_name,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(inv.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(inv.body)),
        "polyfn.identity": inv.identity,  # the caller polyfn verified (firebase_functions' on_call reads it)
    }
    for k, v in inv.headers:
        lk = k.lower()
        if lk == "content-type":
            env["CONTENT_TYPE"] = v
        elif lk == "content-length":
            continue
        else:
            key = "HTTP_" + lk.upper().replace("-", "_")
            env[key] = env[key] + "," + v if key in env else v
        if lk == "host":
            env["SERVER_NAME"] = v.split(":")[0]
    if "CONTENT_TYPE" not in env and inv.content_type:
        env["CONTENT_TYPE"] = inv.content_type
    return env


def _registered_type(handler: Any) -> str | None:
    try:
        from functions_framework import _function_registry as reg
    except ImportError:
        return None
    return reg.REGISTRY_MAP.get(getattr(handler, "__name__", ""))


class _App(flask.Flask):
    """The Flask app requests run in. No URL rules: skipping the URL adapter saves building and matching
    a map per request (`url_for` is unavailable, as it is for routes a function never registered)."""

    def create_url_adapter(self, request: Any) -> None:  # type: ignore[override]
        return None


HTML_CT = [("content-type", "text/html; charset=utf-8")]


class LegacyContext:
    """`context` of a background function (as `google.cloud.functions.context.Context`)."""

    __slots__ = ("event_id", "event_type", "resource", "timestamp")

    def __init__(self, event_id: str, timestamp: str, event_type: str, resource: Any):
        self.event_id = event_id
        self.timestamp = timestamp
        self.event_type = event_type
        self.resource = resource

    def __repr__(self) -> str:
        return (f"{{event_id: {self.event_id}, timestamp: {self.timestamp}, event_type: {self.event_type}, "
                f"resource: {self.resource}}}")


class Adapter(base.Adapter):
    convention = ("GCP `def fn(request)` / `@functions_framework.http`, `@functions_framework.cloud_event "
                  "def fn(cloud_event)` or background `def fn(data, context)`")

    def __init__(self, handler: Any, meta: base.FunctionMeta):
        self.user = handler
        self.app = _App("polyfn-gcp")
        self.app.config["PROPAGATE_EXCEPTIONS"] = True
        sig = meta.env.get("FUNCTION_SIGNATURE_TYPE") or _registered_type(handler)
        if sig is None:
            req, _mx = base.positional_arity(handler)
            sig = EVENT if req == 2 else HTTP
        if sig not in (HTTP, CLOUDEVENT, EVENT):
            raise base.HandlerError("Runtime.HandlerSignature",
                                    f"signature type {sig!r} is not supported: use http, cloudevent or event")
        self.signature = sig
        super().__init__(handler, meta)
        self.is_async = False  # the wrapper below is sync; async user functions are run to completion in it
        self.handler = {HTTP: self._http, CLOUDEVENT: self._cloudevent, EVENT: self._event}[sig]
        import os

        for k, v in {"FUNCTION_TARGET": meta.handler.rpartition(".")[2], "FUNCTION_SIGNATURE_TYPE": sig,
                     "K_SERVICE": meta.name, "K_REVISION": str(meta.revision), "PORT": "8080"}.items():
            os.environ.setdefault(k, v)

    def check(self) -> None:
        n = 2 if self.signature == EVENT else 1
        base.check_arity(self.user, n, self.convention)

    def args(self, inv: Invoke) -> tuple[Any, ...]:
        return (inv,)

    def _call(self, *args: Any) -> Any:
        value = self.user(*args)
        if hasattr(value, "__await__"):
            import asyncio

            value = asyncio.run(value)
        return value

    # -- HTTP functions ----------------------------------------------------------------------------------

    def _http(self, inv: Invoke) -> Any:
        if inv.kind != "http":
            inv = _as_post(inv)
        with self.app.request_context(wsgi_environ(inv)):
            try:
                rv = self._call(flask.request._get_current_object())  # type: ignore[attr-defined]
            except werkzeug.exceptions.HTTPException as e:
                return e.get_response()
            if type(rv) is str:  # the common case, exactly as make_response would answer it
                return 200, HTML_CT, rv.encode()
            resp = self.app.make_response(rv)
            return _Streamed(resp) if resp.is_streamed else resp

    # -- CloudEvent and background functions ----------------------------------------------------------

    def _events_of(self, inv: Invoke) -> list[dict[str, Any]]:
        if inv.kind == "cloudevent":
            return gcp_events.cloudevents(base.cloudevent(inv))
        if inv.kind == "http":
            return [_cloudevent_from_http(inv)]
        return [{"specversion": "1.0", "id": inv.activation_id, "source": "polyfn:invoke", "type": "io.polyfn.invoke",
                 "datacontenttype": inv.content_type or "application/json", "data": base.parse_event_payload(inv)}]

    def _cloudevent(self, inv: Invoke) -> str:
        from cloudevents.http import CloudEvent

        for ce in self._events_of(inv):
            attrs = {k: v for k, v in ce.items() if k not in ("data", "data_base64") and v is not None}
            self._call(CloudEvent(attrs, ce.get("data")))
        return "OK"

    def _event(self, inv: Invoke) -> str:
        for ce in self._events_of(inv):
            data, ctx = gcp_events.legacy(ce)
            self._call(data, LegacyContext(**ctx))
        return "OK"

    def respond(self, inv: Invoke, value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if isinstance(value, str):
            return 200, base.TEXT_CT, value.encode()
        if type(value) is tuple:
            return value  # type: ignore[return-value]
        return value.status_code, [(k, v) for k, v in value.headers.items() if k.lower() != "content-length"], \
            value.get_data()

    def fail(self, inv: Invoke, exc: BaseException) -> tuple[int, list[tuple[str, str]], bytes, dict[str, Any]]:
        err = base.error_payload(exc)
        return 500, base.JSON_CT + CRASH, json.dumps(err).encode(), err


class _Streamed:
    """A Flask response whose body is a generator (`Response(gen())`, `stream_with_context`): streamed as it is
    iterated (docs/streaming.md), then closed as a WSGI server closes it."""

    def __init__(self, resp: Any):
        self.resp = resp

    def __polyfn_stream__(self) -> tuple[int, list[tuple[str, str]], Any]:
        resp = self.resp
        headers = [(k, v) for k, v in resp.headers.items() if k.lower() != "content-length"]
        return resp.status_code, headers, self._chunks()

    def _chunks(self) -> Any:
        try:
            yield from self.resp.response
        finally:
            self.resp.close()


def _as_post(inv: Invoke) -> Invoke:
    """An invoke-API payload as the POST request an HTTP function would get."""
    return Invoke(inv.id, inv.activation_id, "http", inv.deadline, "POST", "/", "",
                  [("content-type", inv.content_type or "application/json")], inv.body, inv.content_type,
                  inv.trace_id, inv.identity)


def _cloudevent_from_http(inv: Invoke) -> dict[str, Any]:
    """An HTTP request carrying a CloudEvent (structured or binary mode) as a structured dict."""
    hdrs = base.Headers(inv.headers)
    ct = inv.content_type or hdrs.get("content-type", "")
    if ct.startswith("application/cloudevents+json"):
        return base.cloudevent(inv)
    ce: dict[str, Any] = {k[3:]: v for k, v in hdrs.items() if k.startswith("ce-")}
    if not {"id", "source", "type"} <= ce.keys():
        raise ValueError("this is a CloudEvent function: send a CloudEvent (ce-id, ce-source, ce-type, "
                         "ce-specversion headers, or Content-Type: application/cloudevents+json)")
    ce["datacontenttype"] = ct
    ce["data"] = json.loads(inv.body) if "json" in ct and inv.body else inv.body
    return ce
