"""OpenWhisk web actions (beside openwhisk.py): `/api/v1/web/{ns}/{package}/{name}.{json,http,text,html,svg}`.

Actions with the annotation `web-export: true`, no OpenWhisk auth (the function's own `auth` rule holds,
auth/function_keys.py); `__ow_method`, `__ow_headers`, `__ow_path`, `__ow_query`/`__ow_body` as OpenWhisk passes
them; form fields (`application/x-www-form-urlencoded`, `multipart/form-data`: a file field is its content,
base64) are merged into the parameters like query and JSON fields. `.http` answers the result's `statusCode`,
`headers` and `body` (base64 for a binary content type); `.text|.html|.svg` its property of that name.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from polyfn.api.compat.openwhisk_activations import blocking_result
from polyfn.api.compat.openwhisk_packages import WhiskPackages
from polyfn.api.compat.whisk_names import A_ANN, NS, WhiskError, annotation, defaults, to_polyfn
from polyfn.auth import function_keys
from polyfn.call import Call
from polyfn.model import FunctionInfo
from polyfn.tenancy import DEFAULT

if TYPE_CHECKING:
    from polyfn.services import Invocations, Keys

WEB_EXTENSIONS = {"json": "application/json", "http": "", "text": "text/plain", "html": "text/html",
                  "svg": "image/svg+xml"}


def web_exported(info: FunctionInfo) -> bool:
    return any(isinstance(x, dict) and x.get("key") == "web-export" and x.get("value") in (True, "true")
               for x in annotation(info, A_ANN, []))


async def form_fields(request: Request) -> dict[str, Any]:
    """A form body's fields (the last value of a repeated one); a file field is its content, base64."""
    try:
        form = await request.form()
    except Exception as e:  # a malformed multipart body
        raise WhiskError(400, f"The request content was malformed: the form cannot be read ({e})") from None
    out: dict[str, Any] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            out[key] = value
        else:
            out[key] = base64.b64encode(await value.read()).decode()
    await form.close()
    return out


def http_result(result: Any) -> Response:
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


class WhiskWeb:
    """Runs a web action: `find` is the action of the request's namespace (WhiskApi.find), `packages` gives the
    parameters of its package."""

    def __init__(self, packages: WhiskPackages, find: Callable[[str], Awaitable[FunctionInfo]], invoker: Invocations,
                 keys: Keys):
        self.packages = packages
        self.find = find
        self.invoker = invoker
        self.keys = keys

    async def run(self, request: Request, ns: str, package: str, name: str, path: str = "") -> Response:
        action, ext = name, "http"
        m = re.match(r"^(.*)\.(json|http|text|html|svg)$", name)
        if m:
            action, ext = m[1], m[2]
        full = action if package == "default" else f"{package}/{action}"
        NS.set(DEFAULT if ns in ("_", "guest") else to_polyfn(ns))  # (public: the URL says whose action)
        if NS.get() != DEFAULT and package != "default":
            raise WhiskError(404, "The requested resource does not exist.")
        try:
            target, pkg_params = await self.packages.package_params(full)
            info = await self.find(target)
        except WhiskError:
            info = None
        if info is None or not web_exported(info):
            raise WhiskError(404, "The requested resource does not exist.")
        refused = function_keys.refusal(info.spec, info.name, request.scope["query_string"].decode("latin-1"),
                                        [(k.decode("latin-1").lower(), v.decode("latin-1"))
                                         for k, v in request.scope["headers"]], self.keys)
        if refused is not None:  # the function's own `auth` rule holds on every ingress (auth/function_keys.py)
            raise WhiskError(refused[0], refused[2])
        raw = await request.body()
        query = request.scope["query_string"].decode("latin-1")
        args: dict[str, Any] = {**pkg_params, **defaults(info)}
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
        elif raw and ct.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            args.update(await form_fields(request))
        elif raw:
            try:
                args["__ow_body"] = raw.decode() if ct.startswith("text/") or "form" in ct else base64.b64encode(raw).decode()
            except UnicodeDecodeError:
                args["__ow_body"] = base64.b64encode(raw).decode()
        args.update({"__ow_method": request.method.lower(), "__ow_headers": dict(request.headers.items()),
                     "__ow_path": "/" + path if path else ""})
        out = await self.invoker.call(Call(info.name, "event", "openwhisk-web", body=json.dumps(args).encode(),
                                           content_type="application/json"))
        status, result = blocking_result(out, info)
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
        return http_result(result)
