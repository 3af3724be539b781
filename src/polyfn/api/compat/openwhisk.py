"""The OpenWhisk REST API subset `wsk` uses: its actions and their invocation, its routes (`install`).

Auth: basic `uuid:key` as `wsk` sends it, i.e. `wsk property set --apihost http://127.0.0.1:8080 --auth
polyfn-admin:<admin key>` (any polyfn access key id and its secret). Namespaces: `_` and any name all mean
polyfn's single namespace (reported as `polyfn`).

* `PUT /api/v1/namespaces/{ns}/actions/{name}[?overwrite=true]` with `exec.kind` (`python:3`, `python:default`,
  `nodejs:20`, …), `exec.code` (source, or base64 zip with `binary: true`), `exec.main`, `parameters`,
  `annotations`, `limits.{timeout (ms), memory (MB)}` deploys the action with the `openwhisk` flavor.
* `POST …/actions/{name}?blocking=true&result=true` invokes with the default parameters merged with the
  body; an application error (a result with `error`) or a developer error (exception) answers 502.
* `GET /api/v1`: the API's description as OpenWhisk's (`wsk property get --apibuild`); `GET /api/v1/namespaces`.
* Activations (`GET …/activations[?name=&limit=&skip=]`, `…/activations/{id}`, `…/activations/{id}/logs|result`):
  openwhisk_activations.py; web actions (`/api/v1/web/{ns}/{package}/{name}.{json,http,…}`): openwhisk_web.py;
  packages: openwhisk_packages.py; triggers, rules and the alarm feed: openwhisk_events.py; sequences and
  conductors: openwhisk_compositions.py. A zipped action is recognised as OpenWhisk does (base64 code, with or
  without `binary`); an action's result `{"error": …}` is an application error (status code 1), an exception a
  developer error (2).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sqlite3
import time
import uuid
from typing import Any

import msgspec
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from polyfn import __version__, jsontext
from polyfn.api.compat import common
from polyfn.api.compat.openwhisk_activations import WhiskActivations, activation_json, blocking_result
from polyfn.api.compat.openwhisk_compositions import Compositions
from polyfn.api.compat.openwhisk_events import WhiskEvents
from polyfn.api.compat.openwhisk_packages import WhiskPackages
from polyfn.api.compat.openwhisk_web import WhiskWeb
from polyfn.api.compat.whisk_names import (
    A_ANN,
    A_KIND,
    A_NAME,
    A_PARAMS,
    NAMESPACE,
    NS,
    WhiskError,
    defaults,
    json_object,
    paging,
    polyfn_name,
    to_openwhisk,
    to_polyfn,
)
from polyfn.api.compat.whisk_names import annotation as _ann
from polyfn.api.routes import Route, mount
from polyfn.auth.keys import allows
from polyfn.call import Call
from polyfn.deploy import archive
from polyfn.deploy.errors import DeployError
from polyfn.manifests import runtimes
from polyfn.model import FunctionInfo, SpecError, validate_name
from polyfn.tenancy import DEFAULT, for_key, local, namespace_of, owns, qualify

ACTION_FIELDS = {"namespace", "name", "exec", "parameters", "annotations", "limits", "publish", "version"}


def _kind(kind: str) -> str:
    lang = kind.split(":", 1)[0]
    if lang == "python":
        return "python"
    if lang == "nodejs":
        return "node"
    raise WhiskError(400, f"exec.kind {kind!r} is not supported: polyfn runs python:* and nodejs:* actions")


def action_json(info: FunctionInfo, qualified: bool = False) -> dict[str, Any]:
    """The action as OpenWhisk shows it: `pkg/a` is name `a` in namespace `polyfn/pkg` (`qualified`: the name
    stays `pkg/a`, for what names the action)."""
    a = info.spec.annotations
    ns_name = _to_openwhisk(namespace_of(info.name))
    name = a.get(A_NAME, local(info.name))
    pkg, _, base = name.rpartition("/")
    return {
        "namespace": f"{ns_name}/{pkg}" if pkg and not qualified else ns_name,
        "name": name if qualified else base,
        "version": f"0.0.{info.revision}",
        "exec": {"kind": a.get(A_KIND, f"{'python:3' if info.spec.runtime == 'python' else 'nodejs:20'}"),
                 "binary": False},
        "annotations": _ann(info, A_ANN, []),
        "parameters": _ann(info, A_PARAMS, []),
        "limits": {"timeout": int(info.spec.timeout * 1000), "memory": info.spec.memory, "logs": 10,
                   "concurrency": info.spec.concurrency},
        "publish": False,
        "updated": int(info.updated_at * 1000),
    }


_NS = NS  # (whisk_names.NS: the polyfn namespace of the request)
_to_openwhisk = to_openwhisk


class WhiskApi(common.VendorFace):
    def __init__(self, *, workflows: Any, entities: Any = None, triggers: Any = None, namespaces: Any = None,
                 **shared: Any):
        super().__init__(**shared)
        self.namespaces_svc = namespaces  # polyfn.namespaces.Namespaces: which exist
        self.workflows = workflows  # sequences and conductor actions run as workflows
        self.compositions = Compositions(self.store, workflows, NS.get)  # sequences, conductors (openwhisk_compositions.py)
        # packages (openwhisk_packages.py), triggers, rules (openwhisk_events.py): `entities` keeps them,
        # `triggers` runs alarm feeds
        self.packages = WhiskPackages(entities, self._action_versions, NS.get)
        self.events = WhiskEvents(self.packages, self.recorder, triggers, self._start, enter=NS.set)
        self.activations = WhiskActivations(self.store, self.recorder, self.events, self.auth)  # openwhisk_activations.py
        self.web = WhiskWeb(self.packages, self.find, self.invoker, self.keys)  # web actions (openwhisk_web.py)

    async def auth(self, request: Request) -> str:
        """The caller's key id; also resolves the namespace of the path (`_`: the key's own; `polyfn`: polyfn's
        default) — one the key may not see is answered like one that does not exist."""
        rec = self.keys.from_authorization(request.headers.get("authorization", "")) if self.keys else None
        if rec is None or not allows(rec, "deploy", None):
            raise WhiskError(401, "The supplied authentication is invalid")
        given = request.path_params.get("ns", "_")
        ns = for_key(rec, None if given in ("_", "whisk.system") else to_polyfn(given))
        if ns is None or (self.namespaces_svc is not None and not await self.namespaces_svc.exists(ns)):
            raise WhiskError(404, "The requested resource does not exist.")
        _NS.set(ns)
        return rec.id

    async def find(self, name: str) -> FunctionInfo:
        if not name or name.startswith("/"):
            raise WhiskError(404, "The requested resource does not exist.")
        info = await self.store.get_function(qualify(_NS.get(), polyfn_name(name)))
        if info is None or info.spec.annotations.get(A_NAME, local(info.name)) != name:
            raise WhiskError(404, "The requested resource does not exist.")
        return info

    async def _composition(self, name: str) -> Any:
        """The sequence composition `name` of the request's namespace (None: there is none)."""
        return await self.compositions.find(name)

    # -- actions -----------------------------------------------------------------------------------

    async def list_actions(self, request: Request, ns: str, package: str = "") -> Response:
        """Every action, or (`…/actions/P/`, what `wsk action list P` asks) those of package P (a binding's:
        its package's)."""
        await self.auth(request)
        skip, limit = paging(request)
        ns = _NS.get()
        infos = [i for i in await self.store.list_functions() if owns(ns, i.name)]
        comps = await self.compositions.all()
        actions = [action_json(i) for i in infos] + [Compositions.action_json(m) for m in comps]
        if package:
            source = (await self.packages.package_params(f"{package}/x"))[0].rpartition("/")[0]
            actions = [a for a in actions if a["namespace"] == f"{to_openwhisk(ns)}/{source}"]
        return JSONResponse(actions[skip: skip + limit])

    async def get_action(self, request: Request, ns: str, name: str) -> Response:
        await self.auth(request)
        if name.endswith("/"):
            return await self.list_actions(request, ns, name.rstrip("/"))
        target, pkg_params = await self.packages.package_params(name)
        if (seq := await self._composition(target)) is not None:
            return JSONResponse(Compositions.action_json(seq))
        shown = action_json(await self.find(target))
        if pkg_params:  # as OpenWhisk shows an action through its package: the package's parameters under its own
            own = {p.get("key") for p in shown["parameters"]}
            shown["parameters"] = [{"key": k, "value": v} for k, v in pkg_params.items() if k not in own] + \
                shown["parameters"]
        return JSONResponse(shown)

    async def delete_action(self, request: Request, ns: str, name: str) -> Response:
        await self.auth(request)
        if (seq := await self._composition(name)) is not None:
            return await self.compositions.delete(seq)
        info = await self.find(name)
        await self.remove_function(info.name)
        return JSONResponse(action_json(info))

    async def put_action(self, request: Request, ns: str, name: str) -> Response:
        await self.auth(request)
        body = _action_body(await request.body())
        pname = polyfn_name(name)
        try:
            validate_name(pname)
        except SpecError as e:
            raise WhiskError(400, str(e)) from None
        pname = qualify(_NS.get(), pname)
        await self.packages.check_package(name)
        if (body.get("exec") or {}).get("kind") == "sequence":
            return await self.compositions.put(name, body, request.query_params.get("overwrite", "false") == "true")
        existing = await self.store.get_function(pname)
        if existing is not None and request.query_params.get("overwrite", "false") != "true":
            raise WhiskError(409, "resource already exists")
        fields = _action_fields(existing, pname, name, body)
        exec_ = body.get("exec") or {}
        if exec_:
            files = self._exec_fields(fields, exec_)
        elif existing is None:
            raise WhiskError(400, "exec is required to create an action")
        else:
            files = await common.current_files(self.store, pname) or {}
        try:
            info, _created, _ = await self.deployer.deploy(fields, files)
        except DeployError as e:
            raise WhiskError(400, f"{e.code}: {e.message}") from None
        return JSONResponse(action_json(info))

    def _exec_fields(self, fields: dict[str, Any], exec_: dict[str, Any]) -> dict[str, bytes]:
        """The runtime, flavor and handler of an action's `exec` into `fields`; its code's files."""
        kind = str(exec_.get("kind", ""))
        lang = _kind(kind)
        try:
            t = runtimes.resolve("openwhisk", lang, kind)
        except runtimes.UnsupportedRuntime as e:
            raise WhiskError(400, str(e)) from None
        fields.update(runtime=t.runtime, flavor=t.flavor)
        fields["annotations"][A_KIND] = kind
        files, module = self._code(exec_, lang)
        if module:
            fields["handler"] = f"{module}.{exec_.get('main') or 'main'}"
        else:
            fields.pop("handler", None)
        return files

    def _code(self, exec_: dict[str, Any], lang: str) -> tuple[dict[str, bytes], str | None]:
        code = exec_.get("code")
        if not isinstance(code, str) or not code:
            raise WhiskError(400, "exec.code is required")
        ext = ".py" if lang == "python" else ".js"
        data = _zip_code(code)
        if data is None:
            if exec_.get("binary"):
                raise WhiskError(400, "exec.code is not a base64 zip (binary: true)")
            return {"action" + ext: code.encode()}, "action"
        s = self.settings
        try:
            files = archive.files_from_zip(data, s.max_code_size, s.max_code_files)
        except DeployError as e:
            raise WhiskError(400, e.message) from None
        if lang == "python":
            if "__main__.py" not in files:
                raise WhiskError(400, "a zipped Python action needs __main__.py")
            # `__main__` cannot be imported under its own name in a running interpreter: load it as another.
            files["_polyfn_ow_main.py"] = files["__main__.py"]
            return files, "_polyfn_ow_main"
        return files, None

    # -- invocation --------------------------------------------------------------------------------

    async def invoke(self, request: Request, ns: str, name: str) -> Response:
        subject = await self.auth(request)
        params = json_object(await request.body(), "parameters")
        q = request.query_params
        blocking, result_only = q.get("blocking") == "true", q.get("result") == "true"
        if ns == "whisk.system":  # a feed action (`wsk trigger create --feed /whisk.system/alarms/alarm`)
            return _system_result(name, await self.events.feed(name, params), result_only)
        target, pkg_params = await self.packages.package_params(name)
        seq = await self._composition(target)
        info = await self.find(target) if seq is None else None
        if seq is not None:
            return await self.compositions.invoke(seq.name, name, {**pkg_params, **params}, blocking, result_only)
        assert info is not None
        args = {**pkg_params, **defaults(info), **params}
        if Compositions.is_conductor(info):
            return await self.compositions.invoke_conductor(info, name, args, blocking, result_only)
        aid = uuid.uuid4().hex
        if not blocking:
            await self._submit(info, args, aid)
            return JSONResponse({"activationId": aid}, status_code=202)
        out = await self.invoker.call(Call(info.name, "event", "openwhisk", body=json.dumps(args).encode(),
                                           content_type="application/json", activation_id=aid))
        status, result = blocking_result(out, info)
        if result_only:
            return JSONResponse(result, status_code=status)
        await self.recorder.flush()
        act = await self.store.get_activation(aid)
        record = activation_json(act, action_json(info, True)["name"], subject) if act else {"activationId": aid}
        if act is not None:
            record["response"]["result"] = result
        return JSONResponse(record, status_code=status)

    async def _submit(self, info: FunctionInfo, args: dict[str, Any], aid: str) -> None:
        """Queue one invocation of the action (non-blocking): its activation id is `aid`."""
        try:
            await common.submit_async(self.queue, info.name, "event", "openwhisk", json.dumps(args).encode(),
                                      "application/json", job_id=aid)
        except common.AsyncRejected as e:
            raise WhiskError(e.status, e.message) from None
        except sqlite3.IntegrityError:
            pass  # queued already (the same alarm tick after a restart): once only

    async def _start(self, name: str, params: dict[str, Any], aid: str) -> str:
        """Start action `name` non-blocking with `params` over its defaults, as a rule does; its activation id."""
        target, pkg_params = await self.packages.package_params(name)
        if (seq := await self._composition(target)) is not None:
            resp = await self.compositions.invoke(seq.name, name, {**pkg_params, **params}, False, False)
            return str(json.loads(bytes(resp.body))["activationId"])
        info = await self.find(target)
        args = {**pkg_params, **defaults(info), **params}
        if Compositions.is_conductor(info):
            resp = await self.compositions.invoke_conductor(info, name, args, False, False)
            return str(json.loads(bytes(resp.body))["activationId"])
        await self._submit(info, args, aid)
        return aid

    async def _action_versions(self) -> dict[str, str]:
        """Every action's OpenWhisk name and version (functions and compositions)."""
        ns = _NS.get()
        out = {i.spec.annotations.get(A_NAME, local(i.name)): f"0.0.{i.revision}" for i in await self.store.list_functions()
               if owns(ns, i.name)}
        out.update({m.meta["ow_name"]: f"0.0.{m.revision}" for m in await self.compositions.all()})
        return out

    async def _delete_action(self, name: str) -> None:
        if (seq := await self._composition(name)) is not None:
            await self.compositions.delete(seq)
        else:
            await self.remove_function((await self.find(name)).name)

    async def namespaces(self, request: Request) -> Response:
        rec = self.keys.from_authorization(request.headers.get("authorization", "")) if self.keys else None
        if rec is None or not allows(rec, "deploy", None):
            raise WhiskError(401, "The supplied authentication is invalid")
        names = [n.name for n in await self.namespaces_svc.list()] if self.namespaces_svc is not None else [DEFAULT]
        return JSONResponse([_to_openwhisk(n) for n in names if for_key(rec, n) is not None])

    async def info(self, request: Request) -> Response:
        """`GET /api/v1`, as OpenWhisk describes its API (no auth)."""
        return JSONResponse({"description": "OpenWhisk API", "api_version": "1.0.0", "api_version_path": "v1",
                             "build": "polyfn", "buildno": __version__,
                             "swagger_paths": {"ui": "/v1/docs", "api-docs": "/v1/openapi.json"}})

    # -- packages, triggers, rules (openwhisk_packages.py, openwhisk_events.py) ---------------------------

    async def entities(self, request: Request, ns: str, kind: str, name: str = "") -> Response:
        """`…/{packages,triggers,rules}[/{name}]`: the collection's list, or one entity's operation."""
        await self.auth(request)
        op = ENTITY_OPS.get((request.method, kind, bool(name)))
        if op is None:
            raise WhiskError(404 if kind not in ("packages", "triggers", "rules") else 405,
                             "The requested resource does not exist.")
        face = self.packages if kind == "packages" else self.events
        if not name:
            return await getattr(face, op)(request, *paging(request))
        if op == "delete_package":
            return await self.packages.delete_package(request, name, self._delete_action)
        return await getattr(face, op)(request, name)



