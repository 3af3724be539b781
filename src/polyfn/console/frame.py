"""What every console page shares: the security headers, the renderer (`Pages`: Jinja2 templates, autoescaped),
the guard in front of each page (`Guard`: a valid session, the same origin on a POST, the session's namespace on
`request.state`) and the request's namespace and function name."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from polyfn.console.sessions import Sessions
from polyfn.model import FLAVORS
from polyfn.tenancy import DEFAULT, SEP, qualify

HERE = Path(__file__).parent
COOKIE = "polyfn_console"
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

Handler = Callable[[Request], Awaitable[Response]]


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


def pretty(text: str) -> str:
    """Pretty-print JSON text for display; anything else unchanged."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, TypeError):
        return text


class Pages:
    """The console's templates: a page (or an htmx partial) rendered with the security headers."""

    def __init__(self) -> None:
        env = self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                            undefined=jinja2.StrictUndefined)
        env.filters["time"] = _fmt_time
        env.filters["ms"] = _fmt_ms
        env.filters["pretty"] = pretty
        env.globals["flavors"] = FLAVORS
        env.globals["statuses"] = STATUSES

    def render(self, request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("authed", True)
        ctx.setdefault("active", "")
        ctx.setdefault("ns", getattr(request.state, "namespace", DEFAULT))
        ctx.setdefault("ns_choices", getattr(request.state, "ns_choices", None))
        html = self.env.get_template(template).render(request=request, root="/console", **ctx)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def not_found(self, request: Request, what: str) -> HTMLResponse:
        return self.render(request, "not_found.html", 404, what=what)


def redirect(target: str) -> RedirectResponse:
    return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)


class Guard:
    """In front of every page but the login's: a valid session (else back to the login page; htmx requests get
    `HX-Redirect`), a POST from the console's own origin, and the session's namespace (and, for an
    administrator, the namespaces to pick from) on `request.state`."""

    def __init__(self, sessions: Sessions, namespaces: Any, pages: Pages):
        self.sessions = sessions
        self.namespaces = namespaces
        self.pages = pages

    def authed(self, handler: Handler) -> Handler:
        sessions, namespaces = self.sessions, self.namespaces

        async def wrapper(request: Request) -> Response:
            if not sessions.valid(request.cookies.get(COOKIE)):
                target = "/console/login"
                path = request.url.path
                if request.method == "GET" and path not in ("/console/", "/console"):
                    target += "?next=" + quote(path + (("?" + request.url.query) if request.url.query else ""))
                if request.headers.get("hx-request"):
                    return Response(status_code=401, headers={"hx-redirect": target, **SECURITY_HEADERS})
                return redirect(target)
            if request.method == "POST" and not same_origin(request):
                return Response("cross-origin request refused", status_code=403, headers=SECURITY_HEADERS)
            ns, may_pick = sessions.working(str(request.cookies.get(COOKIE)))
            request.state.namespace = ns
            request.state.ns_choices = namespaces.names() if may_pick and namespaces is not None else None
            return await handler(request)

        return wrapper

    def default_only(self, handler: Handler) -> Handler:
        """Pages of what is not namespaced yet (workflows): the default namespace's only."""
        async def wrapper(request: Request) -> Response:
            if namespace(request) != DEFAULT:
                return self.pages.not_found(
                    request, f"workflows of namespace {namespace(request)!r} (not namespaced yet)")
            return await handler(request)

        return wrapper


def namespace(request: Request) -> str:
    """The namespace the request's session works in."""
    return str(getattr(request.state, "namespace", DEFAULT))


def held(request: Request) -> str | None:
    """The held name of the function the path names (a local name of the session's namespace)."""
    name = request.path_params["name"]
    return None if SEP in name else qualify(namespace(request), name)


def same_origin(request: Request) -> bool:
    """True unless the browser says the request came from another origin."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def safe_next(value: str | None) -> str:
    """Only redirect back to console pages (no open redirect)."""
    if value and value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return ""
