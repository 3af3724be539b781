"""Azure Functions (Python), both programming models, on the real `azure.functions` types.

- v1: `def main(req: func.HttpRequest[, context: func.Context]) -> func.HttpResponse` beside a
  `function.json` that names the bindings (`httpTrigger` `req`, `timerTrigger`, `blobTrigger`,
  `queueTrigger`; outputs `$return` or a named `http` binding passed as `func.Out`).
- v2: `app = func.FunctionApp()` with `@app.route`, `@app.timer_trigger`, `@app.blob_trigger`,
  `@app.queue_trigger`; the handler is the app object (`function_app.app`). HTTP requests are routed by
  the `route` templates (`/api/` prefix optional, `{name}` parameters); events go to the function whose
  trigger matches (timer → timer, storage → blob, queue → queue).

Trigger arguments are passed by binding name, like the Azure host does. Return values for HTTP:
`func.HttpResponse`, str/bytes (200), dict/list (JSON), None (204... 200 with an empty body on Azure).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func
from azure.functions.blob import InputStream
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from polyfn.events import azure as az_events
from polyfn.events.cloudevent import (
    TYPE_BROKER_MESSAGE,
    TYPE_OBJECT_CREATED,
    TYPE_OBJECT_DELETED,
    TYPE_QUEUE_BATCH,
    TYPE_TIMER,
)
from polyfn.protocol import Invoke
from polyfn.runtimes.python.flavors import base

TRIGGER_FOR_EVENT = {TYPE_TIMER: "timerTrigger", TYPE_OBJECT_CREATED: "blobTrigger",
                     TYPE_OBJECT_DELETED: "blobTrigger", TYPE_QUEUE_BATCH: "queueTrigger",
                     TYPE_BROKER_MESSAGE: "queueTrigger"}


class Context(func.Context):
    """The `context` argument (`func.Context` is abstract in the library)."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str):
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        import threading

        return threading.local()

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


class Out(func.Out):
    """An output binding parameter (`func.Out[T]`)."""

    def __init__(self) -> None:
        self.value: Any = None

    def set(self, val: Any) -> None:
        self.value = val

    def get(self) -> Any:
        return self.value


@dataclass
class Target:
    """One Azure function: the Python callable and its bindings."""

    name: str
    fn: Any
    trigger_type: str
    trigger_name: str
    route: re.Pattern[str] | None = None
    methods: frozenset[str] = frozenset()
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (name, type) of out bindings
    params: list[str] = field(default_factory=list)
    wants_context: str | None = None


def _route_regex(route: str) -> re.Pattern[str]:
    parts = []
    for piece in re.split(r"(\{[^}]+\})", route.strip("/")):
        if piece.startswith("{"):
            name = piece[1:-1].split(":")[0].rstrip("?")
            parts.append(f"(?P<{name}>[^/]+)")
        else:
            parts.append(re.escape(piece))
    return re.compile("^/?(?:api/)?" + "".join(parts) + "/?$")


def _target(name: str, fn: Any, bindings: list[dict[str, Any]]) -> Target:
    params = base.first_param_names(fn)
    trig = next((b for b in bindings if str(b.get("type", "")).endswith("Trigger")), None)
    if trig is None:
        raise base.HandlerError("Runtime.HandlerSignature",
                                f"Azure function {name!r} has no trigger binding (httpTrigger, timerTrigger, ...)")
    t = Target(name, fn, str(trig["type"]), str(trig.get("name", "")), params=params)
    if t.trigger_type == "httpTrigger":
        t.route = _route_regex(str(trig.get("route") or name))
        t.methods = frozenset(str(getattr(m, "value", m)).upper() for m in trig.get("methods") or [])
    for b in bindings:
        direction = str(getattr(b.get("direction"), "name", b.get("direction", ""))).lower()
        if direction == "out" and b.get("name") != "$return":
            t.outputs.append((str(b["name"]), str(b.get("type", ""))))
    t.wants_context = "context" if "context" in params else None
    missing = [p for p in params if p != t.trigger_name and p != "context" and p not in dict(t.outputs)]
    if t.trigger_name not in params or missing:
        raise base.HandlerError(
            "Runtime.HandlerSignature",
            f"Azure function {name!r} takes ({', '.join(params)}) but its bindings are trigger "
            f"{t.trigger_name!r}" + (f" and outputs {', '.join(n for n, _ in t.outputs)}" if t.outputs else "")
            + ": parameters must be named after bindings (plus an optional `context`)")
    return t


