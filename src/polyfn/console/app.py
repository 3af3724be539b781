"""The web console at `/console`: server-rendered Jinja2 pages with htmx for partial updates.

No build step: templates and static files (htmx.min.js vendored from npm `htmx.org`, console.js, CSS) ship
inside the package. Everything a function or a user produced is untrusted and reaches the page only
through Jinja2's autoescaping (or `textContent` in console.js); a strict Content-Security-Policy (scripts
from 'self' only, no inline script, no eval) backs that up.

Auth: the login form takes an API key and starts a session — a random token in an HttpOnly,
SameSite=Strict cookie scoped to /console, kept in memory with an expiry. The node's admin key (or an admin key
of `default`) may pick any namespace (the selector in the header); a namespace's key (scope deploy or admin)
sees only its namespace: every page works on the session's namespace, shows local names and answers another
namespace's function, activation or table as absent (docs/tenancy.md). A missing, wrong or expired
session sends the browser back to the login page (htmx requests get `HX-Redirect`). State-changing
requests must also come from the console's own origin (Origin check) — SameSite already blocks
cross-site cookies; the check is a second lock.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from polyfn.api.app import follow_logs
from polyfn.api.observe import function_stats
from polyfn.call import Call
from polyfn.console import tables
from polyfn.deploy import archive
from polyfn.deploy.errors import DeployError
from polyfn.gateway.asgi import StreamedResponse
from polyfn.model import FLAVORS
from polyfn.observe import usage as metering
from polyfn.observe.metrics import SLOT_S, FunctionStats
from polyfn.tenancy import DEFAULT, SEP, key_namespace, local, owns, qualify

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.observe.metrics import Metrics
    from polyfn.services import Activations, Deploys, FunctionStore, Invocations, LiveFunctions, Triggers
    from polyfn.storage.service import StorageService

HERE = Path(__file__).parent
COOKIE = "polyfn_console"
DISPLAY_MAX = 16 * 1024  # bytes of a result shown inline; the rest behind "download full"
STATUSES = ("success", "error", "timeout", "crashed", "oom", "init_failed", "throttled", "disconnected")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # "no-referrer" would make browsers send `Origin: null` on POSTs
    "cache-control": "no-store",
}


class Sessions:
    """Console sessions: token → expiry (monotonic seconds) and namespace (None: an administrator's, who picks
    one: `chosen`). The clock is passed in for tests."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_sessions: int = 1000):
        self.ttl = ttl
        self.clock = clock
        self.max_sessions = max_sessions
        self._expiry: dict[str, float] = {}
        self.namespace: dict[str, str | None] = {}  # token → the namespace it is confined to (None: any)
        self.chosen: dict[str, str] = {}  # token → the namespace an administrator's session works in

    def create(self, namespace: str | None = None) -> str:
        now = self.clock()
        if len(self._expiry) >= self.max_sessions:
            self._expiry = {t: e for t, e in self._expiry.items() if e > now}
            while len(self._expiry) >= self.max_sessions:  # still full: the oldest goes
                self._expiry.pop(next(iter(self._expiry)))
            self.namespace = {t: n for t, n in self.namespace.items() if t in self._expiry}
            self.chosen = {t: n for t, n in self.chosen.items() if t in self._expiry}
        token = secrets.token_urlsafe(32)
        self._expiry[token] = now + self.ttl
        self.namespace[token] = namespace
        return token

    def working(self, token: str) -> tuple[str, bool]:
        """(the namespace a valid session works in, whether it may pick another)."""
        confined = self.namespace.get(token)
        if confined is not None:
            return confined, False
        return self.chosen.get(token, DEFAULT), True

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        exp = self._expiry.get(token)
        if exp is None:
            return False
        if exp <= self.clock():
            self._expiry.pop(token, None)
            return False
        return True

    def end(self, token: str | None) -> None:
        if token:
            self._expiry.pop(token, None)
            self.namespace.pop(token, None)
            self.chosen.pop(token, None)


class ResultCache:
    """Full bodies of recent console invocations (bounded by total bytes), for "download full"."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._size = 0

    def put(self, key: str, body: bytes, content_type: str) -> None:
        if len(body) > self.max_bytes:
            return
        self._items[key] = (body, content_type)
        self._size += len(body)
        while self._size > self.max_bytes:
            _, (old, _ct) = self._items.popitem(last=False)
            self._size -= len(old)

    def get(self, key: str) -> tuple[bytes, str] | None:
        return self._items.get(key)


def _fmt_time(ts: Any) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))
    except (TypeError, ValueError):
        return "-"


def _fmt_ms(v: Any) -> str:
    if v is None:
        return "-"
    v = float(v)
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def _pretty(text: str) -> str:
    """Pretty-print JSON text for display; anything else unchanged."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, TypeError):
        return text


