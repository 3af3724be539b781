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
  a CloudEvent function are read as CloudEvents (binary or structured mode), or, failing that, as a legacy
  event converted to its CloudEvent (events/gcp.py, as the functions-framework converts). The answer is `OK`.
- Background (legacy) `def f(data, context)`: over HTTP, a legacy event (`{"data", "context"}`, the older flat
  shape, or a raw Pub/Sub push), a binary-mode CloudEvent of a type with a legacy equivalent (converted), or
  another binary-mode CloudEvent (the body is the data).
- Typed `@functions_framework.typed`: the JSON body through the input type's `from_dict`; a result with
  `to_dict` answers as JSON.
- A request the function's kind cannot take (not an event, not JSON) → 400 saying what was expected.
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

HTTP, CLOUDEVENT, EVENT, TYPED = "http", "cloudevent", "event", "typed"
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
        if sig not in (HTTP, CLOUDEVENT, EVENT, TYPED):
            raise base.HandlerError("Runtime.HandlerSignature",
                                    f"signature type {sig!r} is not supported: use http, cloudevent, event or typed")
        self.signature = sig
        super().__init__(handler, meta)
        self.is_async = False  # the wrapper below is sync; async user functions are run to completion in it
        self.handler = {HTTP: self._http, CLOUDEVENT: self._cloudevent, EVENT: self._event, TYPED: self._typed}[sig]
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
            try:
                return [_cloudevent_from_http(inv)]
            except NotACloudEvent as e:  # a legacy event, converted as the functions-framework does
                try:
                    return [gcp_events.background_to_cloudevent(_json_body(inv), inv.path, _now())]
                except gcp_events.ConversionError as e2:
                    raise gcp_events.ConversionError(
                        f"this is a CloudEvent function: {e}; converting the request as a legacy event failed "
                        f"too: {e2}") from None
        return [{"specversion": "1.0", "id": inv.activation_id, "source": "polyfn:invoke", "type": "io.polyfn.invoke",
                 "datacontenttype": inv.content_type or "application/json", "data": base.parse_event_payload(inv)}]

    def _cloudevent(self, inv: Invoke) -> Any:
        from cloudevents.http import CloudEvent

        try:
            events = self._events_of(inv)
        except gcp_events.ConversionError as e:
            return _bad_request(str(e))
        for ce in events:
            attrs = {k: v for k, v in ce.items() if k not in ("data", "data_base64") and v is not None}
            self._call(CloudEvent(attrs, ce.get("data")))
        return "OK"

    def _event(self, inv: Invoke) -> Any:
        if inv.kind == "http":
            try:
                data, ctx = _background_from_http(inv)
            except gcp_events.ConversionError as e:
                return _bad_request(f"this is a background function (data, context): {e}")
            self._call(data, LegacyContext(**ctx))
            return "OK"
        for ce in self._events_of(inv):
            data, ctx = gcp_events.legacy(ce)
            self._call(data, LegacyContext(**ctx))
        return "OK"

    def _typed(self, inv: Invoke) -> Any:
        from functions_framework import _function_registry as reg

        input_type = reg.INPUT_TYPE_MAP[getattr(self.user, "__name__", "")]
        try:
            value = json.loads(inv.body) if inv.body else None
        except ValueError:
            return _bad_request(f"this is a typed function: send a JSON body ({input_type.__name__}.from_dict)")
        rv = self._call(input_type.from_dict(value))
        with self.app.request_context(wsgi_environ(inv if inv.kind == "http" else _as_post(inv))):
            if rv is None:
                return self.app.make_response(("", 200))
            if type(rv).__module__ == "builtins":
                return self.app.make_response(rv)
            if not callable(getattr(rv, "to_dict", None)):
                raise TypeError(f"the typed function returned a {type(rv).__name__}, which has no to_dict method")
            return self.app.make_response(json.dumps(rv.to_dict()))

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


class NotACloudEvent(ValueError):
    pass


def _bad_request(message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    return 400, base.TEXT_CT, message.encode()


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_body(inv: Invoke) -> Any:
    try:
        return json.loads(inv.body) if inv.body else None
    except ValueError:
        raise gcp_events.ConversionError("the body is not JSON") from None


def _background_from_http(inv: Invoke) -> tuple[Any, dict[str, Any]]:
    """An HTTP request to a background function → (data, context fields), as the functions-framework reads it."""
    hdrs = base.Headers(inv.headers)
    ct = inv.content_type or hdrs.get("content-type", "")
    if "ce-specversion" in hdrs or ct.startswith("application/cloudevents+json"):
        ce = _cloudevent_from_http(inv)
        if ce.get("type") in gcp_events.CE_TO_LEGACY:
            return gcp_events.cloudevent_to_background(ce)
        if "ce-specversion" in hdrs:  # another binary CloudEvent: the body is the data
            return inv.body, {"event_id": hdrs.get("ce-eventid", ""), "timestamp": hdrs.get("ce-timestamp", ""),
                              "event_type": hdrs.get("ce-eventtype", ""), "resource": hdrs.get("ce-resource", "")}
        raise gcp_events.ConversionError(f"the CloudEvent type {ce.get('type')!r} has no legacy equivalent")
    body = _json_body(inv)
    if body is None:
        raise gcp_events.ConversionError("send a legacy event: {\"data\": …, \"context\": {\"eventId\", "
                                         "\"timestamp\", \"eventType\", \"resource\"}}")
    return gcp_events.background_event(body, inv.path, _now())


def _cloudevent_from_http(inv: Invoke) -> dict[str, Any]:
    """An HTTP request carrying a CloudEvent (structured or binary mode) as a structured dict."""
    hdrs = base.Headers(inv.headers)
    ct = inv.content_type or hdrs.get("content-type", "")
    if ct.startswith("application/cloudevents+json"):
        return base.cloudevent(inv)
    ce: dict[str, Any] = {k[3:]: v for k, v in hdrs.items() if k.startswith("ce-")}
    if not {"id", "source", "type"} <= ce.keys():
        raise NotACloudEvent("this is a CloudEvent function: send a CloudEvent (ce-id, ce-source, ce-type, "
                         "ce-specversion headers, or Content-Type: application/cloudevents+json)")
    ce["datacontenttype"] = ct
    ce["data"] = json.loads(inv.body) if "json" in ct and inv.body else inv.body
    return ce