def _v1_targets(handler: Any, meta: base.FunctionMeta) -> tuple[list[Target], str]:
    import sys

    mod = sys.modules.get(getattr(handler, "__module__", ""), None)
    directory = os.path.dirname(os.path.abspath(getattr(mod, "__file__", "") or os.getcwd()))
    bindings: list[dict[str, Any]] = []
    for d in (directory, os.getcwd()):
        path = os.path.join(d, "function.json")
        if os.path.exists(path):
            with open(path) as f:
                bindings = json.load(f).get("bindings", [])
            directory = d
            break
    if not bindings:  # no function.json: an HTTP function named after the polyfn function
        params = base.first_param_names(handler)
        if not params:
            raise base.HandlerError("Runtime.HandlerSignature",
                                    "Azure v1 `def main(req: func.HttpRequest)` takes at least the request")
        bindings = [{"type": "httpTrigger", "direction": "in", "name": params[0], "route": None},
                    {"type": "http", "direction": "out", "name": "$return"}]
    name = os.path.basename(directory) if directory != os.getcwd() else meta.name
    return [_target(name, handler, bindings)], directory


def _v2_targets(app: Any) -> list[Target]:
    out = []
    for f in app.get_functions():
        bindings = [b.get_dict_repr() for b in f.get_bindings()]
        out.append(_target(f.get_function_name(), f.get_user_function(), bindings))
    if not out:
        raise base.HandlerError("Runtime.HandlerNotFound", "the FunctionApp has no functions")
    return out


def http_request(inv: Invoke, route_params: dict[str, str]) -> func.HttpRequest:
    headers = dict(base.Headers(inv.headers))
    host = headers.get("host", "localhost")
    url = f"http://{host}{inv.path or '/'}" + (f"?{inv.query}" if inv.query else "")
    return func.HttpRequest(inv.method or "POST", url, headers=headers, params=dict(parse_qsl(inv.query)),
                            route_params=route_params, body=inv.body)


