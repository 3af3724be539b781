"""The console's function pages: the list with each one's health, one function's page, its charts and live logs,
and its triggers panel (list, add, remove)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from polyfn.api.errors import ApiError
from polyfn.api.logs import follow_logs
from polyfn.api.observe import function_stats
from polyfn.api.triggers import create_trigger
from polyfn.console.frame import Pages, held, namespace
from polyfn.console.views import chart, health, shown, trigger_panel
from polyfn.observe.metrics import SLOT_S, FunctionStats
from polyfn.tenancy import DEFAULT, local

if TYPE_CHECKING:
    from polyfn.observe.metrics import Metrics
    from polyfn.services import Activations, FunctionStore, LiveFunctions, Triggers
    from polyfn.storage.service import StorageService


class FunctionPages:
    def __init__(self, *, store: FunctionStore, registry: LiveFunctions, recorder: Activations, metrics: Metrics,
                 triggers: Triggers, storage: StorageService | None, pages: Pages):
        self.store = store
        self.registry = registry
        self.recorder = recorder
        self.metrics = metrics
        self.triggers = triggers
        self.storage = storage
        self.pages = pages

    async def functions_page(self, request: Request) -> Response:
        infos = await self.store.list_functions(namespace(request))
        now = time.time()
        stats = {s["name"]: s for s in function_stats(self.metrics, self.registry, 60, now)}
        rows = []
        for info in infos:
            fs = self.metrics.functions.get(info.name)
            active = self.registry.get(info.name)
            failing = bool(active and active.pool._init_error is not None)
            label, cls = health(fs, failing, now)
            hour = fs.window(now, 3600) if fs else {"invocations": 0, "errors": 0}
            rows.append({"info": shown(info, name=local(info.name)), "stats": stats.get(info.name, {}),
                         "health": label, "health_class": cls, "hour": hour})
        return self.pages.render(request, "functions.html", active="functions", rows=rows)

    async def function_page(self, request: Request) -> Response:
        name = held(request)
        info = await self.store.get_function(name) if name is not None else None
        if info is None or name is None:
            return self.pages.not_found(request, f"function {request.path_params['name']!r}")
        await self.recorder.flush()
        recent = await self.store.list_activations(function=name, limit=10)
        now = time.time()
        fs = self.metrics.functions.get(name)
        active = self.registry.get(name)
        label, cls = health(fs, bool(active and active.pool._init_error is not None), now)
        ns, short = namespace(request), local(name)
        return self.pages.render(request, "function.html", active="functions", info=shown(info, name=short),
                                 recent=[shown(a, function=short) for a in recent],
                                 fn_path=f"/fn/{short}" if ns == DEFAULT else f"/fn/{ns}/{short}",
                                 health=label, health_class=cls, pool=active.pool.stats() if active else None,
                                 sample='{\n  "name": "world"\n}', **trigger_panel(self.triggers, self.storage, name))

    async def charts(self, request: Request) -> Response:
        name = held(request)
        fs = self.metrics.functions.get(name) if name is not None else None
        if name is None or (fs is None and self.registry.get(name) is None):
            return self.pages.not_found(request, f"function {request.path_params['name']!r}")
        now = time.time()
        points = (fs or FunctionStats(name)).series(now, 3600)
        return self.pages.render(request, "_charts.html", name=name, step=SLOT_S, charts=[
            ("Invocations per 10 s", chart(points, ("invocations",)), ("invocations",)),
            ("Errors per 10 s", chart(points, ("errors",)), ("errors",)),
            ("Latency p50 / p99 (ms)", chart(points, ("p50_ms", "p99_ms")), ("p50_ms", "p99_ms")),
            ("Cold starts per 10 s", chart(points, ("cold_starts",)), ("cold_starts",)),
            ("Instances", chart(points, ("instances",)), ("instances",)),
        ], totals=(fs or FunctionStats(name)).window(now, 3600))

    async def live_logs(self, request: Request) -> Response:
        name = held(request)
        if name is None or await self.store.get_function(name) is None:
            return self.pages.not_found(request, f"function {request.path_params['name']!r}")
        await self.recorder.flush()
        backlog = await self.store.get_logs(name, limit=50)
        return StreamingResponse(follow_logs(self.recorder, name, backlog, None), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


class TriggerPages:
    """A function's triggers panel: its triggers and storage notifications, a form to add one."""

    def __init__(self, *, triggers: Triggers, registry: LiveFunctions, store: FunctionStore,
                 storage: StorageService | None, pages: Pages):
        self.triggers = triggers
        self.registry = registry
        self.store = store
        self.storage = storage
        self.pages = pages

    def panel(self, request: Request, name: str, error: str = "", **ctx: Any) -> Response:
        return self.pages.render(request, "_triggers.html", **trigger_panel(self.triggers, self.storage, name, error,
                                                                            **ctx))

    async def triggers_partial(self, request: Request) -> Response:
        name = held(request)
        if name is None or (self.registry.get(name) is None and await self.store.get_function(name) is None):
            return self.pages.not_found(request, f"function {request.path_params['name']!r}")
        return self.panel(request, name, list_only=bool(request.query_params.get("list")))

    async def trigger_add(self, request: Request) -> Response:
        name = held(request)
        if name is None:
            return self.pages.not_found(request, f"function {request.path_params['name']!r}")
        form = await request.form()
        values = {k: str(form.get(k) or "").strip() for k in ("kind", "id", "options")}
        try:
            options = json.loads(values["options"] or "{}")
        except ValueError as e:
            return self.panel(request, name, f"Malformed JSON in the options: {e}", form=values)
        if not isinstance(options, dict):
            return self.panel(request, name, "The options must be a JSON object, e.g. {\"schedule\": \"*/5 * * * *\"}",
                              form=values)
        try:
            _status, view = await create_trigger(self.triggers, self.registry, self.store, self.storage, name,
                                                 values["kind"], options, values["id"] or None)
        except ApiError as e:
            return self.panel(request, name, f"{e.code}: {e.message}", form=values)
        return self.panel(request, name, notice=f"added trigger {view.get('id', '')}")

    async def trigger_remove(self, request: Request) -> Response:
        name, tid = held(request), request.path_params["id"]
        if name is None:
            return self.pages.not_found(request, f"function {request.path_params['name']!r}")
        runner = self.triggers.runners.get(tid)
        notes = self.storage.notifications if self.storage is not None else None
        if runner is not None and runner.trigger.function == name:
            await self.triggers.delete(tid)
        elif notes is not None and any(t.id == tid for t in notes.list(function=name)):
            await notes.remove(tid)
        else:
            return self.panel(request, name, f"function {name!r} has no trigger {tid!r}")
        return self.panel(request, name, notice=f"removed trigger {tid}")
