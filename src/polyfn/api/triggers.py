"""Trigger routes: `POST/GET /v1/functions/{name}/triggers`, `GET /v1/triggers`, `GET/DELETE /v1/triggers/{id}`.

Trigger ids belong to a namespace as function names do: `nightly` of team-a is held as `team-a~nightly`
(tenancy.py), so two namespaces may each have one and another namespace's answers `trigger_not_found`; the
views show local ids and function names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse

from polyfn.api.errors import ApiError, parsed_json
from polyfn.api.namespaces import request_namespace
from polyfn.tenancy import SEP, local, owns, qualify
from polyfn.triggers.base import TriggerConfigError

if TYPE_CHECKING:
    from polyfn.services import FunctionStore, LiveFunctions, Triggers
    from polyfn.storage.service import StorageService


class TriggerRoutes:
    """`storage`: the object store, whose notifications are a function's `storage` triggers (None when off)."""

    def __init__(self, *, triggers: Triggers, registry: LiveFunctions, store: FunctionStore,
                 storage: StorageService | None):
        self.triggers = triggers
        self.registry = registry
        self.store = store
        self.storage = storage

    async def add_trigger(self, name: str, request: Request) -> JSONResponse:
        body = parsed_json(await request.body())
        if (not isinstance(body, dict) or not isinstance(body.get("kind"), str)
                or not isinstance(body.get("config") or {}, dict)):
            raise ApiError(400, "invalid_trigger", 'the body needs "kind" (e.g. "cron") and "config" (an object)')
        given = body.get("id")
        if given is not None and not isinstance(given, str):
            raise ApiError(400, "invalid_trigger", f'"id" must be a string, not {type(given).__name__}')
        if isinstance(given, str) and given:
            given = qualify(request_namespace(request), given)  # (`team-b~x` is no id: refused below as one)
        status, view = await create_trigger(self.triggers, self.registry, self.store, self.storage, name, body["kind"],
                                            body.get("config") or {}, given)
        return JSONResponse(shown(view), status_code=status)

    async def function_triggers(self, name: str) -> dict[str, Any]:
        return {"triggers": [shown(t) for t in self.triggers.list(name)]}

    async def all_triggers(self, request: Request, function: str | None = None) -> dict[str, Any]:
        ns = request_namespace(request)
        return {"triggers": [shown(t) for t in self.triggers.list(function) if owns(ns, t.get("function", ""))]}

    def _find(self, request: Request, trigger_id: str) -> Any:
        """The runner of the request's namespace's trigger `trigger_id` (a held id is never addressed; one
        made before trigger ids were namespaced has a plain id)."""
        if SEP in trigger_id:
            return None
        return self.triggers.runners.get(qualify(request_namespace(request), trigger_id)) or \
            self.triggers.runners.get(trigger_id)

    def _owned(self, request: Request, trigger_id: str) -> Any:
        runner = self._find(request, trigger_id)
        if runner is None or not owns(request_namespace(request), runner.trigger.function):
            raise ApiError(404, "trigger_not_found", f"trigger {trigger_id!r} does not exist")
        return runner

    async def get_trigger(self, trigger_id: str, request: Request) -> dict[str, Any]:
        return shown(self.triggers.view(self._owned(request, trigger_id)))

    async def delete_trigger(self, trigger_id: str, request: Request) -> dict[str, Any]:
        runner = self._owned(request, trigger_id)
        if not await self.triggers.delete(runner.trigger.id):
            raise ApiError(404, "trigger_not_found", f"trigger {trigger_id!r} does not exist")
        return {"deleted": trigger_id}

    async def delete_function_trigger(self, name: str, trigger_id: str, request: Request) -> dict[str, Any]:
        runner = self._find(request, trigger_id)
        if runner is None or runner.trigger.function != name:
            raise ApiError(404, "trigger_not_found", f"function {local(name)!r} has no trigger {trigger_id!r}")
        await self.triggers.delete(runner.trigger.id)
        return {"deleted": trigger_id}


def shown(view: dict[str, Any]) -> dict[str, Any]:
    """A trigger's view as its namespace sees it: its id and function by local names."""
    out = dict(view)
    for k in ("id", "function"):
        if isinstance(out.get(k), str):
            out[k] = local(out[k])
    return out


async def create_trigger(triggers: Triggers, registry: LiveFunctions, store: FunctionStore,
                         storage: StorageService | None, name: str, kind: str, config: Any,
                         trigger_id: str | None = None) -> tuple[int, dict[str, Any]]:
    """Add a trigger of any kind (the API and the console); (HTTP status, view). Raises ApiError."""
    if registry.get(name) is None and await store.get_function(name) is None:
        raise ApiError(404, "function_not_found", f"function {name!r} does not exist")
    if kind == "storage":  # object-store notifications live with the store (docs/storage.md)
        return await _add_storage_trigger(storage, name, config, trigger_id)
    stream = config.get("stream") if kind == "log" and isinstance(config, dict) else None
    if isinstance(stream, str) and stream.startswith("fn:"):  # following a function that is not there
        from polyfn.triggers.log import followed

        source = followed(name, stream)  # (a function of the trigger's own namespace)
        if registry.get(source) is None and await store.get_function(source) is None:
            raise ApiError(404, "function_not_found", f"stream={stream!r}: function {stream[3:]!r} does not exist; "
                           "deploy it first, or name a log stream (lines POSTed to /v1/logs/STREAM)")
    try:
        runner = await triggers.create(name, kind, config, trigger_id)
    except TriggerConfigError as e:
        raise ApiError(409 if e.code == "trigger_exists" else 400, e.code, str(e)) from None
    await _first_attempt(runner)
    return 201, triggers.view(runner)


async def _first_attempt(runner: Any, wait: float = 3.0) -> None:
    """Wait (briefly) for a new trigger's first connection attempt, so the answer to its creation already
    says `connected`, or `error` with the reason when its broker is down (it is added anyway and keeps
    reconnecting: the broker may come back)."""
    import asyncio
    import time

    deadline = time.monotonic() + wait
    while runner.health.get("state") in ("starting", "connecting") and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def _add_storage_trigger(storage: StorageService | None, name: str, config: Any,
                               trigger_id: str | None = None) -> tuple[int, dict[str, Any]]:
    from polyfn.storage.notifications import TriggerError, from_vendor_config

    if storage is None:
        raise ApiError(409, "storage_disabled", "the object store is off on this node (storage port 0)")
    if not isinstance(config, dict):
        raise ApiError(400, "invalid_trigger", "a storage trigger's config is an object with at least `bucket`")
    bucket, events, prefix, suffix = from_vendor_config(config)
    try:
        trig = await storage.notifications.add(name, bucket, list(events), prefix, suffix, trigger_id)
    except TriggerError as e:
        if e.code == "trigger_exists":  # a redeploy of the same definition file: nothing to change
            return 200, {"kind": "storage", "function": name, "bucket": bucket, "unchanged": True}
        raise ApiError(e.status, e.code, e.message) from None
    return 201, {**trig.to_json(), "kind": "storage"}
