"""The control API: its table of `/v1` routes (functions, activations, logs) and `build_api`, which mounts it
with the other routers (api/*) and the vendor APIs (api/compat/) on one FastAPI app.

Handlers are thin: they parse and authorise, then call the services the composition root (`node.py`) hands
`build_api` — each handler class and router gets only those it uses (`services.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request

from polyfn import __version__
from polyfn.api import compat, errors
from polyfn.api import namespaces as namespaces_api
from polyfn.api import observe as observe_api
from polyfn.api.activations import ActivationRoutes
from polyfn.api.events import IngressRoutes, QueueRoutes
from polyfn.api.functions import FunctionRoutes
from polyfn.api.health import health
from polyfn.api.routes import Route, mount
from polyfn.api.scaling import ScalingRoutes
from polyfn.api.security import SecurityRoutes
from polyfn.api.triggers import TriggerRoutes
from polyfn.auth.access import authorize
from polyfn.auth.secrets import SecretValues

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


class NodeRoutes:
    """What the node says of itself: `/healthz` (served by the node itself, Node.asgi: documented here) and its
    version."""

    def __init__(self, *, registry: LiveFunctions, sync: Any, queue: AsyncJobs):
        self.registry = registry
        self.sync = sync
        self.queue = queue

    async def healthz(self) -> dict[str, Any]:
        return health(self.registry, self.sync, self.queue)

    async def version(self) -> dict[str, str]:
        return {"version": __version__}


#: routes outside `/v1` (no key)
ROOT = (
    Route("GET", "/healthz", NodeRoutes.healthz, {"tags": ["health"]}),
)

#: `/v1` (every route behind the API key, `auth/access.py`): method, path, handler (its class names the services
#: it uses). Each area's table of its own is mounted after it by `build_api` (api/namespaces.py `NAMESPACES`,
#: storage.py `STORAGE`, workflows.py `WORKFLOWS`, apps.py `APPS`, sites.py `SITES`, usage.py `USAGE`); then the
#: vendor APIs (each with its own table) and the metrics (observe.py `SCRAPE`, `STATS`).
V1 = (
    Route("GET",    "/version",                        NodeRoutes.version),
    Route("POST",   "/functions",                      FunctionRoutes.create_function,
          {"status_code": 201, "summary": "Deploy a function (create or new revision)"}),
    Route("PUT",    "/functions/{name}",               FunctionRoutes.put_function,
          {"summary": "Deploy a new revision of a function"}),
    Route("GET",    "/functions",                      FunctionRoutes.list_functions),
    Route("GET",    "/functions/{name}",               FunctionRoutes.get_function),
    Route("DELETE", "/functions/{name}",               FunctionRoutes.delete_function),
    Route("POST",   "/functions/{name}/invoke",        FunctionRoutes.invoke,
          {"summary": "Invoke a function with an event payload (mode=sync|async|stream)"}),
    Route("GET",    "/activations",                    ActivationRoutes.list_activations),
    Route("GET",    "/activations/{activation_id}",    ActivationRoutes.get_activation),
    Route("DELETE", "/activations/{activation_id}",    ActivationRoutes.cancel_activation),
    Route("GET",    "/functions/{name}/logs",          FunctionRoutes.logs),
    Route("POST",   "/functions/{name}/prewarm",       ScalingRoutes.prewarm),
    Route("GET",    "/functions/{name}/instances",     ScalingRoutes.instances),
    Route("POST",   "/functions/{name}/triggers",      TriggerRoutes.add_trigger, {"status_code": 201,
          "summary": "Add a trigger: {\"kind\": \"cron\", \"config\": {...}, \"id\": optional}"}),
    Route("GET",    "/functions/{name}/triggers",      TriggerRoutes.function_triggers),
    Route("DELETE", "/functions/{name}/triggers/{trigger_id}", TriggerRoutes.delete_function_trigger),
    Route("GET",    "/triggers",                       TriggerRoutes.all_triggers),
    Route("GET",    "/triggers/{trigger_id}",          TriggerRoutes.get_trigger),
    Route("DELETE", "/triggers/{trigger_id}",          TriggerRoutes.delete_trigger),
    Route("GET",    "/queue",                          QueueRoutes.queue_stats,
          {"summary": "The async queue's depth: pending, running and dead-lettered invocations "
                      "(a namespace's: queued and dead-lettered)"}),
    Route("GET",    "/dlq",                            QueueRoutes.dlq_list,
          {"summary": "Dead-lettered invocations and trigger messages, newest first"}),
    Route("GET",    "/dlq/{entry_id}",                 QueueRoutes.dlq_show),
    Route("POST",   "/dlq/{entry_id}/replay",          QueueRoutes.dlq_replay,
          {"summary": "Run a dead-lettered invocation again (async, from attempt 1)"}),
    Route("DELETE", "/dlq/{entry_id}",                 QueueRoutes.dlq_delete),
    Route("POST",   "/topics/{topic}/messages",        IngressRoutes.publish, {"status_code": 201,
          "summary": "Publish a message to an embedded topic (query attr.KEY=VALUE adds attributes)"}),
    Route("POST",   "/logs/{stream}",                  IngressRoutes.ingest_logs, {"status_code": 202,
          "summary": "Ingest log lines (JSON array of strings or {message, timestamp}, or text lines)"}),
    Route("POST",   "/events",                         IngressRoutes.ingest_events, {"status_code": 202,
          "summary": "Accept CloudEvents (binary, structured or batch mode) and route them to `events` triggers"}),
    Route("POST",   "/keys",                           SecurityRoutes.create_key,
          {"status_code": 201, "summary": "Create a scoped API key (the secret is shown only now)"}),
    Route("GET",    "/keys",                           SecurityRoutes.list_keys,
          {"summary": "List API keys (never their secrets)"}),
    Route("DELETE", "/keys/{key_id}",                  SecurityRoutes.revoke_key, {"summary": "Revoke an API key"}),
    Route("PUT",    "/secrets/{name}",                 SecurityRoutes.put_secret,
          {"summary": "Create or replace a secret (encrypted at rest; never shown back)"}),
    Route("GET",    "/secrets",                        SecurityRoutes.list_secrets, {"summary": "List secret names"}),
    Route("DELETE", "/secrets/{name}",                 SecurityRoutes.delete_secret, {"summary": "Delete a secret"}),
)


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

    async def require_key(request: Request) -> None:
        request.state.key = authorize(keys, limiter, settings, request.method, request.url.path, request.query_params,
                                      request.headers.get("authorization", ""))

    node = NodeRoutes(registry=registry, sync=sync, queue=queue)
    mount(app.router, ROOT, node)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=errors.ERROR_RESPONSES)
    if secret_values is None:  # /v1/secrets, OpenFaaS's /system/secrets (the node passes its own)
        secret_values = SecretValues(security_store, secret_box, manager.secret_changed)
    mount(v1, V1, node,
          FunctionRoutes(settings=settings, store=store, registry=registry, deployer=deployer, invoker=invoker,
                         queue=queue, recorder=recorder, triggers=triggers, manager=manager,
                         delete_function=delete_function),
          ActivationRoutes(store=store, recorder=recorder, queue=queue, invoker=invoker),
          ScalingRoutes(registry=registry, manager=manager),
          TriggerRoutes(triggers=triggers, registry=registry, store=store, storage=storage),
          QueueRoutes(queue=queue), IngressRoutes(settings=settings, triggers=triggers),
          SecurityRoutes(keys=keys, values=secret_values,
                         namespaces_exist=namespaces.exists if namespaces is not None else None))
    if namespaces is not None:
        v1.include_router(namespaces_api.build_router(namespaces=namespaces, describe=tenancy_ops.describe,
                                                      delete=tenancy_ops.delete))
    from polyfn.api import storage as storage_api

    v1.include_router(storage_api.build_router(storage=storage, keys=keys, store=store))
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
