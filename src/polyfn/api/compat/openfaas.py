"""The OpenFaaS gateway API, shaped as faas-cli and the OpenFaaS UI call it (openfaas/faas `api-docs`).

`/system/*` needs basic auth as faas-cli sends it: user `admin`, password = a polyfn admin-scope key
(`faas-cli login -g http://127.0.0.1:8080 -u admin --password-stdin < admin.key`). `/function/*` and
`/async-function/*` are open, as in OpenFaaS (and like polyfn's own `/fn/`).

OpenFaaS deploys container images; polyfn runs code. So `POST /system/functions` can create a function only
from code polyfn already has: an existing function whose `image` matches (recorded by `polyfn deploy -f
stack.yml`, which is faas-cli's build + deploy in one step). `PUT` updates env, labels, annotations, memory
and scale labels of an existing function with its code unchanged, each time as a new revision.

Function fields: `replicas` = max(min instances, live instances); `availableReplicas` = live instances;
`invocationCount` is not tracked per function (always 0).
"""

from __future__ import annotations

import asyncio
import json
import platform
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from polyfn import __version__
from polyfn.api.compat import common, keys
from polyfn.call import Call
from polyfn.deploy.errors import DeployError
from polyfn.headers import from_outside
from polyfn.manifests.model import ManifestError, memory_mb
from polyfn.model import Activation, FunctionInfo

if TYPE_CHECKING:
    from polyfn.services import LiveFunctions

NAMESPACE = "openfaas-fn"
LABEL, ANN, IMAGE = "openfaas.label/", "openfaas.annotation/", "openfaas/image"
DEPLOY_FIELDS = {"service", "image", "namespace", "envProcess", "envVars", "constraints", "secrets", "labels",
                 "annotations", "limits", "requests", "readOnlyRootFilesystem", "registryAuth", "network"}
SCALE_MIN, SCALE_MAX = "com.openfaas.scale.min", "com.openfaas.scale.max"


class OpenFaasError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _fn_name(value: str) -> str:
    """`name` or `name.namespace` → name."""
    return value.split(".", 1)[0]


def function_status(registry: LiveFunctions, info: FunctionInfo) -> dict[str, Any]:
    spec = info.spec
    a = spec.annotations
    active = registry.get(info.name)
    stats = active.pool.stats() if active else {"idle": 0, "busy": 0}
    live = stats["idle"] + stats["busy"]
    return {
        "name": info.name,
        "image": a.get(IMAGE, f"polyfn/{info.name}:{info.revision}"),
        "namespace": NAMESPACE,
        "envProcess": "",
        "envVars": dict(spec.env),
        "labels": {k[len(LABEL):]: v for k, v in a.items() if k.startswith(LABEL)},
        "annotations": {k[len(ANN):]: v for k, v in a.items() if k.startswith(ANN)},
        "limits": {"memory": f"{spec.memory}Mi"},
        "invocationCount": 0,
        "replicas": max(spec.min_instances, live),
        "availableReplicas": live,
        "createdAt": _iso(info.created_at),
        "readOnlyRootFilesystem": True,
    }


