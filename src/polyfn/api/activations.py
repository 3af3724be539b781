"""`/v1/activations`: list and show invocation records (an async one merged with its queue state) and cancel a
running or queued invocation. Routed by the control API's table (api/app.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from fastapi import Query, Request

from polyfn import tenancy
from polyfn.api import events
from polyfn.api import namespaces as namespaces_api
from polyfn.api.errors import ApiError
from polyfn.model import Activation

if TYPE_CHECKING:
    from polyfn.services import Activations, AsyncJobs, FunctionStore, Invocations


def _activation_json(act: Activation) -> dict[str, Any]:
    out = msgspec.to_builtins(act)
    ns, out["function"] = tenancy.split(act.function)
    out["namespace"] = ns
    return out


class ActivationRoutes:
    """Records are read from `store` after the `recorder` flushed; `queue` knows the async ones not yet run."""

    def __init__(self, *, store: FunctionStore, recorder: Activations, queue: AsyncJobs, invoker: Invocations):
        self.store = store
        self.recorder = recorder
        self.queue = queue
        self.invoker = invoker

    async def list_activations(
        self, request: Request, function: str | None = None, status: str | None = None, cold: bool | None = None,
        since: float | None = None, until: float | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        await self.recorder.flush()
        acts = await self.store.list_activations(function=function, status=status, cold=cold, since=since,
                                                 until=until, limit=limit,
                                                 namespace=namespaces_api.request_namespace(request))
        return {"activations": [_activation_json(a) for a in acts]}

    async def get_activation(self, activation_id: str, request: Request) -> dict[str, Any]:
        queued = await self.queue.lookup(activation_id)  # before the flush: no gap
        await self.recorder.flush()
        act = await self.store.get_activation(activation_id)
        if not self._visible(request, act, queued):
            act = queued = None
        if act is None and queued is None:
            raise ApiError(404, "activation_not_found", f"activation {activation_id!r} does not exist")
        return events.merge_activation(_activation_json(act) if act else None, queued)

    async def cancel_activation(self, activation_id: str, request: Request) -> dict[str, Any]:
        """Cancel an invocation: a running one is stopped (its caller gets 499 `function_cancelled`), an
        accepted async one that has not started goes to the dead-letter queue instead of running."""
        queue, store = self.queue, self.store
        if not await self._owned_activation(request, activation_id):
            raise ApiError(404, "activation_not_found", f"activation {activation_id!r} does not exist")
        if self.invoker.cancel(activation_id):
            return {"activation_id": activation_id, "cancelled": True, "was": "running"}
        was = await queue.cancel(activation_id) if queue is not None else None
        if was:
            return {"activation_id": activation_id, "cancelled": True, "was": was}
        queued = await queue.lookup(activation_id) if queue else None
        await self.recorder.flush()
        act = await store.get_activation(activation_id)
        if queue is not None and (act is None or queued is not None):  # another node of the cluster may have it
            was = await queue.cancel_elsewhere(activation_id)
            if was:
                return {"activation_id": activation_id, "cancelled": True, "was": was}
            queued = await queue.lookup(activation_id)
            act = await store.get_activation(activation_id)
        if act is None and queued is None:
            raise ApiError(404, "activation_not_found", f"activation {activation_id!r} does not exist")
        job = (queued or {}).get("job")
        state = job.state if job is not None else act.status if act else "?"
        raise ApiError(409, "not_cancellable", f"activation {activation_id!r} is {state}: only a running invocation "
                       "or an async one that has not started can be cancelled")

    @staticmethod
    def _visible(request: Request, act: Activation | None, queued: dict[str, Any] | None) -> bool:
        """Is this activation (or queued job) of the request's namespace?"""
        ns = namespaces_api.request_namespace(request)
        function = act.function if act is not None else getattr((queued or {}).get("job"), "function", None)
        return function is None or tenancy.owns(ns, function)

    async def _owned_activation(self, request: Request, activation_id: str) -> bool:
        """Is the activation (running, queued or recorded) of the request's namespace? (True in `default` for
        the administrator: it may cancel what it cannot name.)"""
        ns = namespaces_api.request_namespace(request)
        if ns == tenancy.DEFAULT and tenancy.key_namespace(request.state.key) is None:
            return True
        entry = getattr(self.invoker, "running", {}).get(activation_id)
        owner = entry[0].revision_key.rpartition("@")[0] if entry is not None else None
        if owner is None and self.queue is not None:
            owner = getattr((await self.queue.lookup(activation_id) or {}).get("job"), "function", None)
        if owner is None:
            await self.recorder.flush()
            act = await self.store.get_activation(activation_id)
            owner = act.function if act is not None else None
        return owner is not None and tenancy.owns(ns, owner)