#: Trigger kinds the console offers, each with example options (the form's default for that kind).
TRIGGER_KINDS: tuple[tuple[str, str], ...] = (
    ("cron", '{"schedule": "*/5 * * * *", "timezone": "UTC"}'),
    ("topic", '{"topic": "orders", "batch_size": 10}'),
    ("storage", '{"bucket": "uploads", "events": ["created"], "prefix": ""}'),
    ("nats", '{"url": "nats://127.0.0.1:4222", "subject": "orders.*"}'),
    ("redis", '{"url": "redis://127.0.0.1:6379/0", "stream": "orders"}'),
    ("amqp", '{"url": "amqp://guest:guest@127.0.0.1:5672/", "queue": "orders"}'),
    ("mqtt", '{"host": "127.0.0.1", "port": 1883, "topic": "sensors/#"}'),
    ("kafka", '{"bootstrap_servers": "127.0.0.1:9092", "topic": "orders"}'),
    ("log", '{"stream": "fn:other-function"}'),
    ("events", '{"type": "com.example.order.created"}'),
)
LIST_PAGES = ("/console/functions", "/console/activations", "/console/tables", "/console/usage", "/console/deploy",
              "/console/workflows")
_HEALTH_CLASS = {"connected": "ok", "scheduled": "ok", "error": "bad", "connecting": "warn", "starting": "warn"}
_URL_PASSWORD = re.compile(r"(//[^/:@\s\"]*:)[^/@\s\"]+@")


def _config_text(config: dict[str, Any]) -> str:
    shown = {k: "***" if k in ("password", "secret", "sasl_password") and v else v for k, v in config.items()}
    return _URL_PASSWORD.sub(r"\1***@", json.dumps(shown, ensure_ascii=False))


def trigger_rows(triggers: Triggers | None, storage: StorageService | None, name: str) -> list[dict[str, Any]]:
    """A function's triggers for the console: kind, id, options (passwords in URLs masked), health, errors,
    next fire (cron); storage notifications included."""
    rows = []
    views = triggers.list(name) if triggers is not None else []
    for v in views:
        h = v.get("health") or {}
        state = str(h.get("state", "?"))
        rows.append({
            "id": v["id"], "kind": v["kind"], "state": state, "health_class": _HEALTH_CLASS.get(state, "idle"),
            "message": h.get("message", "") if state == "error" else "",
            "config_text": _config_text(v.get("config") or {}),
            "next_fire": v.get("next_fire_iso", ""), "delivered": v.get("delivered", 0),
            "errors": v.get("errors", 0), "last_error": v.get("last_error"),
        })
    if storage is not None:
        for t in storage.notifications.list(function=name):
            j = t.to_json()
            cfg = {k: j[k] for k in ("bucket", "events", "prefix", "suffix") if j.get(k)}
            rows.append({"id": t.id, "kind": "storage", "state": "active", "health_class": "ok", "message": "",
                         "config_text": json.dumps(cfg, ensure_ascii=False), "next_fire": "", "delivered": "-",
                         "errors": 0, "last_error": None})
    return rows


def health(fs: FunctionStats | None, init_failing: bool, now: float) -> tuple[str, str]:
    """(label, css class) of a function's health from the last 5 minutes."""
    if init_failing:
        return "failing to start", "bad"
    if fs is None:
        return "no traffic", "idle"
    w = fs.window(now, 300)
    if not w["invocations"]:
        return "no traffic", "idle"
    ratio = w["errors"] / w["invocations"]
    if ratio >= 0.5:
        return f"failing ({w['errors']}/{w['invocations']} errors)", "bad"
    if w["errors"]:
        return f"degraded ({w['errors']}/{w['invocations']} errors)", "warn"
    return "healthy", "ok"


