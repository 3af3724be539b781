"""The OpenFaaS gateway API, shaped as faas-cli and the OpenFaaS UI call it (openfaas/faas `api-docs`).

`/system/*` needs basic auth as faas-cli sends it: user `admin`, password = a polyfn admin-scope key
(`faas-cli login -g http://127.0.0.1:8080 -u admin --password-stdin < admin.key`). `/function/*` and
`/async-function/*` are open, as in OpenFaaS (and like polyfn's own `/fn/`).

OpenFaaS deploys container images; polyfn runs code. So `POST /system/functions` can create a function only
from code polyfn already has: an existing function whose `image` matches (recorded by `polyfn deploy -f
stack.yml`, which is faas-cli's build + deploy in one step), or the code of a function removed through this API
(kept under its image reference). `PUT` (and `POST` of an existing function) applies the definition as given
with the code unchanged, as a new revision: env, labels, annotations, memory, secrets; a scale label dropped
means polyfn's default; the cron-connector's annotations (`topic: cron-function`, `schedule`) make, change or
remove the function's cron trigger.

Function fields: `replicas` = max(min instances, live instances), at least 1 while the function can serve;
`availableReplicas` likewise (polyfn starts an instance on the first call, so a function scaled to zero is
`Ready`, as OpenFaaS shows an idle function); `invocationCount` is not tracked per function (always 0).
`readOnlyRootFilesystem`, `constraints`, `limits` and `requests` are shown as the definition gave them, so
`faas-cli diff` finds no drift. `/system/secrets` are polyfn's secrets (`secrets: [NAME]` mounts
/run/secrets/NAME).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
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

from polyfn import __version__, jsontext
from polyfn.api.compat import common, keys
from polyfn.api.routes import Route, mount
from polyfn.auth import function_keys
from polyfn.auth.keys import allows
from polyfn.auth.secrets import SecretError
from polyfn.call import Call
from polyfn.deploy import archive
from polyfn.deploy.errors import DeployError
from polyfn.headers import from_outside
from polyfn.invoker import platform_error
from polyfn.manifests import openfaas_stack as stack
from polyfn.manifests.model import ManifestError
from polyfn.model import Activation, FunctionInfo
from polyfn.queue.callback_shapes import OPENFAAS_ASYNC
from polyfn.tenancy import DEFAULT, SEP, for_key, local, namespace_of, owns, qualify, split

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.services import AsyncJobs, CompatEntities, Invocations, Keys, LiveFunctions, Triggers

NAMESPACE = "openfaas-fn"
LABEL, ANN, IMAGE = stack.LABEL, stack.ANN, stack.IMAGE
IMAGE_KIND = "openfaas.image"  # compat entities: the code an image reference stands for, after a delete
DEPLOY_FIELDS = {"service", "image", "namespace", "envProcess", "envVars", "constraints", "secrets", "labels",
                 "annotations", "limits", "requests", "readOnlyRootFilesystem", "registryAuth", "network"}


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


#: the namespace (polyfn's) an authenticated request acts in, set by `OpenFaasApi.auth`/`acting` (each request
#: runs in its own task); OpenFaaS's `openfaas-fn` is polyfn's `default` (tenancy.py)
_NS: contextvars.ContextVar[str] = contextvars.ContextVar("openfaas_namespace", default=DEFAULT)
_KEY: contextvars.ContextVar[Any] = contextvars.ContextVar("openfaas_key", default=None)


def _to_polyfn(of_namespace: str) -> str:
    return DEFAULT if of_namespace in ("", NAMESPACE) else of_namespace


def _to_openfaas(namespace: str) -> str:
    return NAMESPACE if namespace == DEFAULT else namespace


def _held(value: str) -> str:
    """The held name of `name` or `name.namespace` in the request's namespace; a suffix naming another namespace
    gives a name nothing is held under (answered as any unknown function)."""
    name, _, suffix = value.partition(".")
    ns = _NS.get()
    if suffix and _to_polyfn(suffix) != ns:
        return f"{SEP}{SEP}"  # (no function has this name)
    return qualify(ns, name)


def _invoked(value: str) -> str:
    """`/function/name.namespace`: the held name (no key involved, like /fn/{namespace}/{name})."""
    name, _, suffix = value.partition(".")
    return qualify(_to_polyfn(suffix), name)


def function_status(registry: LiveFunctions, info: FunctionInfo) -> dict[str, Any]:
    spec = info.spec
    a = spec.annotations
    active = registry.get(info.name)
    stats = active.pool.stats() if active else {"idle": 0, "busy": 0}
    live = stats["idle"] + stats["busy"]
    ready = live or (1 if active is not None else 0)  # it can serve: an instance starts on the first call
    shown = {"limits": json.loads(a[stack.LIMITS]) if stack.LIMITS in a else
             ({"memory": f"{spec.memory}Mi"} if IMAGE not in a else None),
             "requests": json.loads(a[stack.REQUESTS]) if stack.REQUESTS in a else None}
    ns, name = split(info.name)
    return {
        "name": name,
        "image": a.get(IMAGE, f"polyfn/{name}:{info.revision}"),
        "namespace": _to_openfaas(ns),
        "envProcess": "",
        "envVars": dict(spec.env),
        "labels": {k[len(LABEL):]: v for k, v in a.items() if k.startswith(LABEL)},
        "annotations": {k[len(ANN):]: v for k, v in a.items() if k.startswith(ANN)},
        **{k: v for k, v in shown.items() if v is not None},
        "secrets": [x.split(":", 1)[0] for x in spec.secrets],
        "constraints": json.loads(a.get(stack.CONSTRAINTS, "[]")),
        "invocationCount": 0,
        "replicas": max(spec.min_instances, ready),
        "availableReplicas": ready,
        "createdAt": _iso(info.created_at),
        "readOnlyRootFilesystem": a.get(stack.READ_ONLY) == "true",
    }


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = jsontext.loads_text(await request.body() or b"{}")
    except ValueError:
        raise OpenFaasError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise OpenFaasError(400, "the request body must be a JSON object")
    return body


class OpenFaasApi(common.VendorFace):
    """`/system/*`: functions (deploy, update, delete, scale), info, namespaces, logs; basic auth with an admin
    key (`auth`), acting in the namespace the request names (`acting`)."""

    def __init__(self, *, registry: LiveFunctions, secret_values: Any = None, entities: CompatEntities | None = None,
                 triggers: Triggers | None = None, namespaces: Any = None, **shared: Any):
        super().__init__(**shared)
        self.namespaces = namespaces  # polyfn.namespaces.Namespaces: which exist
        self.registry = registry
        self.secrets = secret_values  # auth/secrets.SecretValues: /system/secrets
        self.entities = entities  # the code of removed functions, by image reference
        self.triggers = triggers  # the cron-connector's annotations

    async def auth(self, request: Request) -> None:
        authorization = request.headers.get("authorization", "")
        rec = keys.basic_key(self.keys, authorization)
        if rec is not None and allows(rec, "admin", None):
            _KEY.set(rec)
            await self.acting(request.query_params.get("namespace", ""))
            return
        if rec is not None:  # a live key, but not one that may manage functions
            bound = f" for function {rec.function!r} only" if rec.function else ""
            raise OpenFaasError(403, f"the key {rec.id!r} has scope {rec.scope!r}{bound}; the OpenFaaS API needs an "
                                "admin-scope key for every function: make one with `polyfn key create --scope "
                                "admin` and log in with it (faas-cli login -u admin --password-stdin)")
        raise OpenFaasError(401, "Unauthorized: use basic auth with user admin and a polyfn admin key "
                            "(faas-cli login -u admin --password-stdin)")

    async def acting(self, of_namespace: str) -> str:
        """Act in this OpenFaaS namespace ('' : the key's own; `openfaas-fn`: polyfn's default): one the key may
        not see is answered like one that does not exist."""
        ns = for_key(_KEY.get(), _to_polyfn(of_namespace) if of_namespace else None)
        if ns is None or (self.namespaces is not None and not await self.namespaces.exists(ns)):
            raise OpenFaasError(404, f"namespace {of_namespace!r} not found")
        _NS.set(ns)
        return ns

    async def info(self, name: str) -> FunctionInfo:
        info = await self.store.get_function(_held(name))
        if info is None:
            raise OpenFaasError(404, f"function {_fn_name(name)!r} not found")
        return info

    # -- /system ----------------------------------------------------------------------------------

    async def list_functions(self, request: Request) -> Response:
        await self.auth(request)
        ns = _NS.get()
        infos = [i for i in await self.store.list_functions() if owns(ns, i.name)]
        return JSONResponse([function_status(self.registry, i) for i in infos])

    async def get_function(self, request: Request, name: str) -> Response:
        await self.auth(request)
        return JSONResponse(function_status(self.registry, await self.info(name)))

    def _fields(self, body: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - DEPLOY_FIELDS)
        if unknown:
            raise OpenFaasError(400, f"unsupported field(s) {', '.join(unknown)} "
                                f"(supported: {', '.join(sorted(DEPLOY_FIELDS))})")
        fields = dict(base)
        fields["env"] = {str(k): str(v) for k, v in (body.get("envVars") or {}).items()}
        try:
            given = stack.vendor_fields("the deployment", body.get("image"), body.get("labels"),
                                        body.get("annotations"), body.get("limits"), body.get("requests"),
                                        body.get("secrets"), body.get("readOnlyRootFilesystem"),
                                        body.get("constraints"))
        except ManifestError as e:
            raise OpenFaasError(400, str(e)) from None
        ann = {k: v for k, v in (fields.get("annotations") or {}).items() if not k.startswith(("openfaas.", "openfaas/"))}
        ann.update(given.pop("annotations"))
        fields.update(given, annotations=ann)
        return fields

    async def _check_secrets(self, names: list[str]) -> None:
        if not names:
            return
        known = {s["name"] for s in await self.secrets.list(_NS.get())} if self.secrets is not None else set()
        missing = [n for n in names if n not in known]
        if missing:
            raise OpenFaasError(400, f"secret(s) {', '.join(missing)} not found: create them first "
                                f"(faas-cli secret create {missing[0]})")

    async def _deploy(self, fields: dict[str, Any], files: dict[str, bytes]) -> None:
        await self._check_secrets(fields.get("secrets") or [])
        try:
            await self.deployer.deploy(fields, files)
        except DeployError as e:
            raise OpenFaasError(400 if e.status < 500 else e.status, f"{e.code}: {e.message}") from None
        await self._cron(fields["name"], fields.get("annotations") or {})

    async def _cron(self, name: str, ann: dict[str, str]) -> None:
        """The cron-connector's annotations as the function's cron trigger (the id `polyfn deploy -f` gives it):
        made or changed when they are there, deleted when they are not."""
        if self.triggers is None:
            return
        given = {k[len(ANN):]: v for k, v in ann.items() if k.startswith(ANN)}
        try:
            schedule = stack.cron_schedule(given, "annotations")
        except ManifestError as e:
            raise OpenFaasError(400, str(e)) from None
        tid = cron_trigger_id(name)
        runner = self.triggers.runners.get(tid)
        if runner is not None and (schedule is None or runner.trigger.config.get("schedule") != schedule):
            await self.triggers.delete(tid)
            runner = None
        if schedule is not None and runner is None:
            await self.triggers.create(name, "cron", {"schedule": schedule}, trigger_id=tid)

    async def deploy(self, request: Request) -> Response:
        await self.auth(request)
        body = await _body(request)
        ns = await self.acting(str(body.get("namespace") or request.query_params.get("namespace", "")))
        name = str(body.get("service") or "")
        if not name or not body.get("image"):
            raise OpenFaasError(400, "service and image are required")
        if SEP in name:
            raise OpenFaasError(400, f"invalid function name {name!r}")
        name = qualify(ns, name)
        if await self.store.get_function(name) is not None:
            return await self._update(name, body)
        source = next((i for i in await self.store.list_functions()
                       if owns(ns, i.name) and i.spec.annotations.get(IMAGE) == body["image"]), None)
        if source is not None:
            files = await common.current_files(self.store, source.name) or {}
            base = msgspec.structs.asdict(source.spec)
        else:  # removed through this API: its code was kept under the image reference
            kept = await self.entities.get(IMAGE_KIND, qualify(ns, str(body["image"]))) if self.entities else None
            if kept is None:
                raise OpenFaasError(400, f"polyfn has no code for image {body['image']!r}: polyfn runs code, not "
                                    "container images. Deploy the handler folder with `polyfn deploy -f stack.yml` "
                                    "(faas-cli build + deploy in one step); then faas-cli can deploy, update, "
                                    "scale, invoke and remove it here")
            files = archive.files_from_zip(base64.b64decode(kept["zip"]), self.settings.max_code_size,
                                           self.settings.max_code_files)
            base = dict(kept["spec"])
        base["name"] = name
        await self._deploy(self._fields(body, base), files)
        return Response(status_code=202)

    async def update(self, request: Request) -> Response:
        await self.auth(request)
        body = await _body(request)
        ns = await self.acting(str(body.get("namespace") or request.query_params.get("namespace", "")))
        name = str(body.get("service") or "")
        if SEP in name or await self.store.get_function(qualify(ns, name)) is None:
            raise OpenFaasError(404, f"function {name!r} not found")
        return await self._update(qualify(ns, name), body)

    async def _update(self, name: str, body: dict[str, Any]) -> Response:
        """`name`: the held name."""
        info = await self.store.get_function(name)
        if info is None:
            raise OpenFaasError(404, f"function {local(name)!r} not found")
        files = await common.current_files(self.store, name)
        await self._deploy(self._fields(body, msgspec.structs.asdict(info.spec)), files or {})
        return Response(status_code=202)

    async def delete(self, request: Request) -> Response:
        await self.auth(request)
        body = await _body(request)
        await self.acting(str(body.get("namespace") or request.query_params.get("namespace", "")))
        given = str(body.get("functionName") or "")
        if not _fn_name(given):
            raise OpenFaasError(400, "functionName is required")
        name = _held(given)
        await self._keep_code(name)
        if not await self.remove_function(name):
            raise OpenFaasError(404, f"function {_fn_name(given)!r} not found")
        return Response(status_code=202)

    async def _keep_code(self, name: str) -> None:
        """Before a delete: the function's code and spec under its image reference, so `faas-cli deploy` of the
        same image re-creates it (OpenFaaS would pull the image again)."""
        info = await self.store.get_function(name)
        image = info.spec.annotations.get(IMAGE) if info is not None else None
        rev = await self.store.get_current_revision(name) if image else None
        if self.entities is None or info is None or rev is None:
            return
        data = await asyncio.to_thread(common.zip_code, rev.code_dir)
        doc = {"image": image, "spec": msgspec.structs.asdict(info.spec), "zip": base64.b64encode(data).decode()}
        ref = qualify(namespace_of(name), str(image))  # (kept per namespace)
        if not await self.entities.put(IMAGE_KIND, ref, doc, time.time(), create=False):
            await self.entities.put(IMAGE_KIND, ref, doc, time.time(), create=True)

    async def scale(self, request: Request, name: str) -> Response:
        await self.auth(request)
        body = await _body(request)
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
        await self.auth(request)
        version = {"release": __version__, "sha": "", "commit_message": ""}
        return JSONResponse({"provider": {"provider": "polyfn", "orchestration": "polyfn", "version": version},
                             "version": version, "arch": platform.machine()})

    async def list_namespaces(self, request: Request) -> Response:
        await self.auth(request)
        key = _KEY.get()
        names = [n.name for n in await self.namespaces.list()] if self.namespaces is not None else [DEFAULT]
        return JSONResponse([_to_openfaas(n) for n in names if for_key(key, n) is not None])

    async def logs(self, request: Request) -> Response:
        await self.auth(request)
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
            return json.dumps({"name": local(info.name), "namespace": _to_openfaas(namespace_of(info.name)),
                               "instance": act, "timestamp": _iso(ts),
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


class OpenFaasSecrets:
    """`/system/secrets`: polyfn's secrets (auth/secrets.py) in the request's namespace, behind the /system auth."""

    def __init__(self, api: OpenFaasApi, *, secret_values: Any = None):
        self.api = api
        self.values = secret_values  # auth/secrets.SecretValues

    async def list_secrets(self, request: Request) -> Response:
        await self.api.auth(request)
        ns = _NS.get()
        return JSONResponse([{"name": s["name"], "namespace": _to_openfaas(ns)} for s in await self._values().list(ns)])

    async def put_secret(self, request: Request) -> Response:
        """POST creates (409 when it exists), PUT replaces (404 when it does not)."""
        await self.api.auth(request)
        body = await _body(request)
        ns = await self.api.acting(str(body.get("namespace") or request.query_params.get("namespace", "")))
        name = str(body.get("name") or "")
        value = body.get("value")
        if value is None and body.get("rawValue") is not None:  # []byte: base64 in Go's JSON
            try:
                value = base64.b64decode(str(body["rawValue"])).decode()
            except (ValueError, UnicodeDecodeError):
                raise OpenFaasError(400, "rawValue must be base64 of UTF-8 text: polyfn keeps secrets as text") from None
        if not name or not isinstance(value, str):
            raise OpenFaasError(400, "name and value (or rawValue) are required")
        exists = name in {s["name"] for s in await self._values().list(ns)}
        if request.method == "POST" and exists:
            raise OpenFaasError(409, f"secret {name} already exists: update it with faas-cli secret update {name}")
        if request.method == "PUT" and not exists:
            raise OpenFaasError(404, f"secret {name} not found: create it with faas-cli secret create {name}")
        try:
            await self._values().put(name, value, ns)
        except SecretError as e:
            raise OpenFaasError(e.status, f"{e.code}: {e.message}") from None
        return Response(status_code=201 if request.method == "POST" else 202)

    async def delete_secret(self, request: Request) -> Response:
        await self.api.auth(request)
        body = await _body(request)
        ns = await self.api.acting(str(body.get("namespace") or request.query_params.get("namespace", "")))
        name = str(body.get("name") or request.query_params.get("name") or "")
        if not await self._values().delete(name, ns):
            raise OpenFaasError(404, f"secret {name!r} not found")
        return Response(status_code=202)

    def _values(self) -> Any:
        if self.values is None:
            raise OpenFaasError(501, "secrets are not available on this node")
        return self.values


class OpenFaasGateway:
    """`/function/NAME[.NAMESPACE]` and `/async-function/…`: open like OpenFaaS's gateway (no key), but for the
    function's own `auth` rule; async calls go through the node's durable queue."""

    def __init__(self, *, settings: Settings, registry: LiveFunctions, invoker: Invocations, queue: AsyncJobs,
                 keys: Keys):
        self.settings = settings
        self.registry = registry
        self.invoker = invoker
        self.queue = queue
        self.keys = keys

    async def invoke(self, request: Request, name: str, path: str = "") -> Response:
        headers = from_outside([(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]])
        refused = self._caller_refusal(_invoked(name), request, headers)
        if refused is not None:
            return refused
        body = await request.body()
        out = await self.invoker.call(Call(_invoked(name), "http", "http", request.method, "/" + path,
                                           request.scope["query_string"].decode("latin-1"), headers, body,
                                           request.headers.get("content-type", "")))
        return Response(out.body, status_code=out.status,
                        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in out.headers})

    async def invoke_async(self, request: Request, name: str, path: str = "") -> Response:
        """202 at once; the call goes through the node's durable async queue (it survives `kill -9` and is retried
        per the function's policy), and the result is POSTed to `X-Callback-Url` in OpenFaaS's shape (the
        function's body and headers plus X-Call-Id, X-Function-Status …), retried until delivered."""
        fname = _invoked(name)
        if self.registry.get(fname) is None:
            raise OpenFaasError(404, f"function {_fn_name(name)!r} not found")
        refused = self._caller_refusal(fname, request, from_outside(
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]))
        if refused is not None:
            return refused
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

    def _caller_refusal(self, name: str, request: Request, headers: list[tuple[str, str]]) -> Response | None:
        """The function's own `auth` rule (auth/function_keys.py): `/function/NAME` is no way around it."""
        active = self.registry.get(name)
        if active is None:
            return None  # the invoker answers 404
        refused = function_keys.refusal(active.revision.spec, name, request.scope["query_string"].decode("latin-1"),
                                        headers, self.keys)
        if refused is None:
            return None
        out = platform_error(*refused)
        return Response(out.body, status_code=out.status,
                        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in out.headers})