def _zip_code(code: str) -> bytes | None:
    """The zip an action's code is, detected as OpenWhisk does (base64 text, length a multiple of 4) and
    confirmed by the zip signature; None when the code is source."""
    t = code.strip()
    if not t or len(t) % 4 or not _BASE64.match(t):
        return None
    try:
        data = base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if data[:4] in (b"PK\x03\x04", b"PK\x05\x06") else None


_BASE64 = re.compile(r"\A[A-Za-z0-9+/]*={0,2}\Z")


def _system_result(name: str, result: dict[str, Any], result_only: bool) -> Response:
    """A feed action's answer: its result, or an activation record around it (not kept)."""
    if result_only:
        return JSONResponse(result)
    now = int(time.time() * 1000)
    return JSONResponse({
        "namespace": "whisk.system", "name": name.rpartition("/")[2], "version": "0.0.1", "subject": NAMESPACE,
        "activationId": uuid.uuid4().hex, "start": now, "end": now, "duration": 0, "statusCode": 0,
        "response": {"status": "success", "statusCode": 0, "success": True, "result": result},
        "logs": [], "annotations": [{"key": "path", "value": f"whisk.system/{name}"}], "publish": False})


#: (method, collection, one entity?) → the WhiskPackages or WhiskEvents method
ENTITY_OPS = {
    **{("GET", f"{k}s", False): f"list_{k}s" for k in ("package", "trigger", "rule")},
    **{(m, f"{k}s", True): f"{op}_{k}" for k in ("package", "trigger", "rule")
       for m, op in (("GET", "get"), ("PUT", "put"), ("DELETE", "delete"))},
    ("POST", "triggers", True): "fire_trigger",
    ("POST", "rules", True): "set_rule_state",
}