def chart(points: list[dict[str, Any]], keys: tuple[str, ...], width: int = 360, height: int = 64) -> dict[str, Any]:
    """Polyline coordinates for an inline SVG chart of `keys` over the points (None = gap → 0)."""
    n = len(points)
    vmax = 0.0
    for p in points:
        for k in keys:
            v = p.get(k) or 0
            vmax = max(vmax, float(v))
    scale = (height - 4) / vmax if vmax > 0 else 0
    step = width / max(n - 1, 1)
    lines = []
    for k in keys:
        coords = " ".join(f"{i * step:.1f},{height - 2 - float(p.get(k) or 0) * scale:.1f}" for i, p in enumerate(points))
        lines.append({"key": k, "points": coords})
    return {"width": width, "height": height, "max": vmax, "lines": lines}


def _shown(value: Any, **changes: Any) -> Any:
    """A copy of a record (FunctionInfo, Activation) with its names as a namespace's pages show them."""
    import msgspec

    return msgspec.structs.replace(value, **changes)


def build_console(*, settings: Settings, store: FunctionStore, registry: LiveFunctions, recorder: Activations,
                  triggers: Triggers, deployer: Deploys, invoker: Invocations, metrics: Metrics,
                  storage: StorageService | None, workflows: Any, db: Any, admin_key: str, keys: Any = None,
                  namespaces: Any = None, usage: Any = None) -> Starlette:
    """The console's pages, on the services the composition root hands it. `keys` (KeyRing): logging in with a
    namespace's key; `namespaces`: the administrator's namespace picker; `usage` (the store's hourly sums): the
    usage page."""
    sessions = Sessions(settings.console_session_ttl)
    results = ResultCache()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["time"] = _fmt_time
    env.filters["ms"] = _fmt_ms
    env.filters["pretty"] = _pretty
    env.globals["flavors"] = FLAVORS
    env.globals["statuses"] = STATUSES

    def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("authed", True)
        ctx.setdefault("active", "")
        ctx.setdefault("ns", getattr(request.state, "namespace", DEFAULT))
        ctx.setdefault("ns_choices", getattr(request.state, "ns_choices", None))
        html = env.get_template(template).render(request=request, root="/console", **ctx)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def not_found(request: Request, what: str) -> HTMLResponse:
        return render(request, "not_found.html", 404, what=what)

    def authed(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            if not sessions.valid(request.cookies.get(COOKIE)):
                target = "/console/login"
                path = request.url.path
                if request.method == "GET" and path not in ("/console/", "/console"):
                    target += "?next=" + quote(path + (("?" + request.url.query) if request.url.query else ""))
                if request.headers.get("hx-request"):
                    return Response(status_code=401, headers={"hx-redirect": target, **SECURITY_HEADERS})
                return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
            if request.method == "POST" and not _same_origin(request):
                return Response("cross-origin request refused", status_code=403, headers=SECURITY_HEADERS)
            ns, may_pick = sessions.working(str(request.cookies.get(COOKIE)))
            request.state.namespace = ns
            request.state.ns_choices = namespaces.names() if may_pick and namespaces is not None else None
            return await handler(request)

        return wrapper

    def namespace(request: Request) -> str:
        return str(getattr(request.state, "namespace", DEFAULT))

    def held(request: Request) -> str | None:
        """The held name of the function the path names (a local name of the session's namespace)."""
        name = request.path_params["name"]
        return None if SEP in name else qualify(namespace(request), name)

    def default_only(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Pages of what is not namespaced yet (workflows): the default namespace's only."""
        async def wrapper(request: Request) -> Response:
            if namespace(request) != DEFAULT:
                return not_found(request, f"workflows of namespace {namespace(request)!r} (not namespaced yet)")
            return await handler(request)

        return wrapper

    # -- login -------------------------------------------------------------------------------------------

    async def login_page(request: Request) -> Response:
        return render(request, "login.html", authed=False, error="", next=_safe_next(request.query_params.get("next")))

    async def login(request: Request) -> Response:
        if not _same_origin(request):
            return Response("cross-origin request refused", status_code=403, headers=SECURITY_HEADERS)
        form = await request.form()
        key = str(form.get("key") or "").strip()
        nxt = _safe_next(str(form.get("next") or ""))
        confined: str | None = None
        if not key or not hmac.compare_digest(key.encode(), admin_key.encode()):
            rec = keys.verify(key) if key and keys is not None else None
            if rec is None:
                await asyncio.sleep(0.2)  # slows guessing a little; the key has 256 bits anyway
                return render(request, "login.html", 401, authed=False, next=nxt,
                              error="That key is not this node's API key nor one of its other keys. The node's own is in "
                                    "admin.key in the data dir; a namespace's is made with "
                                    "`polyfn --namespace N keys create`.")
            if rec.scope not in ("admin", "deploy") or rec.owner is not None or rec.function:
                return render(request, "login.html", 403, authed=False, next=nxt,
                              error=f"Key {rec.id} has scope {rec.scope!r}: the console needs a deploy or admin key "
                                    "not limited to one function.")
            confined = key_namespace(rec)
        resp = RedirectResponse(nxt or "/console/", status_code=303, headers=SECURITY_HEADERS)
        resp.set_cookie(COOKIE, sessions.create(confined), max_age=int(settings.console_session_ttl),
                        path="/console", httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return resp

    async def pick_namespace(request: Request) -> Response:
        """An administrator's session works in the namespace picked (a namespace's session cannot pick)."""
        token = str(request.cookies.get(COOKIE))
        _ns, may_pick = sessions.working(token)
        form = await request.form()
        name = str(form.get("namespace") or "")
        if not may_pick or namespaces is None or not await namespaces.exists(name):
            return not_found(request, f"namespace {name!r}")
        sessions.chosen[token] = name
        back = str(form.get("next") or "")  # (a list page stays; a page of one thing of the old namespace does not)
        target = back if back in LIST_PAGES else "/console/functions"
        return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)

    async def logout(request: Request) -> Response:
        sessions.end(request.cookies.get(COOKIE))
        resp = RedirectResponse("/console/login", status_code=303, headers=SECURITY_HEADERS)
        resp.delete_cookie(COOKIE, path="/console")
        return resp

    # -- functions ---------------------------------------------------------------------------------------

    async def functions_page(request: Request) -> Response:
        infos = await store.list_functions(namespace(request))
        now = time.time()
        stats = {s["name"]: s for s in function_stats(metrics, registry, 60, now)}
        rows = []
        for info in infos:
            fs = metrics.functions.get(info.name)
            active = registry.get(info.name)
            failing = bool(active and active.pool._init_error is not None)
            label, cls = health(fs, failing, now)
            hour = fs.window(now, 3600) if fs else {"invocations": 0, "errors": 0}
            rows.append({"info": _shown(info, name=local(info.name)), "stats": stats.get(info.name, {}),
                         "health": label, "health_class": cls, "hour": hour})
        return render(request, "functions.html", active="functions", rows=rows)

    async def function_page(request: Request) -> Response:
        name = held(request)
        info = await store.get_function(name) if name is not None else None
        if info is None or name is None:
            return not_found(request, f"function {request.path_params['name']!r}")
        await recorder.flush()
        recent = await store.list_activations(function=name, limit=10)
        now = time.time()
        fs = metrics.functions.get(name)
        active = registry.get(name)
        label, cls = health(fs, bool(active and active.pool._init_error is not None), now)
        ns, short = namespace(request), local(name)
        return render(request, "function.html", active="functions", info=_shown(info, name=short),
                      recent=[_shown(a, function=short) for a in recent],
                      fn_path=f"/fn/{short}" if ns == DEFAULT else f"/fn/{ns}/{short}",
                      health=label, health_class=cls, pool=active.pool.stats() if active else None,
                      sample='{\n  "name": "world"\n}', **trigger_panel(name))

    # -- triggers ----------------------------------------------------------------------------------------

    def trigger_panel(name: str, error: str = "", notice: str = "", form: dict[str, str] | None = None,
                      list_only: bool = False) -> dict[str, Any]:
        return {"name": local(name), "triggers": trigger_rows(triggers, storage, name), "kinds": TRIGGER_KINDS,
                "error": error,
                "notice": notice, "list_only": list_only,
                "form": form or {"kind": "cron", "id": "", "options": TRIGGER_KINDS[0][1]}}

    async def triggers_partial(request: Request) -> Response:
        name = held(request)
        if name is None or (registry.get(name) is None and await store.get_function(name) is None):
            return not_found(request, f"function {request.path_params['name']!r}")
        return render(request, "_triggers.html", **trigger_panel(name, list_only=bool(request.query_params.get("list"))))

    async def trigger_add(request: Request) -> Response:
        from polyfn.api.errors import ApiError
        from polyfn.api.triggers import create_trigger

        name = held(request)
        if name is None:
            return not_found(request, f"function {request.path_params['name']!r}")
        form = await request.form()
        values = {k: str(form.get(k) or "").strip() for k in ("kind", "id", "options")}
        try:
            options = json.loads(values["options"] or "{}")
        except ValueError as e:
            return render(request, "_triggers.html", **trigger_panel(name, f"Malformed JSON in the options: {e}",
                                                                     form=values))
        if not isinstance(options, dict):
            return render(request, "_triggers.html", **trigger_panel(
                name, "The options must be a JSON object, e.g. {\"schedule\": \"*/5 * * * *\"}", form=values))
        try:
            _status, view = await create_trigger(triggers, registry, store, storage, name, values["kind"], options, values["id"] or None)
        except ApiError as e:
            return render(request, "_triggers.html", **trigger_panel(name, f"{e.code}: {e.message}", form=values))
        return render(request, "_triggers.html", **trigger_panel(name, notice=f"added trigger {view.get('id', '')}"))

    async def trigger_remove(request: Request) -> Response:
        name, tid = held(request), request.path_params["id"]
        if name is None:
            return not_found(request, f"function {request.path_params['name']!r}")
        runner = triggers.runners.get(tid)
        notes = storage.notifications if storage is not None else None
        if runner is not None and runner.trigger.function == name:
            await triggers.delete(tid)
        elif notes is not None and any(t.id == tid for t in notes.list(function=name)):
            await notes.remove(tid)
        else:
            return render(request, "_triggers.html", **trigger_panel(name, f"function {name!r} has no trigger {tid!r}"))
        return render(request, "_triggers.html", **trigger_panel(name, notice=f"removed trigger {tid}"))

    async def charts(request: Request) -> Response:
        name = held(request)
        fs = metrics.functions.get(name) if name is not None else None
        if name is None or (fs is None and registry.get(name) is None):
            return not_found(request, f"function {request.path_params['name']!r}")
        now = time.time()
        points = (fs or FunctionStats(name)).series(now, 3600)
        return render(request, "_charts.html", name=name, step=SLOT_S, charts=[
            ("Invocations per 10 s", chart(points, ("invocations",)), ("invocations",)),
            ("Errors per 10 s", chart(points, ("errors",)), ("errors",)),
            ("Latency p50 / p99 (ms)", chart(points, ("p50_ms", "p99_ms")), ("p50_ms", "p99_ms")),
            ("Cold starts per 10 s", chart(points, ("cold_starts",)), ("cold_starts",)),
            ("Instances", chart(points, ("instances",)), ("instances",)),
        ], totals=(fs or FunctionStats(name)).window(now, 3600))

    async def invoke_form(request: Request) -> tuple[str, str, str]:
        """(function name, payload, why it cannot be invoked or "") of the invoke panel's form."""
        name = held(request) or ""
        payload = str((await request.form()).get("payload") or "")
        if payload.strip():
            try:
                json.loads(payload)
            except ValueError as e:
                return name, payload, f"Malformed JSON: {e}"
        return name, payload, "" if name and registry.get(name) is not None else \
            f"function {request.path_params['name']!r} does not exist"

    async def invoke(request: Request) -> Response:
        name, payload, refused = await invoke_form(request)
        if refused:
            return render(request, "_invoke_result.html", 200, error=refused, out=None)
        body = payload.encode()
        out = await invoker.call(Call(name, "event", "console", headers=[("content-type", "application/json")],
                                      body=body, content_type="application/json"))
        ct = next((v.decode("latin-1") for k, v in out.headers if k == b"content-type"), "application/octet-stream")
        act = None
        if out.activation_id:
            results.put(out.activation_id, out.body, ct)
            await recorder.flush()
            act = await store.get_activation(out.activation_id)
        text = out.body[:DISPLAY_MAX].decode("utf-8", "replace")
        return render(request, "_invoke_result.html", error="", out={
            "status": out.status, "activation_id": out.activation_id, "cold": out.cold, "size": len(out.body),
            "text": text if len(out.body) > DISPLAY_MAX else _pretty(text), "truncated": len(out.body) > DISPLAY_MAX,
            "content_type": ct}, act=act)

    async def invoke_stream(request: Request) -> Response:
        """The invoke panel with "stream" ticked: the function's response relayed as it comes (console.js shows
        the pieces as they arrive); errors as plain text."""
        name, payload, refused = await invoke_form(request)
        if refused:
            return Response(refused, status_code=400, headers=SECURITY_HEADERS)
        out = await invoker.call(Call(name, "event", "console", "POST", "/", "", [("content-type", "application/json")],
                                      payload.encode(), "application/json", stream=True))
        if out.stream is not None:
            return StreamedResponse(out)
        return Response(out.body, status_code=out.status, headers={k.decode(): v.decode() for k, v in out.headers})

    async def live_logs(request: Request) -> Response:
        name = held(request)
        if name is None or await store.get_function(name) is None:
            return not_found(request, f"function {request.path_params['name']!r}")
        await recorder.flush()
        backlog = await store.get_logs(name, limit=50)
        return StreamingResponse(follow_logs(recorder, name, backlog, None), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    # -- deploy ------------------------------------------------------------------------------------------

    async def deploy_page(request: Request) -> Response:
        return render(request, "deploy.html", active="deploy", error="", form={})

    async def deploy(request: Request) -> Response:
        form = await request.form()
        values = {k: str(form.get(k) or "").strip() for k in ("name", "flavor", "handler", "filename")}
        code = str(form.get("code") or "")
        upload = form.get("archive")
        fields: dict[str, Any] = {"name": qualify(namespace(request), values["name"])}
        if values["flavor"]:
            fields["flavor"] = values["flavor"]
        if values["handler"]:
            fields["handler"] = values["handler"]
        try:
            if isinstance(upload, UploadFile) and upload.filename:
                data = await upload.read()
                if len(data) > settings.max_code_size:
                    raise DeployError("code_too_large", f"the archive is {len(data)} bytes; the limit is "
                                      f"{settings.max_code_size}", 413)
                files = archive.files_from_zip(data, settings.max_code_size, settings.max_code_files)
            elif code.strip():
                files = {values["filename"] or "handler.py": code.replace("\r\n", "\n").encode()}
            else:
                raise DeployError("invalid_request", "upload a zip archive or paste the code of one file")
            if SEP in values["name"]:
                raise DeployError("invalid_name", f"function name {values['name']!r}: use a-z, 0-9 and '-'")
            info, _created, _detected = await deployer.deploy(fields, files)
        except DeployError as e:
            return render(request, "deploy.html", 400, active="deploy", error=f"{e.code}: {e.message}",
                          form={**values, "code": code})
        return RedirectResponse(f"/console/functions/{quote(local(info.name))}", status_code=303,
                                headers=SECURITY_HEADERS)

    # -- activations -------------------------------------------------------------------------------------

    async def activations_page(request: Request) -> Response:
        q = request.query_params
        function = q.get("function") or None
        status = q.get("status") if q.get("status") in STATUSES else None
        cold = {"cold": True, "warm": False}.get(q.get("cold", ""))
        try:
            since_min = float(q.get("since_min") or 0)
        except ValueError:
            since_min = 0
        await recorder.flush()
        ns = namespace(request)
        acts = await store.list_activations(
            function=qualify(ns, function) if function is not None and SEP not in function else function,
            status=status, cold=cold, since=time.time() - since_min * 60 if since_min > 0 else None, limit=100,
            namespace=ns)
        acts = [_shown(a, function=local(a.function)) for a in acts if owns(ns, a.function)]
        names = [local(i.name) for i in await store.list_functions(ns)]
        tpl = "_activation_rows.html" if request.headers.get("hx-request") and q.get("partial") else "activations.html"
        return render(request, tpl, active="activations", acts=acts, names=names,
                      filters={"function": function or "", "status": status or "",
                               "cold": q.get("cold", ""), "since_min": q.get("since_min", "")})

    async def activation_page(request: Request) -> Response:
        aid = request.path_params["id"]
        await recorder.flush()
        act = await store.get_activation(aid)
        if act is None or not owns(namespace(request), act.function):
            return not_found(request, f"activation {aid!r}")
        act = _shown(act, function=local(act.function))
        stored = len(act.result.encode())
        return render(request, "activation.html", active="activations", act=act,
                      maybe_truncated=stored >= settings.result_truncate, full_available=results.get(aid) is not None)

    async def activation_result(request: Request) -> Response:
        aid = request.path_params["id"]
        await recorder.flush()
        act = await store.get_activation(aid)
        if act is None or not owns(namespace(request), act.function):
            return not_found(request, f"activation {aid!r}")
        cached = results.get(aid)
        headers = {**SECURITY_HEADERS, "content-disposition": f'attachment; filename="{aid[:32]}.out"'}
        if cached is not None:
            return Response(cached[0], media_type="application/octet-stream", headers=headers)
        headers["x-polyfn-truncated"] = "true" if len(act.result.encode()) >= settings.result_truncate else "false"
        return Response(act.result.encode(), media_type="application/octet-stream", headers=headers)

    # -- usage -------------------------------------------------------------------------------------------

    async def usage_page(request: Request) -> Response:
        """The namespace's metered usage per day (UTC) of the last `days`, as charts and a table, priced with
        a sample price table when one is picked."""
        q = request.query_params
        try:
            days = max(1, min(400, int(q.get("days") or 30)))
        except ValueError:
            days = 30
        prices = None
        if q.get("prices") in metering.price_tables():
            prices = metering.load_prices(str(q["prices"]), files=False)
        now = time.time()
        since = (now // 86400 - days + 1) * 86400
        await recorder.flush()
        rows = await usage.list_usage(since=since, namespace=namespace(request)) if usage is not None else []
        report = metering.summarise(rows, "day", since, None, prices)
        by_day = {r["day"]: r for r in report["usage"]}
        points = []
        for i in range(days):
            day = time.strftime("%Y-%m-%d", time.gmtime(since + i * 86400))
            r = by_day.get(day) or {}
            points.append({"day": day, "gb_seconds": r.get("gb_seconds", 0), "invocations": r.get("invocations", 0),
                           "storage_gb": (r.get("storage_byte_s", 0) / 86400 / (1 << 30)),
                           "db_reads": r.get("db_reads", 0), "db_writes": r.get("db_writes", 0),
                           "transitions": r.get("transitions", 0)})
        charts_ = [
            ("GB-seconds per day", chart(points, ("gb_seconds",), 560, 90), ("gb_seconds",)),
            ("Invocations per day", chart(points, ("invocations",), 560, 90), ("invocations",)),
            ("Storage held, GB (day's average)", chart(points, ("storage_gb",), 560, 90), ("storage_gb",)),
            ("Database reads / writes per day", chart(points, ("db_reads", "db_writes"), 560, 90),
             ("db_reads", "db_writes")),
        ]
        return render(request, "usage.html", active="usage", charts=charts_, report=report, days=days,
                      first=points[0]["day"], last=points[-1]["day"], tables=metering.price_tables(),
                      picked=prices["name"] if prices else "", picked_ref=q.get("prices") or "")

    async def index(request: Request) -> Response:
        return RedirectResponse("/console/functions", status_code=303, headers=SECURITY_HEADERS)

    async def http_error(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 500)
        if code == 404:
            return not_found(request, f"page {request.url.path!r}")
        return HTMLResponse(f"error {code}", status_code=code, headers=SECURITY_HEADERS)

    routes = [
        Route("/", authed(index)),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/namespace", authed(pick_namespace), methods=["POST"]),
        Route("/usage", authed(usage_page)),
        Route("/functions", authed(functions_page)),
        Route("/functions/{name}", authed(function_page)),
        Route("/functions/{name}/charts", authed(charts)),
        Route("/functions/{name}/invoke", authed(invoke), methods=["POST"]),
        Route("/functions/{name}/invoke-stream", authed(invoke_stream), methods=["POST"]),
        Route("/functions/{name}/logs/stream", authed(live_logs)),
        Route("/functions/{name}/triggers", authed(triggers_partial), methods=["GET"]),
        Route("/functions/{name}/triggers", authed(trigger_add), methods=["POST"]),
        Route("/functions/{name}/triggers/{id}/delete", authed(trigger_remove), methods=["POST"]),
        Route("/deploy", authed(deploy_page), methods=["GET"]),
        Route("/deploy", authed(deploy), methods=["POST"]),
        Route("/activations", authed(activations_page)),
        Route("/activations/{id}", authed(activation_page)),
        Route("/activations/{id}/result", authed(activation_result)),
        *tables.routes(db, render, authed, not_found, namespace),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    from polyfn.console import workflows as workflow_pages

    routes[-1:-1] = workflow_pages.routes(workflows, render, not_found, lambda h: authed(default_only(h)))
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def _same_origin(request: Request) -> bool:
    """True unless the browser says the request came from another origin."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def _safe_next(value: str | None) -> str:
    """Only redirect back to console pages (no open redirect)."""
    if value and value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return ""


__all__ = ["ResultCache", "Sessions", "build_console", "chart", "health"]