def cron_trigger_id(name: str) -> str:
    """The id of the cron trigger the cron-connector's annotations make: the one `polyfn deploy -f stack.yml`
    gives it (cli/manifest.py `trigger_id`), so both paths change the same trigger."""
    from polyfn.manifests.model import TriggerDecl, trigger_id

    ns, fn = split(name)  # (a namespace's trigger: `team-a~ID`, the id the control API holds it under)
    return qualify(ns, trigger_id(fn, TriggerDecl("cron", {}, f"functions.{fn}.annotations")))


ASYNC_TRIGGER = OPENFAAS_ASYNC  # the trigger name of OpenFaaS async calls (their queue jobs and activations)

ANY = "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS"

#: the OpenFaaS gateway's API: method, path, handler (its class names the services it uses)
ROUTES = (
    Route("GET",          "/system/functions",                  OpenFaasApi.list_functions),
    Route("POST",         "/system/functions",                  OpenFaasApi.deploy),
    Route("PUT",          "/system/functions",                  OpenFaasApi.update),
    Route("DELETE",       "/system/functions",                  OpenFaasApi.delete),
    Route("GET",          "/system/function/{name}",            OpenFaasApi.get_function),
    Route("POST",         "/system/scale-function/{name}",      OpenFaasApi.scale),
    Route("GET",          "/system/info",                       OpenFaasApi.system_info),
    Route("GET",          "/system/namespaces",                 OpenFaasApi.list_namespaces),
    Route("GET",          "/system/logs",                       OpenFaasApi.logs),
    Route("GET",          "/system/secrets",                    OpenFaasSecrets.list_secrets),
    Route("POST,PUT",     "/system/secrets",                    OpenFaasSecrets.put_secret),
    Route("DELETE",       "/system/secrets",                    OpenFaasSecrets.delete_secret),
    Route(ANY,            "/function/{name}",                   OpenFaasGateway.invoke),
    Route(ANY,            "/function/{name}/{path:path}",       OpenFaasGateway.invoke),
    Route("POST,PUT,GET", "/async-function/{name}",             OpenFaasGateway.invoke_async),
    Route("POST,PUT,GET", "/async-function/{name}/{path:path}", OpenFaasGateway.invoke_async),
)


def install(app: FastAPI, *, settings: Any, store: Any, deployer: Any, invoker: Any, recorder: Any, queue: Any,
            keys: Any, delete_function: Any, registry: Any, secret_values: Any = None, entities: Any = None,
            triggers: Any = None, namespaces: Any = None) -> None:
    """Mount the OpenFaaS gateway's API on `app` with the services the composition root hands in."""
    api = OpenFaasApi(settings=settings, store=store, deployer=deployer, invoker=invoker, recorder=recorder,
                      queue=queue, keys=keys, delete_function=delete_function, registry=registry,
                      secret_values=secret_values, entities=entities, triggers=triggers, namespaces=namespaces)
    gateway = OpenFaasGateway(settings=settings, registry=registry, invoker=invoker, queue=queue, keys=keys)
    r = APIRouter(include_in_schema=False)
    mount(r, ROUTES, api, OpenFaasSecrets(api, secret_values=secret_values), gateway)
    app.include_router(r)

    @app.exception_handler(OpenFaasError)
    async def _error(_: Request, e: OpenFaasError) -> Response:
        headers = {"www-authenticate": 'Basic realm="polyfn"'} if e.status == 401 else {}
        return Response(e.message + "\n", status_code=e.status, media_type="text/plain", headers=headers)