IN_NS = "/api/v1/namespaces/{ns}"
EVERY = "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS"

#: the routes `wsk` uses (none in the OpenAPI document): method, path, handler (WhiskApi, its activations, its web
#: actions)
WHISK = (
    Route("GET",    "/api/v1",                                WhiskApi.info),
    Route("GET",    "/api/v1/namespaces",                     WhiskApi.namespaces),
    Route("GET",    "/api/v1/namespaces/",                    WhiskApi.namespaces),  # `wsk namespace list` (no redirect)
    Route("GET",    IN_NS + "/actions",                          WhiskApi.list_actions),
    Route("GET",    IN_NS + "/actions/{name:path}",              WhiskApi.get_action),
    Route("PUT",    IN_NS + "/actions/{name:path}",              WhiskApi.put_action),
    Route("DELETE", IN_NS + "/actions/{name:path}",              WhiskApi.delete_action),
    Route("POST",   IN_NS + "/actions/{name:path}",              WhiskApi.invoke),
    Route("GET",    IN_NS + "/activations",                      WhiskActivations.list_activations),
    Route("GET",    IN_NS + "/activations/{aid}",                WhiskActivations.get_activation),
    Route("GET",    IN_NS + "/activations/{aid}/logs",           WhiskActivations.activation_logs),
    Route("GET",    IN_NS + "/activations/{aid}/result",         WhiskActivations.activation_result),
    # after the actions' and activations' routes: packages, triggers, rules
    Route("GET",    IN_NS + "/{kind}",                           WhiskApi.entities),
    Route("GET,PUT,DELETE,POST", IN_NS + "/{kind}/{name}",       WhiskApi.entities),
    Route(EVERY,    "/api/v1/web/{ns}/{package}/{name}",      WhiskWeb.run),
    Route(EVERY,    "/api/v1/web/{ns}/{package}/{name}/{path:path}", WhiskWeb.run),
)


