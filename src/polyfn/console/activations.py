"""The console's record pages: activations (filtered list, one activation, its full result) and the namespace's
metered usage per day."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from polyfn.console.frame import SECURITY_HEADERS, STATUSES, Pages, namespace
from polyfn.console.views import chart, shown
from polyfn.observe import usage as metering
from polyfn.tenancy import SEP, local, owns, qualify

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.console.sessions import ResultCache
    from polyfn.services import Activations, FunctionStore


class ActivationPages:
    """`results`: the full bodies of the console's own recent invocations (stored results may be truncated)."""

    def __init__(self, *, settings: Settings, store: FunctionStore, recorder: Activations, results: ResultCache,
                 pages: Pages):
        self.settings = settings
        self.store = store
        self.recorder = recorder
        self.results = results
        self.pages = pages

    async def activations_page(self, request: Request) -> Response:
        q = request.query_params
        function = q.get("function") or None
        status = q.get("status") if q.get("status") in STATUSES else None
        cold = {"cold": True, "warm": False}.get(q.get("cold", ""))
        try:
            since_min = float(q.get("since_min") or 0)
        except ValueError:
            since_min = 0
        await self.recorder.flush()
        ns = namespace(request)
        acts = await self.store.list_activations(
            function=qualify(ns, function) if function is not None and SEP not in function else function,
            status=status, cold=cold, since=time.time() - since_min * 60 if since_min > 0 else None, limit=100,
            namespace=ns)
        acts = [shown(a, function=local(a.function)) for a in acts if owns(ns, a.function)]
        names = [local(i.name) for i in await self.store.list_functions(ns)]
        tpl = "_activation_rows.html" if request.headers.get("hx-request") and q.get("partial") else "activations.html"
        return self.pages.render(request, tpl, active="activations", acts=acts, names=names,
                                 filters={"function": function or "", "status": status or "",
                                          "cold": q.get("cold", ""), "since_min": q.get("since_min", "")})

    async def _owned(self, request: Request) -> Any:
        """The activation the path names, if the session's namespace owns it (else None)."""
        await self.recorder.flush()
        act = await self.store.get_activation(request.path_params["id"])
        return act if act is not None and owns(namespace(request), act.function) else None

    async def activation_page(self, request: Request) -> Response:
        aid = request.path_params["id"]
        act = await self._owned(request)
        if act is None:
            return self.pages.not_found(request, f"activation {aid!r}")
        act = shown(act, function=local(act.function))
        stored = len(act.result.encode())
        return self.pages.render(request, "activation.html", active="activations", act=act,
                                 maybe_truncated=stored >= self.settings.result_truncate,
                                 full_available=self.results.get(aid) is not None)

    async def activation_result(self, request: Request) -> Response:
        aid = request.path_params["id"]
        act = await self._owned(request)
        if act is None:
            return self.pages.not_found(request, f"activation {aid!r}")
        cached = self.results.get(aid)
        headers = {**SECURITY_HEADERS, "content-disposition": f'attachment; filename="{aid[:32]}.out"'}
        if cached is not None:
            return Response(cached[0], media_type="application/octet-stream", headers=headers)
        headers["x-polyfn-truncated"] = "true" if len(act.result.encode()) >= self.settings.result_truncate else "false"
        return Response(act.result.encode(), media_type="application/octet-stream", headers=headers)


class UsagePage:
    """`usage` (the store's hourly sums, or None: metering off)."""

    def __init__(self, *, recorder: Activations, usage: Any, pages: Pages):
        self.recorder = recorder
        self.usage = usage
        self.pages = pages

    async def usage_page(self, request: Request) -> Response:
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
        await self.recorder.flush()
        usage = self.usage
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
        return self.pages.render(request, "usage.html", active="usage", charts=charts_, report=report, days=days,
                                 first=points[0]["day"], last=points[-1]["day"], tables=metering.price_tables(),
                                 picked=prices["name"] if prices else "", picked_ref=q.get("prices") or "")
