"""Observability routes: `GET /metrics` (Prometheus text), `GET /v1/stats` (what `polyfn top` shows) and
`GET /v1/functions/{name}/stats` (one function's last hour, for charts)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from polyfn import tenancy
from polyfn.api.errors import ApiError
from polyfn.api.namespaces import request_namespace
from polyfn.api.routes import Route, mount
from polyfn.observe.metrics import SLOT_S, SLOTS

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.observe.metrics import Metrics
    from polyfn.services import AsyncJobs, LiveFunctions

EMPTY_INSTANCES = {"starting": 0, "idle": 0, "busy": 0, "queued": 0, "memory_mb": 0}


def function_stats(metrics: Metrics, registry: LiveFunctions, window: float, now: float | None = None,
                   namespace: str | None = None) -> list[dict[str, Any]]:
    """Per-function figures over the last `window` seconds, for every deployed function (and any
    function that ran recently) — with `namespace`, only its functions, by local name — sorted by name."""
    now = time.time() if now is None else now
    m = metrics
    instances = m.instances()
    names = set(registry.functions) | set(m.functions) | set(instances)
    if namespace is not None:
        names = {n for n in names if tenancy.owns(namespace, n)}
    out = []
    for name in sorted(names, key=tenancy.local):
        fs = m.functions.get(name)
        figures = fs.window(now, window) if fs else {
            "invocations": 0, "errors": 0, "throttled": 0, "cold_starts": 0, "rps": 0.0, "p50_ms": None,
            "p99_ms": None}
        active = registry.get(name)
        out.append({"name": name if namespace is None else tenancy.local(name), "deployed": active is not None,
                    "revision": active.revision.number if active else None,
                    **figures, "instances": instances.get(name, dict(EMPTY_INSTANCES))})
    return out


class ObserveRoutes:
    """`series`: the node's metrics (the name `metrics` is the scrape's handler); `require_key`: the control API's
    key check (a scrape without a token is let through when POLYFN_METRICS_PUBLIC is set)."""

    def __init__(self, *, settings: Settings, series: Metrics, registry: LiveFunctions, queue: AsyncJobs,
                 workflows: Any, require_key: Callable[..., Any]):
        self.settings = settings
        self.series = series
        self.registry = registry
        self.queue = queue
        self.workflows = workflows
        self.require_key = require_key

    async def _scrape_namespace(self, request: Request) -> str | None:
        """Whose series a scrape sees: a namespace's key its namespace's; the node admin's every namespace's
        (or the one it asks for); an anonymous scrape (POLYFN_METRICS_PUBLIC) the default namespace's. A token
        given is always checked."""
        if self.settings.metrics_public and not request.headers.get("authorization"):
            return tenancy.DEFAULT
        await self.require_key(request)
        if tenancy.key_namespace(request.state.key) is None and not (
                request.query_params.get("namespace") or request.headers.get(tenancy.HEADER)):
            return None
        return request_namespace(request)

    async def metrics(self, request: Request) -> Response:
        namespace = await self._scrape_namespace(request)
        await _async_queue_gauges(self.queue, self.series)
        body, content_type = self.series.render(namespace)
        return Response(body, media_type=content_type.split(";")[0], headers={"content-type": content_type})

    async def stats(self, request: Request, window: Annotated[float, Query(ge=SLOT_S, le=SLOT_S * SLOTS)] = 60,
                    ) -> dict[str, Any]:
        now = time.time()
        ns = request_namespace(request)
        return {"now": now, "window_s": window,
                "functions": function_stats(self.series, self.registry, window, now, ns),
                "workflows": self.workflows.stats(ns) if self.workflows is not None else []}

    async def one(self, name: str, window: Annotated[float, Query(ge=SLOT_S, le=SLOT_S * SLOTS)] = SLOT_S * SLOTS,
                  ) -> dict[str, Any]:
        fs = self.series.functions.get(name)
        if fs is None and self.registry.get(name) is None:
            raise ApiError(404, "function_not_found", f"function {name!r} does not exist")
        now = time.time()
        from polyfn.observe.metrics import FunctionStats

        fs = fs or FunctionStats(name)
        return {"name": tenancy.local(name), "now": now, "step_s": SLOT_S, "summary": fs.window(now, 60),
                "points": fs.series(now, window)}


#: the scrape (its own check of the key: `_scrape_namespace`)
SCRAPE = (
    Route("GET", "/metrics", ObserveRoutes.metrics, {"tags": ["observability"], "summary":
          "Prometheus metrics (text exposition format; a namespace's key sees its namespace's)"}),
)
#: behind the API key
STATS = (
    Route("GET", "/v1/stats", ObserveRoutes.stats, {"tags": ["observability"], "summary":
          "Per-function rps, latency percentiles, errors, cold starts and instances"}),
    Route("GET", "/v1/functions/{name}/stats", ObserveRoutes.one, {"tags": ["observability"], "summary":
          "One function's history in 10-second steps (default: the last hour)"}),
)


def build_router(*, settings: Settings, metrics: Metrics, registry: LiveFunctions, queue: AsyncJobs, workflows: Any,
                 require_key: Callable[..., Any]) -> APIRouter:
    routes = ObserveRoutes(settings=settings, series=metrics, registry=registry, queue=queue, workflows=workflows,
                           require_key=require_key)
    router = APIRouter()
    mount(router, SCRAPE, routes)
    keyed = APIRouter(dependencies=[Depends(require_key)])
    mount(keyed, STATS, routes)
    router.include_router(keyed)
    return router


async def _async_queue_gauges(queue: AsyncJobs, metrics: Metrics) -> None:
    """polyfn_async_backlog / polyfn_async_dlq_size: counted in the queue file (and the cluster's job stream)
    when /metrics is scraped (gauge callbacks are synchronous, so the route reads them first). One indexed
    query per scrape, nothing on the invocation path."""
    if queue.db is None:  # not started
        return
    try:
        by_function, by_function_dead = await queue.backlog()
    except Exception:
        return
    backlog = {(f,): float(n) for f, n in by_function.items()}
    dead = {(f,): float(n) for f, n in by_function_dead.items()}
    metrics.gauge("polyfn_async_backlog", "Async invocations queued or running, by function.", ("function",),
                       lambda: backlog)
    metrics.gauge("polyfn_async_dlq_size", "Dead-lettered async invocations and trigger messages, by function.",
                       ("function",), lambda: dead)