class OpenFaasApi(common.VendorFace):
    def __init__(self, *, registry: LiveFunctions, **shared: Any):
        super().__init__(**shared)
        self.registry = registry

    def auth(self, request: Request) -> None:
        if keys.check_basic(self.keys, request.headers.get("authorization", "")) is None:
            raise OpenFaasError(401, "Unauthorized: use basic auth with user admin and a polyfn admin key "
                                "(faas-cli login -u admin --password-stdin)")

    async def info(self, name: str) -> FunctionInfo:
        info = await self.store.get_function(_fn_name(name))
        if info is None:
            raise OpenFaasError(404, f"function {_fn_name(name)!r} not found")
        return info

    # -- /system ----------------------------------------------------------------------------------

    async def list_functions(self, request: Request) -> Response:
        self.auth(request)
        infos = await self.store.list_functions()
        return JSONResponse([function_status(self.registry, i) for i in infos])

    async def get_function(self, request: Request, name: str) -> Response:
        self.auth(request)
        return JSONResponse(function_status(self.registry, await self.info(name)))

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise OpenFaasError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise OpenFaasError(400, "the request body must be a JSON object")
        return body

    def _fields(self, body: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - DEPLOY_FIELDS)
        if unknown:
            raise OpenFaasError(400, f"unsupported field(s) {', '.join(unknown)} "
                                f"(supported: {', '.join(sorted(DEPLOY_FIELDS))})")
        if body.get("secrets"):
            raise OpenFaasError(400, f"secrets {body['secrets']} cannot be mounted: polyfn has no secret store; "
                                "pass values as envVars")
        fields = dict(base)
        fields["env"] = {str(k): str(v) for k, v in (body.get("envVars") or {}).items()}
        labels = {str(k): str(v) for k, v in (body.get("labels") or {}).items()}
        ann = {k: v for k, v in (fields.get("annotations") or {}).items()
               if not k.startswith((LABEL, ANN))}
        ann.update({LABEL + k: v for k, v in labels.items()})
        ann.update({ANN + str(k): str(v) for k, v in (body.get("annotations") or {}).items()})
        if body.get("image"):
            ann[IMAGE] = str(body["image"])
        fields["annotations"] = ann
        memory = (body.get("limits") or {}).get("memory")
        if memory:
            try:
                fields["memory"] = memory_mb(memory, "limits.memory")
            except ManifestError as e:
                raise OpenFaasError(400, str(e)) from None
        for label, key in ((SCALE_MIN, "min_instances"), (SCALE_MAX, "max_instances")):
            if label in labels:
                try:
                    fields[key] = int(labels[label])
                except ValueError:
                    raise OpenFaasError(400, f"label {label}={labels[label]!r} is not a number") from None
        return fields

    async def _deploy(self, fields: dict[str, Any], files: dict[str, bytes]) -> None:
        try:
            await self.deployer.deploy(fields, files)
        except DeployError as e:
            raise OpenFaasError(400 if e.status < 500 else e.status, f"{e.code}: {e.message}") from None

    async def deploy(self, request: Request) -> Response:
        self.auth(request)
        body = await self._body(request)
        name = str(body.get("service") or "")
        if not name or not body.get("image"):
            raise OpenFaasError(400, "service and image are required")
        if await self.store.get_function(name) is not None:
            return await self._update(name, body)
        source = next((i for i in await self.store.list_functions()
                       if i.spec.annotations.get(IMAGE) == body["image"]), None)
        if source is None:
            raise OpenFaasError(400, f"polyfn has no code for image {body['image']!r}: polyfn runs code, not "
                                "container images. Deploy the handler folder with `polyfn deploy -f stack.yml` "
                                "(faas-cli build + deploy in one step); then faas-cli can deploy, update, scale, "
                                "invoke and remove it here")
        files = await common.current_files(self.store, source.name)
        base = msgspec.structs.asdict(source.spec)
        base.update(name=name, annotations={k: v for k, v in source.spec.annotations.items()
                                            if not k.startswith((LABEL, ANN))})
        await self._deploy(self._fields(body, base), files or {})
        return Response(status_code=202)

    async def update(self, request: Request) -> Response:
        self.auth(request)
        body = await self._body(request)
        name = str(body.get("service") or "")
        if await self.store.get_function(name) is None:
            raise OpenFaasError(404, f"function {name!r} not found")
        return await self._update(name, body)

    async def _update(self, name: str, body: dict[str, Any]) -> Response:
        info = await self.info(name)
        files = await common.current_files(self.store, name)
        base = msgspec.structs.asdict(info.spec)
        base["min_instances"], base["max_instances"] = info.spec.min_instances, info.spec.max_instances
        await self._deploy(self._fields(body, base), files or {})
        return Response(status_code=202)

    async def delete(self, request: Request) -> Response:
        self.auth(request)
        body = await self._body(request)
        name = _fn_name(str(body.get("functionName") or ""))
        if not name:
            raise OpenFaasError(400, "functionName is required")
        if not await self.remove_function(name):
            raise OpenFaasError(404, f"function {name!r} not found")
        return Response(status_code=202)

    async def scale(self, request: Request, name: str) -> Response:
        self.auth(request)
        body = await self._body(request)
        replicas = body.get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise OpenFaasError(400, "replicas must be an integer >= 0")
        info = await self.info(name)
        spec = msgspec.structs.asdict(info.spec)
        if spec["min_instances"] != replicas:
            spec["min_instances"] = replicas
            spec["max_instances"] = max(spec["max_instances"], replicas)
            files = await common.current_files(self.store, info.name)
            await self._deploy(spec, files or {})
        return Response(status_code=202)

    async def system_info(self, request: Request) -> Response:
        self.auth(request)
        version = {"release": __version__, "sha": "", "commit_message": ""}
        return JSONResponse({"provider": {"provider": "polyfn", "orchestration": "polyfn", "version": version},
                             "version": version, "arch": platform.machine()})

    async def namespaces(self, request: Request) -> Response:
        self.auth(request)
        return JSONResponse([NAMESPACE])

    async def logs(self, request: Request) -> Response:
        self.auth(request)
        q = request.query_params
        info = await self.info(q.get("name", ""))
        try:
            tail = int(q.get("tail", "0") or 0)
        except ValueError:
            raise OpenFaasError(400, "tail must be an integer") from None
        since = None
        if q.get("since"):
            try:
                since = datetime.fromisoformat(q["since"].replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise OpenFaasError(400, "since must be an RFC 3339 time") from None
        await self.recorder.flush()
        lines = await self.store.get_logs(info.name, since=since, limit=tail if tail > 0 else 100_000)
        follow = q.get("follow", "").lower() == "true"

        def entry(act: str, ts: float, text: str) -> bytes:
            return json.dumps({"name": info.name, "namespace": NAMESPACE, "instance": act, "timestamp": _iso(ts),
                               "text": text}).encode() + b"\n"

        async def stream() -> AsyncIterator[bytes]:
            for ln in lines:
                yield entry(ln["activation"], ln["ts"], ln["line"])
            if not follow:
                return
            queue: asyncio.Queue[Activation] = asyncio.Queue(maxsize=10000)
            unsubscribe = self.recorder.follow(info.name, lambda a: queue.full() or queue.put_nowait(a))
            try:
                while True:
                    act = await queue.get()
                    for ln in act.logs:
                        yield entry(act.id, ln.ts, ln.line)
            finally:
                unsubscribe()

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    # -- invocation --------------------------------------------------------------------------------

    async def invoke(self, request: Request, name: str, path: str = "") -> Response:
        body = await request.body()
        headers = from_outside([(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]])
        out = await self.invoker.call(Call(_fn_name(name), "http", "http", request.method, "/" + path,
                                           request.scope["query_string"].decode("latin-1"), headers, body,
                                           request.headers.get("content-type", "")))
        return Response(out.body, status_code=out.status,
                        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in out.headers})

    async def invoke_async(self, request: Request, name: str, path: str = "") -> Response:
        """202 at once; the call goes through the node's durable async queue (it survives `kill -9` and is retried
        per the function's policy), and the result is POSTed to `X-Callback-Url` in OpenFaaS's shape (the
        function's body and headers plus X-Call-Id, X-Function-Status …), retried until delivered."""
        fname = _fn_name(name)
        if self.registry.get(fname) is None:
            raise OpenFaasError(404, f"function {fname!r} not found")
        body = await request.body()
        call_id = request.headers.get("x-call-id") or str(uuid.uuid4())
        callback = request.headers.get("x-callback-url")
        if callback:
            from polyfn.auth.callbacks import check_callback

            key = self.keys.from_authorization(request.headers.get("authorization", "")) if self.keys else None
            refusal = check_callback(callback, fname, key, self.settings.callback_hosts)
            if refusal is not None:
                raise OpenFaasError(400, f"{refusal[0]}: {refusal[1]}")
        headers = from_outside([(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]])
        headers.append(("x-call-id", call_id))
        query = request.scope["query_string"].decode("latin-1")
        method, ct = request.method, request.headers.get("content-type", "")
        keep = [(k, v) for k, v in headers if k.lower() not in ("x-callback-url", "authorization", "content-length")]
        try:
            await common.submit_async(self.queue, fname, "http", ASYNC_TRIGGER, body, ct, keep, method,
                                      "/" + path, query, callback, call_id.replace("-", ""))
        except common.AsyncRejected as e:
            raise OpenFaasError(e.status, e.message) from None
        return Response(status_code=202, headers={"X-Call-Id": call_id, "X-Start-Time": str(time.time_ns())})


