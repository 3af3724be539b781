"""Control API for the object store: endpoint info, access keys, storage triggers (their failed deliveries
are in the async queue's dead-letter queue: `/v1/dlq`).

The S3 API itself is on the storage port (see `polyfn.storage.api`); these routes live under `/v1` with
the admin key like the rest of the control plane. Storage access keys are the node's API keys
(`auth/keys.py`): `/v1/storage/keys` is a shortcut that makes `invoke`-scope keys (storage reads and writes)
or `read`-scope ones (`{"scope": "read"}`), and lists the keys that can sign S3 requests.

Per namespace (api/namespaces.py): the request's namespace's buckets (usage), keys (made in it, listed, revoked)
and triggers (of its functions, on its buckets); another namespace's are answered as absent.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from polyfn.api.errors import ApiError, parsed_json
from polyfn.api.namespaces import request_namespace
from polyfn.api.routes import Route, mount
from polyfn.api.security import key_json
from polyfn.storage.errors import S3Error
from polyfn.storage.notifications import TriggerError
from polyfn.tenancy import DEFAULT, local, owns, qualify

if TYPE_CHECKING:
    from polyfn.services import FunctionStore, Keys
    from polyfn.storage.service import StorageService


def _storage(storage: StorageService | None) -> Any:
    if storage is None:
        raise ApiError(503, "storage_unavailable", "the object store is not running")
    return storage


def _endpoint(storage: StorageService | None, request: Request) -> str:
    """The S3 endpoint as this client can reach it (the host it used, the storage port)."""
    st = storage
    if not st or not st.url:
        return ""
    host = request.url.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{st.url.rsplit(':', 1)[1]}"


def _storage_key_json(k: Any) -> dict[str, Any]:
    return {**key_json(k), "name": k.description, "function": local(k.owner) if k.owner else k.owner}


def _trigger_json(t: Any) -> dict[str, Any]:
    return {**t.to_json(), "function": local(t.function)}


def _bucket_namespace(st: Any, bucket: str) -> str | None:
    try:
        return str(st.backend.bucket(bucket).namespace)
    except S3Error:
        return None


class StorageRoutes:
    def __init__(self, *, storage: StorageService | None, keys: Keys, store: FunctionStore):
        self.storage = storage
        self.keys = keys
        self.store = store

    async def info(self, request: Request) -> dict[str, Any]:
        st = _storage(self.storage)
        caller = getattr(request.state, "key", None)
        found = self.keys.signing_credentials(caller.id) if caller is not None else None
        creds = ({"access_key_id": caller.id, "secret_access_key": found[0]}
                 if caller is not None and found is not None and found[0] is not None else None)
        return {"enabled": st.enabled, "endpoint": _endpoint(self.storage, request),
                "region": st.settings.storage_region,
                "backend": st.settings.storage_backend, "error": st.error or None,
                "max_object_size": st.settings.storage_max_object_size, "credentials": creds}

    async def usage(self, request: Request) -> dict[str, Any]:
        st = _storage(self.storage)
        if st.proxy is not None:
            raise ApiError(501, "not_implemented", "usage is counted by the upstream S3 with the s3 backend")
        ns = request_namespace(request)
        return {"buckets": await asyncio.to_thread(st.usage, ns)}

    async def create_key(self, request: Request) -> JSONResponse:
        _storage(self.storage)
        raw = await request.body()
        body = parsed_json(raw) if raw else {}
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "send a JSON object")
        name, scope = body.get("name"), body.get("scope", "invoke")
        if name is not None and (not isinstance(name, str) or not name or len(name) > 100):
            raise ApiError(400, "invalid_request", "`name` must be a string of 1-100 characters")
        if scope not in ("read", "invoke"):
            raise ApiError(400, "invalid_scope", f"scope={scope!r}: storage keys are 'read' (GET/HEAD/list) or "
                           "'invoke' (reads and writes); make other scopes with `polyfn keys create`")
        rec, secret = await self.keys.create(scope, None, name or "user", namespace=request_namespace(request))
        return JSONResponse({**_storage_key_json(rec), "name": name or "user", "secret_access_key": secret},
                            status_code=201)

    async def list_keys(self, request: Request) -> dict[str, Any]:
        ns = request_namespace(request)
        return {"keys": [_storage_key_json(k) for k in await self.keys.list()
                         if k.revoked_at is None and k.secret_enc and getattr(k, "namespace", DEFAULT) == ns]}

    async def delete_key(self, access_key_id: str, request: Request) -> dict[str, Any]:
        ns = request_namespace(request)
        found = next((k for k in await self.keys.list() if k.id == access_key_id), None)
        if found is None or getattr(found, "namespace", DEFAULT) != ns or not await self.keys.revoke(access_key_id):
            raise ApiError(404, "key_not_found", f"access key {access_key_id!r} does not exist")
        return {"deleted": access_key_id}

    async def add_trigger(self, request: Request) -> JSONResponse:
        st = _storage(self.storage)
        body = parsed_json(await request.body())
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "send a JSON object")
        function, bucket = body.get("function"), body.get("bucket")
        events = body.get("events", "created")
        if not isinstance(events, str) and not (isinstance(events, list) and all(isinstance(e, str) for e in events)):
            raise ApiError(400, "invalid_request", "`events` must be a string like 'created,deleted' or a list")
        prefix, suffix = body.get("prefix") or "", body.get("suffix") or ""
        if not isinstance(function, str) or not isinstance(bucket, str):
            raise ApiError(400, "invalid_request", "`function` and `bucket` are required strings")
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise ApiError(400, "invalid_request", "`prefix` and `suffix` must be strings")
        trigger_id = body.get("id")
        if trigger_id is not None and not isinstance(trigger_id, str):
            raise ApiError(400, "invalid_request", "`id` must be a string")
        ns = request_namespace(request)
        if "~" in function or await self.store.get_function(qualify(ns, function)) is None:
            raise ApiError(404, "function_not_found", f"function {function!r} does not exist")
        owner = _bucket_namespace(st, bucket) if st.proxy is None else ns
        if owner is not None and owner != ns:  # another namespace's bucket: as one that does not exist
            raise ApiError(404, "bucket_not_found", f"bucket={bucket!r} does not exist: make it first "
                           "(aws s3 mb / polyfn storage mb)")
        try:
            trig = await st.notifications.add(qualify(ns, function), bucket, events, prefix, suffix, trigger_id)
        except TriggerError as e:
            raise ApiError(e.status, e.code, e.message) from None
        return JSONResponse(_trigger_json(trig), status_code=201)

    async def list_triggers(self, request: Request, function: str | None = None,
                            bucket: str | None = None) -> dict[str, Any]:
        ns = request_namespace(request)  # (`function` is qualified already: api/namespaces.py)
        return {"triggers": [_trigger_json(t) for t in _storage(self.storage).notifications.list(function, bucket)
                             if owns(ns, t.function)]}

    async def delete_trigger(self, trigger_id: str, request: Request) -> dict[str, Any]:
        ns = request_namespace(request)
        notes = _storage(self.storage).notifications
        if not any(t.id == trigger_id and owns(ns, t.function) for t in notes.list()) or \
                await notes.remove(trigger_id) is None:
            raise ApiError(404, "trigger_not_found", f"storage trigger {trigger_id!r} does not exist")
        return {"deleted": trigger_id}


STORAGE = (
    Route("GET",    "",                       StorageRoutes.info,
          {"summary": "Object store endpoint, region, backend and the credentials of the calling key"}),
    Route("GET",    "/usage",                 StorageRoutes.usage,
          {"summary": "Objects and bytes per bucket of the namespace, every version counted (local backend)"}),
    Route("POST",   "/keys",                  StorageRoutes.create_key,
          {"status_code": 201, "summary": "Create a storage access key (an API key; the secret is shown only here)"}),
    Route("GET",    "/keys",                  StorageRoutes.list_keys,
          {"summary": "List the keys that can sign S3 requests (without secrets)"}),
    Route("DELETE", "/keys/{access_key_id}",  StorageRoutes.delete_key,
          {"summary": "Revoke a storage access key (same as DELETE /v1/keys/ID)"}),
    Route("POST",   "/triggers",              StorageRoutes.add_trigger,
          {"status_code": 201, "summary": "Invoke a function when objects are created/deleted in a bucket"}),
    Route("GET",    "/triggers",              StorageRoutes.list_triggers),
    Route("DELETE", "/triggers/{trigger_id}", StorageRoutes.delete_trigger),
)


def build_router(*, storage: StorageService | None, keys: Keys, store: FunctionStore) -> APIRouter:
    r = APIRouter(prefix="/storage", tags=["storage"])
    mount(r, STORAGE, StorageRoutes(storage=storage, keys=keys, store=store))
    return r