def http_result(value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    if isinstance(value, func.HttpResponse):
        hdrs = list(value.headers.items())
        if not any(k.lower() == "content-type" for k, _ in hdrs):
            ct = value.mimetype or "text/plain"
            if value.charset and (ct.startswith("text/") or "json" in ct):
                ct += f"; charset={value.charset}"
            hdrs.append(("content-type", ct))
        return value.status_code, hdrs, value.get_body()
    if value is None:
        return 200, [], b""
    hdrs, body = base.encode_value(value)
    return 200, hdrs, body


class Adapter(base.Adapter):
    convention = ("Azure `def main(req: func.HttpRequest) -> func.HttpResponse` (v1, function.json) or "
                  "`app = func.FunctionApp()` with decorated functions (v2)")

    def __init__(self, handler: Any, meta: base.FunctionMeta):
        self.directory = os.getcwd()
        if isinstance(handler, func.FunctionApp | func.FunctionRegister):
            self.targets = _v2_targets(handler)
        elif callable(handler):
            self.targets, self.directory = _v1_targets(handler, meta)
        else:
            raise base.HandlerError("Runtime.HandlerSignature",
                                    f"the handler is a {type(handler).__name__}, not a function or FunctionApp: "
                                    f"expected {self.convention}")
        super().__init__(handler, meta)
        self.is_async = False
        self.handler = self._run
        self.by_trigger: dict[str, Target] = {}
        for t in self.targets:
            self.by_trigger.setdefault(t.trigger_type, t)
        self.http_targets = [t for t in self.targets if t.trigger_type == "httpTrigger"]
        os.environ.setdefault("FUNCTIONS_WORKER_RUNTIME", "python")
        os.environ.setdefault("WEBSITE_SITE_NAME", meta.name)

    def args(self, inv: Invoke) -> tuple[Any, ...]:
        return (inv,)

    def _call(self, t: Target, inv: Invoke, trigger_value: Any) -> tuple[Any, dict[str, Out]]:
        kwargs: dict[str, Any] = {t.trigger_name: trigger_value}
        outs = {n: Out() for n, _ in t.outputs}
        kwargs.update(outs)
        if t.wants_context:
            kwargs["context"] = Context(_guid(inv.activation_id), t.name, self.directory)
        value = t.fn(**kwargs)
        if hasattr(value, "__await__"):
            import asyncio

            value = asyncio.run(value)
        return value, outs

    def _run(self, inv: Invoke) -> Any:
        if inv.kind == "cloudevent":
            ce = base.cloudevent(inv)
            trig = TRIGGER_FOR_EVENT.get(ce.get("type", ""))
            t = self.by_trigger.get(trig or "")
            if t is None:
                raise LookupError(f"no function of this app has a {trig or ce.get('type')} trigger")
            for value in self._trigger_values(t, ce):
                self._call(t, inv, value)
            return None
        if not self.http_targets:
            raise LookupError("no function of this app has an httpTrigger")
        if inv.kind != "http":
            inv = Invoke(inv.id, inv.activation_id, "http", inv.deadline, "POST", inv.path or "/", "",
                         [("content-type", inv.content_type or "application/json")], inv.body, inv.content_type)
            t, params = self.http_targets[0], {}
        else:
            t, params = self._route(inv)
        value, outs = self._call(t, inv, http_request(inv, params))
        for n, kind in t.outputs:
            if kind == "http" and outs[n].value is not None:
                return outs[n].value
        return value

    def _route(self, inv: Invoke) -> tuple[Target, dict[str, str]]:
        if len(self.http_targets) == 1 and self.http_targets[0].route is not None:
            t = self.http_targets[0]
            m = t.route.match(inv.path or "/") if t.route else None
            if m is None:  # a single function answers every path (route params empty)
                return t, {}
            return t, m.groupdict()
        for t in self.http_targets:
            m = t.route.match(inv.path or "/") if t.route else None
            if m and (not t.methods or inv.method.upper() in t.methods):
                return t, m.groupdict()
        raise _NotFound(f"no route matches {inv.method} {inv.path}: routes are "
                        + ", ".join(t.route.pattern for t in self.http_targets if t.route))

    def _trigger_values(self, t: Target, ce: dict[str, Any]) -> list[Any]:
        if t.trigger_type == "timerTrigger":
            info = az_events.timer(ce)
            return [TimerRequest(past_due=info["IsPastDue"], schedule_status=info["ScheduleStatus"],
                                 schedule=info["Schedule"])]
        if t.trigger_type == "blobTrigger":
            data = ce.get("data") or {}
            content: Any = b""
            if isinstance(data, dict) and data.get("content_base64"):
                import base64

                content = base64.b64decode(data["content_base64"])
            elif isinstance(data, dict) and isinstance(data.get("content"), str):
                content = data["content"].encode()
            b = az_events.blob(ce, content)
            return [InputStream(data=b["data"], name=b["name"], uri=b["uri"], length=b["length"],
                                blob_properties=b["properties"], metadata=b["metadata"])]
        return [QueueMessage(id=m["id"], body=m["body"], dequeue_count=m["dequeue_count"],
                             pop_receipt=m["pop_receipt"]) for m in az_events.queue_messages(ce)]

    def respond(self, inv: Invoke, value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if inv.kind == "cloudevent":
            return 200, base.JSON_CT, b"null"
        return http_result(value)

    def fail(self, inv: Invoke, exc: BaseException) -> tuple[int, list[tuple[str, str]], bytes, dict[str, Any]]:
        if isinstance(exc, _NotFound):
            body = json.dumps({"error": {"code": "route_not_found", "message": str(exc)}}).encode()
            return 404, base.JSON_CT, body, None  # type: ignore[return-value]
        err = base.error_payload(exc)
        return 500, base.JSON_CT, json.dumps(err).encode(), err


class _NotFound(Exception):
    pass


def _guid(activation_id: str) -> str:
    """Azure invocation ids are GUIDs: the activation id (32 hex digits) written as one."""
    try:
        return str(uuid.UUID(hex=activation_id))
    except ValueError:
        return activation_id