ASYNC_TRIGGER = "openfaas-async"  # the trigger name of OpenFaaS async calls (their queue jobs and activations)


def callback_shape(job: Any, out: Any, status: str, reason: str | None) -> tuple[bytes, dict[str, str]]:
    """What OpenFaaS's queue-worker POSTs to X-Callback-Url: the function's response body and headers, plus
    X-Call-Id, X-Function-Status, X-Function-Name, X-Duration-Seconds (since the call was accepted) and
    X-Start-Time (ns). A call that ends in the dead-letter queue without a response reports status 500."""
    call_id = next((v for k, v in job.headers if k.lower() == "x-call-id"), job.id)
    hdrs: dict[str, str] = {}
    if out is not None:
        hdrs = {k.decode("latin-1"): v.decode("latin-1") for k, v in out.headers
                if k.lower() not in (b"content-length", b"transfer-encoding", b"connection")}
    hdrs.update({"X-Call-Id": call_id, "X-Function-Status": str(out.status if out is not None else 500),
                 "X-Function-Name": job.function, "X-Duration-Seconds": f"{time.time() - job.enqueued_at:.6f}",
                 "X-Start-Time": str(int(job.enqueued_at * 1e9))})
    if reason:
        hdrs["X-Polyfn-Dead-Letter"] = reason[:200].replace("\r", " ").replace("\n", " ")
    return (out.body if out is not None else b""), hdrs


