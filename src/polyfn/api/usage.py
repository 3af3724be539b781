"""`GET /v1/usage`: metered usage (observe/usage.py) summed by function, day or hour, optionally priced."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from polyfn.api.errors import ApiError
from polyfn.api.namespaces import request_namespace
from polyfn.api.routes import Route, mount
from polyfn.observe import usage as metering
from polyfn.services import Activations, UsageSums
from polyfn.tenancy import local

#: the latest `since`/`until` taken (the year 5138): beyond, the store's integer hours overflow
MAX_EPOCH = 1e11


class UsageRoutes:
    def __init__(self, *, recorder: Activations, usage: UsageSums):
        self.recorder = recorder
        self.usage = usage

    async def get_usage(self, request: Request, since: float | None = None, until: float | None = None,
                        by: str = "function", function: str | None = None, prices: str | None = None
                        ) -> dict[str, Any]:
        """Usage of the hours that start in `[since, until)` (epoch seconds; `since` defaults to 30 days ago,
        rounded down to its hour), grouped `by` function, day or hour (UTC). `prices`: the name of a price table
        the node ships (`lambda`, `alibaba-fc`, `tencent-scf`) adds an estimated cost."""
        for name, value in (("since", since), ("until", until)):
            if value is not None and not 0 <= value <= MAX_EPOCH:  # (NaN too: no comparison holds for it)
                raise ApiError(400, "invalid_request", f"{name}={value!r}: epoch seconds, 0 to {MAX_EPOCH:.0f}")
        if by not in metering.BY:
            raise ApiError(400, "invalid_request", f"by={by!r}: use one of {', '.join(metering.BY)}")
        table = None
        if prices is not None:
            try:
                table = metering.load_prices(prices, files=False)  # (never a path: the node's files are its own)
            except ValueError as e:
                raise ApiError(400, "unknown_price_table", str(e)) from None
        if since is None:
            since = time.time() - 30 * 86400
        await self.recorder.flush()  # (the flush writes the metered sums of every record made before it)
        rows = await self.usage.list_usage(since=since, until=until, namespace=request_namespace(request),
                                           function=local(function) if function is not None else None)
        return metering.summarise(rows, by, since, until, table)


USAGE = (Route("GET", "/usage", UsageRoutes.get_usage),)


def build_router(*, recorder: Activations, usage: UsageSums) -> APIRouter:
    router = APIRouter(tags=["usage"])
    mount(router, USAGE, UsageRoutes(recorder=recorder, usage=usage))
    return router
