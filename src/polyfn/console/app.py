"""The web console at `/console`: server-rendered Jinja2 pages with htmx for partial updates, declared as one
table of pages (`CONSOLE`), each answered by a method of a small class built with the services it uses — as the
control API's `V1` table (api/routes.py).

No build step: templates and static files (htmx.min.js vendored from npm `htmx.org`, console.js, CSS) ship
inside the package. Everything a function or a user produced is untrusted and reaches the page only
through Jinja2's autoescaping (or `textContent` in console.js); a strict Content-Security-Policy (scripts
from 'self' only, no inline script, no eval) backs that up (frame.py).

Auth: the login form takes an API key and starts a session — a random token in an HttpOnly,
SameSite=Strict cookie scoped to /console, kept in memory with an expiry. The node's admin key (or an admin key
of `default`) may pick any namespace (the selector in the header); a namespace's key (scope deploy or admin)
sees only its namespace: every page works on the session's namespace, shows local names and answers another
namespace's function, activation or table as absent (docs/tenancy.md). A missing, wrong or expired
session sends the browser back to the login page (htmx requests get `HX-Redirect`). State-changing
requests must also come from the console's own origin (Origin check) — SameSite already blocks
cross-site cookies; the check is a second lock. Each row says who may see it: `guard` "session" (the default:
`Guard.authed`), "none" (the login) or "default" (a session working in the default namespace: workflows are not
namespaced yet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.routing import Route as Page
from starlette.staticfiles import StaticFiles

from polyfn.api.routes import Route, bind
from polyfn.console.activations import ActivationPages, UsagePage
from polyfn.console.frame import HERE, SECURITY_HEADERS, Guard, Pages
from polyfn.console.functions import FunctionPages, TriggerPages
from polyfn.console.invoke import DeployPages, InvokePages
from polyfn.console.login import LoginPages
from polyfn.console.sessions import ResultCache, Sessions
from polyfn.console.tables import TablePages
from polyfn.console.workflows import WorkflowPages

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.observe.metrics import Metrics
    from polyfn.services import Activations, Deploys, FunctionStore, Invocations, LiveFunctions, Triggers
    from polyfn.storage.service import StorageService

OPEN = {"guard": "none"}
DEFAULT_ONLY = {"guard": "default"}

#: the console's pages under /console: method, path, handler (its class names the services it uses), who may see it
CONSOLE = (
    Route("GET",  "/",                                   LoginPages.index),
    Route("GET",  "/login",                              LoginPages.login_page, OPEN),
    Route("POST", "/login",                              LoginPages.login, OPEN),
    Route("POST", "/logout",                             LoginPages.logout, OPEN),
    Route("POST", "/namespace",                          LoginPages.pick_namespace),
    Route("GET",  "/usage",                              UsagePage.usage_page),
    Route("GET",  "/functions",                          FunctionPages.functions_page),
    Route("GET",  "/functions/{name}",                   FunctionPages.function_page),
    Route("GET",  "/functions/{name}/charts",            FunctionPages.charts),
    Route("POST", "/functions/{name}/invoke",            InvokePages.invoke),
    Route("POST", "/functions/{name}/invoke-stream",     InvokePages.invoke_stream),
    Route("GET",  "/functions/{name}/logs/stream",       FunctionPages.live_logs),
    Route("GET",  "/functions/{name}/triggers",          TriggerPages.triggers_partial),
    Route("POST", "/functions/{name}/triggers",          TriggerPages.trigger_add),
    Route("POST", "/functions/{name}/triggers/{id}/delete", TriggerPages.trigger_remove),
    Route("GET",  "/deploy",                             DeployPages.deploy_page),
    Route("POST", "/deploy",                             DeployPages.deploy),
    Route("GET",  "/activations",                        ActivationPages.activations_page),
    Route("GET",  "/activations/{id}",                   ActivationPages.activation_page),
    Route("GET",  "/activations/{id}/result",            ActivationPages.activation_result),
    Route("GET",  "/tables",                             TablePages.tables_page),
    Route("GET",  "/tables/{name}",                      TablePages.table_page),
    Route("GET",  "/workflows",                          WorkflowPages.workflows_page, DEFAULT_ONLY),
    Route("GET",  "/workflows/{name}",                   WorkflowPages.workflow_page, DEFAULT_ONLY),
    Route("GET",  "/executions/{id}",                    WorkflowPages.execution_page, DEFAULT_ONLY),
)


def pages(table: tuple[Route, ...], guard: Guard, *handlers: object) -> list[BaseRoute]:
    """Starlette routes of `table`, each handler bound to its object of `handlers` behind the row's guard."""
    routes: list[BaseRoute] = []
    for route, handler in bind(table, *handlers):
        who = route.options.get("guard", "session")
        endpoint = handler if who == "none" else guard.authed(
            guard.default_only(handler) if who == "default" else handler)
        routes.append(Page(route.path, endpoint, methods=route.method.split(","), name=route.handler.__name__))
    return routes


def build_console(*, settings: Settings, store: FunctionStore, registry: LiveFunctions, recorder: Activations,
                  triggers: Triggers, deployer: Deploys, invoker: Invocations, metrics: Metrics,
                  storage: StorageService | None, workflows: Any, db: Any, admin_key: str, keys: Any = None,
                  namespaces: Any = None, usage: Any = None) -> Starlette:
    """The console's pages, on the services the composition root hands it. `keys` (KeyRing): logging in with a
    namespace's key; `namespaces`: the administrator's namespace picker; `usage` (the store's hourly sums): the
    usage page."""
    sessions = Sessions(settings.console_session_ttl)
    results = ResultCache()
    view = Pages()
    routes = pages(
        CONSOLE, Guard(sessions, namespaces, view),
        LoginPages(settings=settings, sessions=sessions, admin_key=admin_key, keys=keys, namespaces=namespaces,
                   pages=view),
        UsagePage(recorder=recorder, usage=usage, pages=view),
        FunctionPages(store=store, registry=registry, recorder=recorder, metrics=metrics, triggers=triggers,
                      storage=storage, pages=view),
        TriggerPages(triggers=triggers, registry=registry, store=store, storage=storage, pages=view),
        InvokePages(invoker=invoker, registry=registry, recorder=recorder, store=store, results=results, pages=view),
        DeployPages(settings=settings, deployer=deployer, pages=view),
        ActivationPages(settings=settings, store=store, recorder=recorder, results=results, pages=view),
        TablePages(service=db, pages=view),
        WorkflowPages(workflows=workflows, pages=view))
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))

    async def http_error(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 500)
        if code == 404:
            return view.not_found(request, f"page {request.url.path!r}")
        return HTMLResponse(f"error {code}", status_code=code, headers=SECURITY_HEADERS)

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


__all__ = ["CONSOLE", "build_console"]