def install(app: FastAPI, **services: Any) -> None:
    """`services`: what `OpenFaasApi` takes (the composition root hands them in)."""
    from polyfn.queue.callbacks import CALLBACK_FORMATS

    CALLBACK_FORMATS[ASYNC_TRIGGER] = callback_shape
    api = OpenFaasApi(**services)
    r = APIRouter(include_in_schema=False)
    r.add_api_route("/system/functions", api.list_functions, methods=["GET"])
    r.add_api_route("/system/functions", api.deploy, methods=["POST"])
    r.add_api_route("/system/functions", api.update, methods=["PUT"])
    r.add_api_route("/system/functions", api.delete, methods=["DELETE"])
    r.add_api_route("/system/function/{name}", api.get_function, methods=["GET"])
    r.add_api_route("/system/scale-function/{name}", api.scale, methods=["POST"])
    r.add_api_route("/system/info", api.system_info, methods=["GET"])
    r.add_api_route("/system/namespaces", api.namespaces, methods=["GET"])
    r.add_api_route("/system/logs", api.logs, methods=["GET"])
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    r.add_api_route("/function/{name}", api.invoke, methods=methods)
    r.add_api_route("/function/{name}/{path:path}", api.invoke, methods=methods)
    r.add_api_route("/async-function/{name}", api.invoke_async, methods=["POST", "PUT", "GET"])
    r.add_api_route("/async-function/{name}/{path:path}", api.invoke_async, methods=["POST", "PUT", "GET"])
    app.include_router(r)

    @app.exception_handler(OpenFaasError)
    async def _error(_: Request, e: OpenFaasError) -> Response:
        headers = {"www-authenticate": 'Basic realm="polyfn"'} if e.status == 401 else {}
        return Response(e.message + "\n", status_code=e.status, media_type="text/plain", headers=headers)
