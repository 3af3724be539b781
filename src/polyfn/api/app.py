"""The control API: deploy, list, describe, delete, invoke, activations, logs.

Handlers are thin: they parse and authorise, then call the services the composition root (`node.py`) hands
`build_api` — each router gets only those it uses (`services.py`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from polyfn import __version__, tenancy
from polyfn.api import compat, errors, events
from polyfn.api import namespaces as namespaces_api
from polyfn.api import observe as observe_api
from polyfn.api.deploy_body import read_deploy
from polyfn.api.errors import ApiError
from polyfn.api.health import health
from polyfn.auth.access import authorize
from polyfn.auth.secrets import SecretValues
from polyfn.call import Call
from polyfn.deploy.errors import DeployError
from polyfn.events import cloudevent, kinds
from polyfn.gateway.asgi import StreamedResponse
from polyfn.headers import from_outside
from polyfn.model import Activation, FunctionInfo
from polyfn.observe.tracing import parse_traceparent

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.services import (
        Activations,
        AsyncJobs,
        CompatEntities,
        DeleteFunction,
        Deploys,
        FunctionStore,
        Instances,
        Invocations,
        Keys,
        LiveFunctions,
        RateLimits,
        Secrets,
        Triggers,
        UsageSums,
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


def _activation_json(act: Activation) -> dict[str, Any]:
    out = msgspec.to_builtins(act)
    ns, out["function"] = tenancy.split(act.function)
    out["namespace"] = ns
    return out


def build_api(*, settings: Settings, store: FunctionStore, registry: LiveFunctions, recorder: Activations,
              queue: AsyncJobs, triggers: Triggers, deployer: Deploys, invoker: Invocations, keys: Keys,
              limiter: RateLimits, manager: Instances, security_store: Secrets, secret_box: Any, metrics: Any,
              storage: Any, workflows: Any, apps: Any, sites: Any, sync: Any, delete_function: DeleteFunction,
              admin_key: str, lifespan: Any = None, compat_entities: CompatEntities | None = None,
              usage: UsageSums | None = None, namespaces: Any = None, tenancy_ops: Any = None,
              secret_values: SecretValues | None = None) -> FastAPI:
    """The control API and the vendor APIs on one FastAPI app; each router gets the services it uses. `sync` is
    the cluster sync (None on a single node); `admin_key` signs the Lambda API's code URLs."""
    app = FastAPI(
        title="polyfn",
        version=__version__,
        description="Control API of polyfn, a self-hosted serverless platform.",
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    errors.install(app)
    if namespaces is not None:  # resolves each /v1 request's namespace before routing (api/namespaces.py)
        app.add_middleware(namespaces_api.NamespaceScope, keys=keys, namespaces=namespaces)
    errors.openapi_without_422(app)
    remove_function = delete_function  # the name of the DELETE route's handler below

    async def require_key(request: Request) -> None:
        request.state.key = authorize(keys, limiter, settings, request.method, request.url.path, request.query_params,
                                      request.headers.get("authorization", ""))

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:  # (served by the node itself, Node.asgi: documented here)
        return health(registry, sync, queue)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=errors.ERROR_RESPONSES)

    @v1.get("/version")
    async def version() -> dict[str, str]:
        return {"version": __version__}

    async def _deploy(request: Request, name: str | None, stream: bool) -> Response:
        fields, files = await read_deploy(request, settings.max_code_size, settings.max_code_files)
        if isinstance(fields.get("name"), str):  # (a name in the body is local to the request's namespace)
            if tenancy.SEP in fields["name"]:
                raise DeployError("invalid_name", f"invalid function name {fields['name']!r}: use 1-63 characters "
                                  "a-z, 0-9 and '-', starting with a letter")
            fields["name"] = tenancy.qualify(namespaces_api.request_namespace(request), fields["name"])
        if name is not None:
            if fields.get("name") not in (None, name):
                raise DeployError("invalid_spec", f"name in the body ({fields['name']!r}) differs from the URL ({name!r})")
            fields["name"] = name
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

    @v1.post("/functions", status_code=201, summary="Deploy a function (create or new revision)")
    async def create_function(request: Request, stream: bool = False) -> Response:
        return await _deploy(request, None, stream)

    @v1.put("/functions/{name}", summary="Deploy a new revision of a function")
    async def put_function(name: str, request: Request, stream: bool = False) -> Response:
        return await _deploy(request, name, stream)

    @v1.get("/functions")
    async def list_functions(request: Request) -> dict[str, Any]:
        ns = namespaces_api.request_namespace(request)
        infos = await store.list_functions(ns)
        return {"functions": [_function_json(registry, i) for i in infos]}

    @v1.get("/functions/{name}")
    async def get_function(name: str) -> dict[str, Any]:
        info = await store.get_function(name)
        if info is None:
            raise ApiError(404, "function_not_found", f"function {name!r} does not exist")
        revs = await store.list_revisions(name)
        from polyfn.api.scaling import scaling_json

        return _function_json(registry, info, scaling=scaling_json(registry, manager, name),
                              triggers=triggers.list(name), revisions=[
            {"number": r.number, "created_at": r.created_at, "code_sha256": r.code_sha256} for r in revs])

    @v1.delete("/functions/{name}")
    async def delete_function(name: str) -> dict[str, Any]:
        if not await remove_function(name):
            raise ApiError(404, "function_not_found", f"function {name!r} does not exist")
        return {"deleted": name}

    @v1.post("/functions/{name}/invoke", summary="Invoke a function with an event payload (mode=sync|async|stream)")
    async def invoke(name: str, request: Request, mode: str = "sync", event: Annotated[str | None, Query(
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
            return await events.accept_async(queue, request, name, kind, body, ct)
        if mode not in ("sync", "stream"):
            raise ApiError(400, "invalid_request", f"mode={mode!r}: use sync, async or stream")
        # The caller's API key authorises the invoke; it is never passed on to the function.
        headers = from_outside([(k, v) for k, v in request.headers.items() if k not in ("authorization", "cookie")])
        trace_id, parent_id = parse_traceparent(request.headers.get("traceparent", ""))
        if mode == "stream":  # a streamed response relayed as it comes, chunked (polyfn invoke --stream)
            out = await invoker.call(Call(name, kind, "invoke", "POST", "/", "", headers, body, ct, trace_id, parent_id,
                                          stream=True))
            if out.stream is not None:
                return StreamedResponse(out)
            return Response(out.body, status_code=out.status, headers={k.decode(): v.decode() for k, v in out.headers})
        out = await invoker.call(Call(name, kind, "invoke", headers=headers, body=body, content_type=ct,
                                      trace_id=trace_id, parent_id=parent_id))
        return Response(out.body, status_code=out.status, headers={k.decode(): v.decode() for k, v in out.headers})

    @v1.get("/activations")
    async def list_activations(
        request: Request, function: str | None = None, status: str | None = None, cold: bool | None = None,
        since: float | None = None, until: float | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        await recorder.flush()
        acts = await store.list_activations(function=function, status=status, cold=cold, since=since,
                                            until=until, limit=limit,
                                            namespace=namespaces_api.request_namespace(request))
        return {"activations": [_activation_json(a) for a in acts]}

    @v1.get("/activations/{activation_id}")
    async def get_activation(activation_id: str, request: Request) -> dict[str, Any]:
        queued = await queue.lookup(activation_id)  # before the flush: no gap
        await recorder.flush()
        act = await store.get_activation(activation_id)
        if not _visible(request, act, queued):
            act = queued = None
        if act is None and queued is None:
            raise ApiError(404, "activation_not_found", f"activation {activation_id!r} does not exist")
        return events.merge_activation(_activation_json(act) if act else None, queued)

    @v1.delete("/activations/{activation_id}")
    async def cancel_activation(activation_id: str, request: Request) -> dict[str, Any]:
        """Cancel an invocation: a running one is stopped (its caller gets 499 `function_cancelled`), an
        accepted async one that has not started goes to the dead-letter queue instead of running."""
        if not await _owned_activation(request, activation_id):
            raise ApiError(404, "activation_not_found", f"activation {activation_id!r} does not exist")
        if invoker.cancel(activation_id):
            return {"activation_id": activation_id, "cancelled": True, "was": "running"}
        was = await queue.cancel(activation_id) if queue is not None else None
        if was:
            return {"activation_id": activation_id, "cancelled": True, "was": was}
        queued = await queue.lookup(activation_id) if queue else None
        await recorder.flush()
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

    @v1.get("/functions/{name}/logs")
    async def logs(name: str, since: float | None = None, activation: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=10000)] = 200, follow: bool = False,
                   grep: Annotated[str | None, Query(max_length=1000)] = None) -> Response:
        pattern = compile_grep(grep)
        await recorder.flush()
        if await store.get_function(name) is None and not follow:
            raise ApiError(404, "function_not_found", f"function {name!r} does not exist")
        lines = await store.get_logs(name, since=since, activation=activation, limit=limit, grep=pattern)
        if not follow:
            return JSONResponse({"logs": lines})
        return StreamingResponse(follow_logs(recorder, name, lines, activation, pattern), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    def _visible(request: Request, act: Activation | None, queued: dict[str, Any] | None) -> bool:
        """Is this activation (or queued job) of the request's namespace?"""
        ns = namespaces_api.request_namespace(request)
        function = act.function if act is not None else getattr((queued or {}).get("job"), "function", None)
        return function is None or tenancy.owns(ns, function)

    async def _owned_activation(request: Request, activation_id: str) -> bool:
        """Is the activation (running, queued or recorded) of the request's namespace? (True in `default` for
        the administrator: it may cancel what it cannot name.)"""
        ns = namespaces_api.request_namespace(request)
        if ns == tenancy.DEFAULT and tenancy.key_namespace(request.state.key) is None:
            return True
        entry = getattr(invoker, "running", {}).get(activation_id)
        owner = entry[0].revision_key.rpartition("@")[0] if entry is not None else None
        if owner is None and queue is not None:
            owner = getattr((await queue.lookup(activation_id) or {}).get("job"), "function", None)
        if owner is None:
            await recorder.flush()
            act = await store.get_activation(activation_id)
            owner = act.function if act is not None else None
        return owner is not None and tenancy.owns(ns, owner)

    from polyfn.api import security

    if secret_values is None:  # /v1/secrets, OpenFaaS's /system/secrets (the node passes its own)
        secret_values = SecretValues(security_store, secret_box, manager.secret_changed)
    v1.include_router(security.router(keys=keys, values=secret_values,
                                      namespaces_exist=namespaces.exists if namespaces is not None else None))
    if namespaces is not None:
        v1.include_router(namespaces_api.build_router(namespaces=namespaces, describe=tenancy_ops.describe,
                                                      delete=tenancy_ops.delete))
    from polyfn.api import storage as storage_api

    v1.include_router(storage_api.build_router(storage=storage, keys=keys, store=store))
    from polyfn.api import scaling as scaling_api

    v1.include_router(scaling_api.build_router(registry=registry, manager=manager))
    v1.include_router(events.router(settings=settings, queue=queue, triggers=triggers, registry=registry, store=store,
                                    storage=storage))
    from polyfn.api import workflows as workflows_api

    v1.include_router(workflows_api.router(workflows))
    from polyfn.api import apps as apps_api

    v1.include_router(apps_api.build_router(apps=apps, keys=keys))
    from polyfn.api import sites as sites_api

    v1.include_router(sites_api.build_router(sites))
    if usage is not None:
        from polyfn.api import usage as usage_api

        v1.include_router(usage_api.build_router(recorder=recorder, usage=usage))
    app.include_router(v1)
    compat.install(app, settings=settings, deployer=deployer, invoker=invoker, recorder=recorder, registry=registry,
                   queue=queue, keys=keys, delete_function=delete_function, workflows=workflows, store=store,
                   admin_key=admin_key, triggers=triggers, entities=compat_entities, secret_values=secret_values,
                   namespaces=namespaces)
    app.include_router(observe_api.build_router(settings=settings, metrics=metrics, registry=registry, queue=queue,
                                                workflows=workflows, require_key=require_key),
                       responses=errors.ERROR_RESPONSES)
    return app


def compile_grep(grep: str | None) -> re.Pattern[str] | None:
    """The `grep` query parameter: a Python regular expression (`(?i)` for case-insensitive)."""
    if not grep:
        return None
    try:
        return re.compile(grep)
    except re.error as e:
        raise ApiError(400, "invalid_grep", f"grep={grep!r} is not a valid regular expression: {e}") from None


async def follow_logs(recorder: Activations, name: str, backlog: list[dict[str, Any]], activation: str | None,
                      grep: re.Pattern[str] | None = None, heartbeat: float = 15) -> AsyncIterator[bytes]:
    """Server-Sent Events: the backlog, then live lines as activations finish; a comment as heartbeat."""
    queue: asyncio.Queue[Activation] = asyncio.Queue(maxsize=10000)

    def on_activation(act: Activation) -> None:
        if activation is None or act.id == activation:
            try:
                queue.put_nowait(act)
            except asyncio.QueueFull:
                pass

    unsubscribe = recorder.follow(name, on_activation)
    try:
        for line in backlog:
            yield b"data: " + json.dumps(line).encode() + b"\n\n"
        while True:
            try:
                act = await asyncio.wait_for(queue.get(), heartbeat)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            for ln in act.logs:  # LogLine structs are array-like on the wire but not iterable
                if grep is not None and not grep.search(ln.line):
                    continue
                yield b"data: " + json.dumps(
                    {"activation": act.id, "ts": ln.ts, "stream": ln.stream, "line": ln.line}).encode() + b"\n\n"
    finally:
        unsubscribe()


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
