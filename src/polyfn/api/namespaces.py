"""The control API's namespaces: `/v1/namespaces` and the one place a `/v1` request's namespace is resolved.

`NamespaceScope` (raw ASGI, before routing) decides the namespace a request acts in — the key's own, or for a
node administrator's key the one it asks for (`X-Polyfn-Namespace` or `?namespace=`, else `default`) — and
qualifies the function names the request carries (`/v1/functions/NAME…`, `?function=NAME`) with it, so the
routers, `authorize` and the services below work on held names (tenancy.py) and need not know namespaces;
the lists read `request.state.namespace` to show only that namespace's things. A namespace the key may not
see is answered exactly like one that does not exist (404 `namespace_not_found`). APIs that are not
namespaced yet answer 403 `not_namespaced` outside `default`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec
from fastapi import APIRouter, Request

from polyfn.api.errors import ApiError
from polyfn.api.routes import Route, mount
from polyfn.auth.keys import KeyRing
from polyfn.tenancy import DEFAULT, HEADER, SEP, Quotas, for_key, key_namespace, qualify

#: the `/v1/...` heads that know namespaces; outside `default` the others answer 403 `not_namespaced`
NAMESPACED = frozenset({"functions", "activations", "usage", "namespaces", "version", "keys", "triggers",
                        "openapi.json", "docs", "stats",
                        "secrets", "workflows", "executions", "queue", "dlq", "topics", "logs", "events",
                        "apps", "sites", "storage"})


def _error(status: int, code: str, message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return ({"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"x-polyfn-error", code.encode())]},
            {"type": "http.response.body", "body": body})


class NamespaceScope:
    def __init__(self, app: Any, keys: KeyRing, namespaces: Any):
        self.app = app
        self.keys = keys
        self.namespaces = namespaces  # polyfn.namespaces.Namespaces

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path.startswith("/v1/") or path == "/metrics"):
            await self.app(scope, receive, send)
            return
        auth = requested = ""
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v.decode("latin-1")
            elif k == HEADER.encode():
                requested = v.decode("latin-1").strip()
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        requested = next((v for k, v in query if k == "namespace"), requested)
        scheme, _, token = auth.partition(" ")
        key = self.keys.verify(token) if scheme.lower() == "bearer" and token else None
        if key is None:  # `authorize` answers 401 for it
            await self.app(scope, receive, send)
            return
        ns = for_key(key, requested or None)
        if ns is None or not await self.namespaces.exists(ns):
            for m in _error(404, "namespace_not_found", f"namespace {requested!r} does not exist"):
                await send(m)
            return
        parts = path.split("/")  # ["", "v1", head, name, ...]
        head = parts[2] if len(parts) > 2 else ""
        if ns != DEFAULT and path != "/metrics" and head not in NAMESPACED:
            for m in _error(403, "not_namespaced", f"/{path.strip('/')} is not namespaced yet: only the "
                            "default namespace's keys (or an administrator's, in the default namespace) use it"):
                await send(m)
            return
        if head == "functions" and len(parts) > 3 and parts[3]:
            if SEP in parts[3]:  # a held name is never addressed directly: the namespace says whose it is
                for m in _error(404, "function_not_found", f"function {parts[3]!r} does not exist"):
                    await send(m)
                return
            parts[3] = qualify(ns, parts[3])
        qs = scope["query_string"]
        if any(k == "function" for k, _ in query):
            qs = urlencode([(k, qualify(ns, v) if k == "function" and SEP not in v else v) for k, v in query]
                           ).encode()
        new_path = "/".join(parts)
        scope = {**scope, "path": new_path, "raw_path": new_path.encode(), "query_string": qs,
                 "state": {**scope.get("state", {}), "namespace": ns}}
        await self.app(scope, receive, send)


def request_namespace(request: Request) -> str:
    return getattr(request.state, "namespace", DEFAULT)


class NamespaceRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    quotas: dict[str, Any] | None = None
    description: str = ""


class QuotaRequest(msgspec.Struct, forbid_unknown_fields=True):
    quotas: dict[str, Any]


def namespace_json(ns: Any, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": ns.name, "description": ns.description, "created_at": ns.created_at,
                           "quotas": {q: getattr(ns.quotas, q) for q in Quotas.__struct_fields__}}
    if usage is not None:
        out["usage"] = usage
    return out


async def _body(request: Request, typ: type[Any]) -> Any:
    try:
        return msgspec.json.decode(await request.body(), type=typ)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ApiError(400, "invalid_request", f"invalid body: {e}") from None


def _admin(request: Request) -> None:
    key = request.state.key
    if key_namespace(key) is not None:  # (only an administrator's key may act in any namespace)
        raise ApiError(403, "forbidden", f"key {key.id} is confined to namespace "
                       f"{getattr(key, 'namespace', DEFAULT)!r}: creating, changing and deleting namespaces "
                       "needs the node's admin key")

def _visible(request: Request, name: str) -> None:
    key = request.state.key
    if for_key(key, name) is None:
        raise ApiError(404, "namespace_not_found", f"namespace {name!r} does not exist")


class NamespaceRoutes:
    """`describe(name) -> dict`: a namespace's use against its quotas; `delete(name, force) -> dict`: what went."""

    def __init__(self, *, namespaces: Any, describe: Any, delete: Any):
        self.namespaces = namespaces
        self.describe = describe
        self.delete = delete

    async def create(self, request: Request) -> dict[str, Any]:
        _admin(request)
        req = await _body(request, NamespaceRequest)
        return namespace_json(await self.namespaces.create(req.name, req.quotas, req.description))

    async def list_namespaces(self, request: Request) -> dict[str, Any]:
        key = request.state.key
        own = key_namespace(key)
        if own is not None:  # a namespace's key sees its own only: one row, not every namespace read and dropped
            return {"namespaces": [namespace_json(await self.namespaces.get(own))]}
        return {"namespaces": [namespace_json(n) for n in await self.namespaces.list()]}

    async def get_namespace(self, name: str, request: Request) -> dict[str, Any]:
        _visible(request, name)
        ns = await self.namespaces.get(name)
        return namespace_json(ns, await self.describe(name))

    async def set_quotas(self, name: str, request: Request) -> dict[str, Any]:
        _admin(request)
        req = await _body(request, QuotaRequest)
        return namespace_json(await self.namespaces.set_quotas(name, req.quotas))

    async def delete_namespace(self, name: str, request: Request, force: bool = False) -> dict[str, Any]:
        _admin(request)
        await self.namespaces.get(name)
        if name == DEFAULT:
            raise ApiError(400, "invalid_namespace", "namespace 'default' cannot be deleted")
        return await self.delete(name, force)


NAMESPACES = (
    Route("POST",   "/namespaces",        NamespaceRoutes.create,
          {"status_code": 201, "summary": "Create a namespace (admin)"}),
    Route("GET",    "/namespaces",        NamespaceRoutes.list_namespaces,
          {"summary": "List namespaces (a namespace's key sees only its own)"}),
    Route("GET",    "/namespaces/{name}", NamespaceRoutes.get_namespace,
          {"summary": "A namespace, with its use against each quota"}),
    Route("PATCH",  "/namespaces/{name}", NamespaceRoutes.set_quotas,
          {"summary": "Set quotas (admin; null lifts one)"}),
    Route("DELETE", "/namespaces/{name}", NamespaceRoutes.delete_namespace,
          {"summary": "Delete a namespace and everything it owns (admin)"}),
)


def build_router(*, namespaces: Any, describe: Any, delete: Any) -> APIRouter:
    r = APIRouter(tags=["namespaces"])
    mount(r, NAMESPACES, NamespaceRoutes(namespaces=namespaces, describe=describe, delete=delete))
    return r
