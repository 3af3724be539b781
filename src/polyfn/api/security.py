"""`/v1/keys` (scoped API keys) and `/v1/secrets` (encrypted secrets): admin scope only.

Secrets go in and never come out: the API lists names and times, not values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from fastapi import Request

from polyfn import tenancy
from polyfn.api.errors import ApiError
from polyfn.api.namespaces import request_namespace
from polyfn.auth.keys import KEY_SCOPES
from polyfn.auth.secrets import SecretError, SecretValues
from polyfn.model import NAME_RE as FUNCTION_NAME_RE

if TYPE_CHECKING:
    from polyfn.services import Keys


class KeyRequest(msgspec.Struct, forbid_unknown_fields=True):
    scope: str
    function: str | None = None
    description: str = ""
    namespace: str | None = None  # (default: the request's namespace)


class SecretRequest(msgspec.Struct, forbid_unknown_fields=True):
    value: str


def key_json(k: Any) -> dict[str, Any]:
    """A key as the API shows it (never its secret). `sigv4: false`: a key made before secrets were kept
    encrypted (migration 0007); it works as a bearer key only."""
    return {"access_key_id": k.id, "scope": k.scope, "function": k.function and tenancy.local(k.function),
            "namespace": k.namespace, "owner": k.owner,
            "description": k.description, "sigv4": bool(k.secret_enc), "created_at": k.created_at,
            "last_used_at": k.last_used_at, "revoked_at": k.revoked_at}


async def _body(request: Request, typ: type[Any]) -> Any:
    raw = await request.body()
    try:
        return msgspec.json.decode(raw, type=typ)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ApiError(400, "invalid_request", f"invalid body: {e}") from None


class SecurityRoutes:
    """`values`: setting and deleting secrets (auth/secrets.py), shared with the OpenFaaS face;
    `namespaces_exist(name)`: whether a namespace exists (a key is made in one)."""

    def __init__(self, *, keys: Keys, values: SecretValues, namespaces_exist: Any = None):
        self.keys = keys
        self.values = values
        self.namespaces_exist = namespaces_exist

    async def create_key(self, request: Request) -> dict[str, Any]:
        req = await _body(request, KeyRequest)
        if req.scope not in KEY_SCOPES:
            raise ApiError(400, "invalid_scope", f"scope={req.scope!r}: use one of {', '.join(KEY_SCOPES)}")
        if req.function is not None and not FUNCTION_NAME_RE.match(req.function):
            raise ApiError(400, "invalid_name", f"invalid function name {req.function!r}")
        ns = req.namespace or request_namespace(request)
        if req.namespace is not None and (tenancy.for_key(request.state.key, ns) is None or (
                self.namespaces_exist is not None and not await self.namespaces_exist(ns))):
            raise ApiError(404, "namespace_not_found", f"namespace {ns!r} does not exist")
        function = tenancy.qualify(ns, req.function) if req.function is not None else None
        rec, secret = await self.keys.create(req.scope, function, req.description[:500], namespace=ns)
        return {**key_json(rec), "secret_access_key": secret}

    async def list_keys(self, request: Request) -> dict[str, Any]:
        ns = request_namespace(request)
        return {"keys": [key_json(k) for k in await self.keys.list() if k.namespace == ns]}

    async def revoke_key(self, key_id: str, request: Request) -> dict[str, Any]:
        found = next((k for k in await self.keys.list() if k.id == key_id), None)
        if (found is not None and found.namespace != request_namespace(request)) or not await self.keys.revoke(key_id):
            raise ApiError(404, "key_not_found", f"no live key {key_id!r}")
        return {"revoked": key_id}

    async def put_secret(self, name: str, request: Request) -> dict[str, Any]:
        req = await _body(request, SecretRequest)
        try:
            created = await self.values.put(name, req.value, request_namespace(request))
        except SecretError as e:
            raise ApiError(e.status, e.code, e.message) from None
        return {"name": name, "created": created}

    async def list_secrets(self, request: Request) -> dict[str, Any]:
        return {"secrets": await self.values.list(request_namespace(request))}

    async def delete_secret(self, name: str, request: Request) -> dict[str, Any]:
        if not await self.values.delete(name, request_namespace(request)):
            raise ApiError(404, "secret_not_found", f"no secret {name!r}")
        return {"deleted": name}
