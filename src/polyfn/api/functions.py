"""`/v1/functions`: deploy (create or a new revision, optionally streaming its progress), list, describe, delete,
invoke (sync, async, stream; an explicit vendor event or a CloudEvent) and the function's log lines. Routed by
the control API's table (api/app.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from polyfn import tenancy
from polyfn.api import events
from polyfn.api import namespaces as namespaces_api
from polyfn.api.deploy_body import read_deploy
from polyfn.api.errors import ApiError
from polyfn.api.logs import compile_grep, follow_logs
from polyfn.call import Call
from polyfn.deploy.errors import DeployError
from polyfn.events import cloudevent, kinds
from polyfn.gateway.asgi import StreamedResponse
from polyfn.headers import from_outside
from polyfn.model import FunctionInfo
from polyfn.observe.tracing import parse_traceparent

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.services import (
        Activations,
        AsyncJobs,
        DeleteFunction,
        Deploys,
        FunctionStore,
        Instances,
        Invocations,
        LiveFunctions,
        Triggers,
    )


def _function_json(registry: LiveFunctions, info: FunctionInfo, **extra: Any) -> dict[str, Any]:
    out = msgspec.to_builtins(info)
    active = registry.get(info.name)
    out["instances"] = active.pool.stats() if active else {"starting": 0, "idle": 0, "busy": 0, "queued": 0}
    ns, name = tenancy.split(info.name)  # (shown by its local name, with its namespace)
    out["url"] = f"/fn/{name}" if ns == tenancy.DEFAULT else f"/fn/{ns}/{name}"
    if ns != tenancy.DEFAULT:
        out["name"] = out["spec"]["name"] = name
    out["namespace"] = ns
    out.update(extra)
    return out


class FunctionRoutes:
    """`delete_function` is the root's one delete (it drops what points at the function too)."""

    def __init__(self, *, settings: Settings, store: FunctionStore, registry: LiveFunctions, deployer: Deploys,
                 invoker: Invocations, queue: AsyncJobs, recorder: Activations, triggers: Triggers,
                 manager: Instances, delete_function: DeleteFunction):
        self.settings = settings
        self.store = store
        self.registry = registry
        self.deployer = deployer
        self.invoker = invoker
        self.queue = queue
        self.recorder = recorder
        self.triggers = triggers
        self.manager = manager
        self.remove_function = delete_function

    async def _deploy(self, request: Request, name: str | None, stream: bool) -> Response:
        fields, files = await read_deploy(request, self.settings.max_code_size, self.settings.max_code_files)
        if isinstance(fields.get("name"), str):  # (a name in the body is local to the request's namespace)
            if tenancy.SEP in fields["name"]:
                raise DeployError("invalid_name", f"invalid function name {fields['name']!r}: use 1-63 characters "
                                  "a-z, 0-9 and '-', starting with a letter")
            fields["name"] = tenancy.qualify(namespaces_api.request_namespace(request), fields["name"])
        if name is not None:
            if fields.get("name") not in (None, name):
                raise DeployError("invalid_spec", f"name in the body ({fields['name']!r}) differs from the URL ({name!r})")
            fields["name"] = name
        deployer, registry = self.deployer, self.registry
        if not stream:
            info, created, detected = await deployer.deploy(fields, files)
            return JSONResponse(_function_json(registry, info, detected=detected), status_code=201 if created else 200)
        progress: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def run() -> None:
            try:
                info, created, detected = await deployer.deploy(
                    fields, files, lambda m: progress.put_nowait({"event": "progress", "message": m}))
                progress.put_nowait({"event": "done", "created": created,
                                     "function": _function_json(registry, info, detected=detected)})
            except DeployError as e:
                progress.put_nowait({"event": "error", "error": {"code": e.code, "message": e.message}})
            except Exception as e:  # reported, never a silent hang
                progress.put_nowait({"event": "error", "error": {"code": "internal_error", "message": str(e)}})
            finally:
                progress.put_nowait(None)

        task = asyncio.create_task(run())

        async def lines() -> AsyncIterator[bytes]:
            try:
                while (item := await progress.get()) is not None:
                    yield json.dumps(item).encode() + b"\n"
            finally:
                await task

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def create_function(self, request: Request, stream: bool = False) -> Response:
        return await self._deploy(request, None, stream)

    async def put_function(self, name: str, request: Request, stream: bool = False) -> Response:
        return await self._deploy(request, name, stream)

    async def list_functions(self, request: Request) -> dict[str, Any]:
        ns = namespaces_api.request_namespace(request)
        infos = await self.store.list_functions(ns)
        return {"functions": [_function_json(self.registry, i) for i in infos]}

    async def get_function(self, name: str) -> dict[str, Any]:
        info = await self.store.get_function(name)
        if info is None:
            raise ApiError(404, "function_not_found", f"function {name!r} does not exist")
        revs = await self.store.list_revisions(name)
        from polyfn.api.scaling import scaling_json

        return _function_json(self.registry, info, scaling=scaling_json(self.registry, self.manager, name),
                              triggers=self.triggers.list(name), revisions=[
            {"number": r.number, "created_at": r.created_at, "code_sha256": r.code_sha256} for r in revs])

    async def delete_function(self, name: str) -> dict[str, Any]:
        if not await self.remove_function(name):
            raise ApiError(404, "function_not_found", f"function {name!r} does not exist")
        return {"deleted": name}

    async def invoke(self, name: str, request: Request, mode: str = "sync", event: Annotated[str | None, Query(
            description="Build a vendor event of this kind (s3:put, sqs, timer, logs, …) from the JSON body; "
                        "the function's flavor shapes it")] = None) -> Response:
        body = await request.body()
        ct = request.headers.get("content-type", "application/json")
        if "json" in ct and body:
            try:
                json.loads(body)
            except ValueError as e:
                raise ApiError(400, "invalid_json", f"the payload is not valid JSON ({e}); send "
                               "Content-Type: application/octet-stream for raw bytes") from None
        kind = "event"
        if event is not None or ct.startswith(cloudevent.CONTENT_TYPE):
            body, ct = _cloudevent_body(event, body, ct)
            kind = "cloudevent"
        if mode == "async":
            return await events.accept_async(self.queue, request, name, kind, body, ct)
        if mode not in ("sync", "stream"):
            raise ApiError(400, "invalid_request", f"mode={mode!r}: use sync, async or stream")
        # The caller's API key authorises the invoke; it is never passed on to the function.
        headers = from_outside([(k, v) for k, v in request.headers.items() if k not in ("authorization", "cookie")])
        trace_id, parent_id = parse_traceparent(request.headers.get("traceparent", ""))
        if mode == "stream":  # a streamed response relayed as it comes, chunked (polyfn invoke --stream)
            out = await self.invoker.call(Call(name, kind, "invoke", "POST", "/", "", headers, body, ct, trace_id,
                                               parent_id, stream=True))
            if out.stream is not None:
                return StreamedResponse(out)
            return Response(out.body, status_code=out.status, headers={k.decode(): v.decode() for k, v in out.headers})
        out = await self.invoker.call(Call(name, kind, "invoke", headers=headers, body=body, content_type=ct,
                                           trace_id=trace_id, parent_id=parent_id))
        return Response(out.body, status_code=out.status, headers={k.decode(): v.decode() for k, v in out.headers})

    async def logs(self, name: str, since: float | None = None, activation: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=10000)] = 200, follow: bool = False,
                   grep: Annotated[str | None, Query(max_length=1000)] = None) -> Response:
        pattern = compile_grep(grep)
        await self.recorder.flush()
        if await self.store.get_function(name) is None and not follow:
            raise ApiError(404, "function_not_found", f"function {name!r} does not exist")
        lines = await self.store.get_logs(name, since=since, activation=activation, limit=limit, grep=pattern)
        if not follow:
            return JSONResponse({"logs": lines})
        return StreamingResponse(follow_logs(self.recorder, name, lines, activation, pattern),
                                 media_type="text/event-stream", headers={"cache-control": "no-cache"})


def _cloudevent_body(event: str | None, body: bytes, ct: str) -> tuple[bytes, str]:
    """The CloudEvent an explicit-event invoke carries: built from `?event=KIND` and the JSON body, or the
    body itself when it is already a structured CloudEvent."""
    if event is None:
        try:
            cloudevent.CloudEvent.from_json(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ApiError(400, "invalid_cloudevent", f"the body is not a structured CloudEvent: {e}") from None
        return body, cloudevent.CONTENT_TYPE
    if "json" not in ct:
        raise ApiError(400, "invalid_json", "an explicit event's data must be JSON (Content-Type: application/json)")
    try:
        ce = kinds.build(event, json.loads(body) if body else {})
    except kinds.UnknownKind as e:
        raise ApiError(400, "unknown_event_kind", str(e)) from None
    return ce.to_json(), cloudevent.CONTENT_TYPE