def install(app: FastAPI, **services: Any) -> None:
    """`services`: what `WhiskApi` takes (the composition root hands them in)."""
    api = WhiskApi(**services)
    r = APIRouter(include_in_schema=False)
    mount(r, WHISK, api, api.activations, api.web)
    app.include_router(r)

    @app.exception_handler(WhiskError)
    async def _error(_: Request, e: WhiskError) -> Response:
        return JSONResponse({"error": e.message, "code": uuid.uuid4().hex}, status_code=e.status)


def _action_body(raw: bytes) -> dict[str, Any]:
    """A PUT action's JSON object, with only the fields OpenWhisk's actions have."""
    try:
        body = jsontext.loads_text(raw or b"{}")
    except ValueError:
        raise WhiskError(400, "The request content was malformed: not JSON") from None
    if not isinstance(body, dict):
        raise WhiskError(400, "The request content was malformed: expected an object")
    unknown = sorted(set(body) - ACTION_FIELDS)
    if unknown:
        raise WhiskError(400, f"The request content was malformed: unsupported field(s) {', '.join(unknown)}")
    if not isinstance(body.get("exec") or {}, dict):
        raise WhiskError(400, "The request content was malformed: exec must be an object")
    return body


def _action_fields(existing: Any, pname: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The function spec's fields for an action: the existing function's (an update) or new ones, with the
    action's name, parameters, annotations and limits."""
    fields: dict[str, Any] = {"name": pname, "annotations": {}}
    if existing is not None:
        fields = msgspec.structs.asdict(existing.spec)
        fields["annotations"] = dict(existing.spec.annotations)
    ann = fields["annotations"]
    if name != local(pname):
        ann[A_NAME] = name
    for key, field in (("parameters", A_PARAMS), ("annotations", A_ANN)):
        if key in body:
            if not isinstance(body[key], list):
                raise WhiskError(400, f"{key} must be a list of {{key, value}}")
            ann[field] = json.dumps(body[key])
    limits = body.get("limits") or {}
    if not isinstance(limits, dict):
        raise WhiskError(400, "limits must be an object ({timeout, memory, ...})")
    try:
        if "timeout" in limits:
            fields["timeout"] = float(limits["timeout"]) / 1000
        if "memory" in limits:
            fields["memory"] = int(limits["memory"])
    except (TypeError, ValueError):
        raise WhiskError(400, f"limits.timeout and limits.memory must be numbers, not {limits!r}") from None
    return fields
