"""The OpenWhisk REST API subset `wsk` uses for actions and activations, and web actions.

Auth: basic `uuid:key` as `wsk` sends it, i.e. `wsk property set --apihost http://127.0.0.1:8080 --auth
polyfn-admin:<admin key>` (any polyfn access key id and its secret). Namespaces: `_` and any name all mean
polyfn's single namespace (reported as `polyfn`).

* `PUT /api/v1/namespaces/{ns}/actions/{name}[?overwrite=true]` with `exec.kind` (`python:3`, `python:default`,
  `nodejs:20`, …), `exec.code` (source, or base64 zip with `binary: true`), `exec.main`, `parameters`,
  `annotations`, `limits.{timeout (ms), memory (MB)}` deploys the action with the `openwhisk` flavor.
* `POST …/actions/{name}?blocking=true&result=true` invokes with the default parameters merged with the
  body; an application error (a result with `error`) or a developer error (exception) answers 502.
* `GET …/activations[?name=&limit=&skip=]`, `…/activations/{id}`, `…/activations/{id}/logs|result`.
* `/api/v1/web/{ns}/{package}/{name}.{json,http,text,html,svg}`: web actions (annotation `web-export: true`),
  no auth; `__ow_method`, `__ow_headers`, `__ow_path`, `__ow_query`/`__ow_body` as OpenWhisk passes them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from polyfn import jsontext
from polyfn.api.compat import common, keys
from polyfn.api.compat.openwhisk_compositions import Compositions
from polyfn.api.compat.whisk_names import A_ANN, A_KIND, A_NAME, A_PARAMS, NAMESPACE, WhiskError, polyfn_name
from polyfn.api.compat.whisk_names import annotation as _ann
from polyfn.call import Call
from polyfn.deploy import archive
from polyfn.deploy.errors import DeployError
from polyfn.invoker import Outcome
from polyfn.manifests import runtimes
from polyfn.model import Activation, FunctionInfo, SpecError, validate_name

ACTION_FIELDS = {"namespace", "name", "exec", "parameters", "annotations", "limits", "publish", "version"}
WEB_EXTENSIONS = {"json": "application/json", "http": "", "text": "text/plain", "html": "text/html",
                  "svg": "image/svg+xml"}


def _kind(kind: str) -> str:
    lang = kind.split(":", 1)[0]
    if lang == "python":
        return "python"
    if lang == "nodejs":
        return "node"
    raise WhiskError(400, f"exec.kind {kind!r} is not supported: polyfn runs python:* and nodejs:* actions")


def action_json(info: FunctionInfo) -> dict[str, Any]:
    a = info.spec.annotations
    return {
        "namespace": NAMESPACE,
        "name": a.get(A_NAME, info.name),
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


def _web_exported(info: FunctionInfo) -> bool:
    return any(isinstance(x, dict) and x.get("key") == "web-export" and x.get("value") in (True, "true")
               for x in _ann(info, A_ANN, []))


def activation_json(act: Activation, info_name: str, subject: str = "") -> dict[str, Any]:
    try:
        result = jsontext.loads(act.result) if act.result else {}
    except ValueError:
        result = {"result": act.result}
    if act.status == "success":
        status, code = ("application error", 1) if isinstance(result, dict) and "error" in result else ("success", 0)
    elif act.status == "error" or act.status in ("timeout", "crashed", "oom", "init_failed"):
        status, code = "action developer error", 2
        err = act.error or {}
        result = {"error": err.get("errorMessage") or err.get("message") or act.status}
    else:
        status, code = "whisk internal error", 3
        result = {"error": (act.error or {}).get("message", act.status)}
    annotations = [{"key": "path", "value": f"{NAMESPACE}/{info_name}"},
                   {"key": "waitTime", "value": round(act.wait_ms)}]
    if act.cold:
        annotations.append({"key": "initTime", "value": round(act.init_ms)})
    return {
        "namespace": NAMESPACE, "name": info_name, "version": f"0.0.{act.revision}", "subject": subject or NAMESPACE,
        "activationId": act.id, "start": int(act.start * 1000), "end": int(act.end * 1000),
        "duration": round(act.duration_ms), "statusCode": code,
        "response": {"status": status, "statusCode": code, "success": code == 0, "result": result},
        "logs": [f"{_iso(ln.ts)} {ln.stream}: {ln.line}" for ln in act.logs],
        "annotations": annotations, "publish": False,
    }


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class WhiskApi(common.VendorFace):
    def __init__(self, *, workflows: Any, **shared: Any):
        super().__init__(**shared)
        self.workflows = workflows  # sequences and conductor actions run as workflows
        self.compositions = Compositions(self.store, workflows)  # sequences and conductor actions (openwhisk_compositions.py)

    def auth(self, request: Request) -> str:
        who = keys.check_basic(self.keys, request.headers.get("authorization", ""), "deploy")
        if who is None:
            raise WhiskError(401, "The supplied authentication is invalid")
        return who

    async def find(self, name: str) -> FunctionInfo:
        info = await self.store.get_function(polyfn_name(name))
        if info is None or info.spec.annotations.get(A_NAME, info.name) != name:
            raise WhiskError(404, "The requested resource does not exist.")
        return info

    # -- actions -----------------------------------------------------------------------------------

    async def list_actions(self, request: Request, ns: str) -> Response:
        self.auth(request)
        skip, limit = _paging(request)
        infos = await self.store.list_functions()
        actions = [action_json(i) for i in infos] + [Compositions.action_json(m) for m in await self.compositions.all()]
        return JSONResponse(actions[skip: skip + limit])

    async def get_action(self, request: Request, ns: str, name: str) -> Response:
        self.auth(request)
        if (seq := await self.compositions.find(name)) is not None:
            return JSONResponse(Compositions.action_json(seq))
        return JSONResponse(action_json(await self.find(name)))

    async def delete_action(self, request: Request, ns: str, name: str) -> Response:
        self.auth(request)
        if (seq := await self.compositions.find(name)) is not None:
            return await self.compositions.delete(seq)
        info = await self.find(name)
        await self.remove_function(info.name)
        return JSONResponse(action_json(info))

    async def put_action(self, request: Request, ns: str, name: str) -> Response:
        self.auth(request)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise WhiskError(400, "The request content was malformed: not JSON") from None
        if not isinstance(body, dict):
            raise WhiskError(400, "The request content was malformed: expected an object")
        unknown = sorted(set(body) - ACTION_FIELDS)
        if unknown:
            raise WhiskError(400, f"The request content was malformed: unsupported field(s) {', '.join(unknown)}")
        pname = polyfn_name(name)
        try:
            validate_name(pname)
        except SpecError as e:
            raise WhiskError(400, str(e)) from None
        if (body.get("exec") or {}).get("kind") == "sequence":
            return await self.compositions.put(name, body, request.query_params.get("overwrite", "false") == "true")
        existing = await self.store.get_function(pname)
        if existing is not None and request.query_params.get("overwrite", "false") != "true":
            raise WhiskError(409, "resource already exists")
        exec_ = body.get("exec") or {}
        fields: dict[str, Any] = {"name": pname, "annotations": {}}
        if existing is not None:
            fields = msgspec.structs.asdict(existing.spec)
            fields["annotations"] = dict(existing.spec.annotations)
        ann = fields["annotations"]
        if name != pname:
            ann[A_NAME] = name
        for key, field in (("parameters", A_PARAMS), ("annotations", A_ANN)):
            if key in body:
                if not isinstance(body[key], list):
                    raise WhiskError(400, f"{key} must be a list of {{key, value}}")
                ann[field] = json.dumps(body[key])
        limits = body.get("limits") or {}
        if "timeout" in limits:
            fields["timeout"] = float(limits["timeout"]) / 1000
        if "memory" in limits:
            fields["memory"] = int(limits["memory"])
        if exec_:
            kind = str(exec_.get("kind", ""))
            lang = _kind(kind)
            try:
                t = runtimes.resolve("openwhisk", lang, kind)
            except runtimes.UnsupportedRuntime as e:
                raise WhiskError(400, str(e)) from None
            fields.update(runtime=t.runtime, flavor=t.flavor)
            ann[A_KIND] = kind
            files, module = self._code(exec_, lang)
            fields["handler"] = f"{module}.{exec_.get('main') or 'main'}" if module else None
            if fields["handler"] is None:
                fields.pop("handler")
        elif existing is None:
            raise WhiskError(400, "exec is required to create an action")
        else:
            files = await common.current_files(self.store, pname) or {}
        try:
            info, _created, _ = await self.deployer.deploy(fields, files)
        except DeployError as e:
            raise WhiskError(400, f"{e.code}: {e.message}") from None
        return JSONResponse(action_json(info))

    def _code(self, exec_: dict[str, Any], lang: str) -> tuple[dict[str, bytes], str | None]:
        code = exec_.get("code")
        if not isinstance(code, str) or not code:
            raise WhiskError(400, "exec.code is required")
        ext = ".py" if lang == "python" else ".js"
        if not exec_.get("binary"):
            return {"action" + ext: code.encode()}, "action"
        try:
            data = base64.b64decode(code, validate=True)
        except (binascii.Error, ValueError):
            raise WhiskError(400, "exec.code is not base64 (binary: true)") from None
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
        subject = self.auth(request)
        seq = await self.compositions.find(name)
        info = await self.find(name) if seq is None else None
        raw = await request.body()
        try:
            params = json.loads(raw) if raw else {}
        except ValueError:
            raise WhiskError(400, "The request content was malformed: the parameters are not JSON") from None
        if not isinstance(params, dict):
            raise WhiskError(400, "The request content was malformed: the parameters must be an object")
        q = request.query_params
        blocking, result_only = q.get("blocking") == "true", q.get("result") == "true"
        if seq is not None:
            return await self.compositions.invoke(seq.name, name, params, blocking, result_only)
        assert info is not None
        args = {**_defaults(info), **params}
        if Compositions.is_conductor(info):
            return await self.compositions.invoke_conductor(info, name, args, blocking, result_only)
        aid = uuid.uuid4().hex

        def run() -> Any:
            return self.invoker.call(Call(info.name, "event", "openwhisk", body=json.dumps(args).encode(),
                                          content_type="application/json", activation_id=aid))

        if not blocking:
            try:
                await common.submit_async(self.queue, info.name, "event", "openwhisk", json.dumps(args).encode(),
                                          "application/json", job_id=aid)
            except common.AsyncRejected as e:
                raise WhiskError(e.status, e.message) from None
            return JSONResponse({"activationId": aid}, status_code=202)
        out = await run()
        status, result = _result(out, info)
        if result_only:
            return JSONResponse(result, status_code=status)
        await self.recorder.flush()
        act = await self.store.get_activation(aid)
        record = activation_json(act, action_json(info)["name"], subject) if act else {"activationId": aid}
        if act is not None:
            record["response"]["result"] = result
        return JSONResponse(record, status_code=status)

    async def web(self, request: Request, ns: str, package: str, name: str, path: str = "") -> Response:
        action, ext = name, "http"
        m = re.match(r"^(.*)\.(json|http|text|html|svg)$", name)
        if m:
            action, ext = m[1], m[2]
        full = action if package == "default" else f"{package}/{action}"
        try:
            info = await self.find(full)
        except WhiskError:
            info = None
        if info is None or not _web_exported(info):
            raise WhiskError(404, "The requested resource does not exist.")
        raw = await request.body()
        query = request.scope["query_string"].decode("latin-1")
        args: dict[str, Any] = dict(_defaults(info))
        args.update(dict(parse_qsl(query, keep_blank_values=True)))
        ct = request.headers.get("content-type", "")
        if raw and "json" in ct:
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise WhiskError(400, "The request content was malformed: the body is not JSON") from None
            if isinstance(parsed, dict):
                args.update(parsed)
            else:
                args["__ow_body"] = raw.decode()
        elif raw:
            try:
                args["__ow_body"] = raw.decode() if ct.startswith("text/") or "form" in ct else base64.b64encode(raw).decode()
            except UnicodeDecodeError:
                args["__ow_body"] = base64.b64encode(raw).decode()
        args.update({"__ow_method": request.method.lower(), "__ow_headers": dict(request.headers.items()),
                     "__ow_path": "/" + path if path else ""})
        out = await self.invoker.call(Call(info.name, "event", "openwhisk-web", body=json.dumps(args).encode(),
                                           content_type="application/json"))
        status, result = _result(out, info)
        if status != 200:
            return JSONResponse(result, status_code=status)
        if ext == "json":
            return JSONResponse(result)
        if ext in ("text", "html", "svg"):
            value = result.get(ext) if isinstance(result, dict) else None
            if value is None:
                return JSONResponse({"error": f"The action did not produce a valid response: no {ext!r} "
                                     "property in the result"}, status_code=400)
            return Response(str(value), media_type=WEB_EXTENSIONS[ext])
        return _http_result(result)

    # -- activations -------------------------------------------------------------------------------

    async def list_activations(self, request: Request, ns: str) -> Response:
        subject = self.auth(request)
        skip, limit = _paging(request)
        name = request.query_params.get("name")
        await self.recorder.flush()
        acts = await self.store.list_activations(function=polyfn_name(name) if name else None,
                                                      limit=skip + limit)
        docs = request.query_params.get("docs") == "true"
        out = []
        for a in acts[skip:]:
            rec = activation_json(a, a.function, subject)
            if not docs:
                rec.pop("logs")
                rec["response"].pop("result")
            out.append(rec)
        return JSONResponse(out)

    async def _activation(self, aid: str) -> Activation:
        await self.recorder.flush()
        act = await self.store.get_activation(aid)
        if act is None:
            raise WhiskError(404, "The requested resource does not exist.")
        return act

    async def get_activation(self, request: Request, ns: str, aid: str) -> Response:
        subject = self.auth(request)
        act = await self._activation(aid)
        return JSONResponse(activation_json(act, act.function, subject))

    async def activation_logs(self, request: Request, ns: str, aid: str) -> Response:
        self.auth(request)
        act = await self._activation(aid)
        return JSONResponse({"logs": activation_json(act, act.function)["logs"]})

    async def activation_result(self, request: Request, ns: str, aid: str) -> Response:
        self.auth(request)
        act = await self._activation(aid)
        resp = activation_json(act, act.function)["response"]
        return JSONResponse({"result": resp["result"], "status": resp["status"], "success": resp["success"]})

    async def namespaces(self, request: Request) -> Response:
        self.auth(request)
        return JSONResponse([NAMESPACE])


def _paging(request: Request) -> tuple[int, int]:
    try:
        skip = max(0, int(request.query_params.get("skip", "0")))
        limit = int(request.query_params.get("limit", "30")) or 200
    except ValueError:
        raise WhiskError(400, "skip and limit must be integers") from None
    return skip, min(max(limit, 1), 200)


def _defaults(info: FunctionInfo) -> dict[str, Any]:
    return {p["key"]: p.get("value") for p in _ann(info, A_PARAMS, []) if isinstance(p, dict) and "key" in p}


def _result(out: Outcome, info: FunctionInfo) -> tuple[int, Any]:
    """(HTTP status, result) as OpenWhisk answers a blocking invocation."""
    hdrs = common.outcome_headers(out)
    code = hdrs.get("x-polyfn-error")
    try:
        body: Any = jsontext.loads(out.body) if out.body else {}
    except ValueError:
        body = {"result": out.body.decode("utf-8", "replace")}
    if code == "function_not_found":
        return 404, {"error": "The requested resource does not exist."}
    if code == "too_many_requests":
        return 429, {"error": "Too many concurrent requests in flight."}
    if code == "function_timeout":
        return 502, {"error": f"The action exceeded its time limits of {int(info.spec.timeout * 1000)} milliseconds."}
    if code is not None:
        return 502, {"error": (body.get("error") or {}).get("message", code) if isinstance(body, dict) else code}
    if "x-polyfn-function-error" in hdrs:
        msg = body.get("errorMessage") if isinstance(body, dict) else None
        return 502, {"error": f"An error has occurred: {msg or out.body.decode('utf-8', 'replace')}"}
    if isinstance(body, dict) and "error" in body:
        return 502, body
    return 200, body


def _http_result(result: Any) -> Response:
    if not isinstance(result, dict):
        return JSONResponse({"error": "The action did not return a dictionary."}, status_code=502)
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    status = int(result.get("statusCode") or result.get("code") or 0)
    body = result.get("body")
    ct = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if body is None:
        data = b""
    elif isinstance(body, dict | list):
        data = json.dumps(body).encode()
        if not ct:
            headers["content-type"] = "application/json"
    else:
        data = str(body).encode()
        if ct and not ct.startswith(("text/", "application/json", "application/xml")):
            try:
                data = base64.b64decode(str(body), validate=True)
            except (binascii.Error, ValueError):
                pass
        if not ct:
            headers["content-type"] = "text/html"
    return Response(data, status_code=status or (200 if data else 204), headers=headers)


def install(app: FastAPI, **services: Any) -> None:
    """`services`: what `WhiskApi` takes (the composition root hands them in)."""
    api = WhiskApi(**services)
    r = APIRouter(include_in_schema=False)
    ns = "/api/v1/namespaces/{ns}"
    r.add_api_route("/api/v1/namespaces", api.namespaces, methods=["GET"])
    r.add_api_route(ns + "/actions", api.list_actions, methods=["GET"])
    r.add_api_route(ns + "/actions/{name:path}", api.get_action, methods=["GET"])
    r.add_api_route(ns + "/actions/{name:path}", api.put_action, methods=["PUT"])
    r.add_api_route(ns + "/actions/{name:path}", api.delete_action, methods=["DELETE"])
    r.add_api_route(ns + "/actions/{name:path}", api.invoke, methods=["POST"])
    r.add_api_route(ns + "/activations", api.list_activations, methods=["GET"])
    r.add_api_route(ns + "/activations/{aid}", api.get_activation, methods=["GET"])
    r.add_api_route(ns + "/activations/{aid}/logs", api.activation_logs, methods=["GET"])
    r.add_api_route(ns + "/activations/{aid}/result", api.activation_result, methods=["GET"])
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    r.add_api_route("/api/v1/web/{ns}/{package}/{name}", api.web, methods=methods)
    r.add_api_route("/api/v1/web/{ns}/{package}/{name}/{path:path}", api.web, methods=methods)
    app.include_router(r)

    @app.exception_handler(WhiskError)
    async def _error(_: Request, e: WhiskError) -> Response:
        return JSONResponse({"error": e.message, "code": uuid.uuid4().hex}, status_code=e.status)
