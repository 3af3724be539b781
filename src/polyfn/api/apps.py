"""`/v1/apps`: apps (the client-facing projects of polyfn.apps) and their users, for the CLI and the console.

Reading needs scope `read`; creating, changing and deleting apps and revoking users needs `deploy`
(`auth.keys.required_scope`). Settings are validated by the core (`apps.model.parse_config`); errors name
the setting. An app belongs to the namespace it was created in (the request's: api/namespaces.py); ids are
global, as they name the app in its URLs (`/app/ID`), so another namespace's id is taken (409 `app_exists`),
and otherwise answers exactly as an app that does not exist (404 `app_not_found`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from fastapi import APIRouter, Query, Request

from polyfn.api.errors import ApiError, parsed_json
from polyfn.api.namespaces import request_namespace
from polyfn.api.routes import Route, mount
from polyfn.apps.model import App
from polyfn.apps.service import AppError, AppService

if TYPE_CHECKING:
    from polyfn.apps.service import AppService
    from polyfn.services import Keys

SDK_PATH = "/sdk/polyfn-cloud.js"


def app_json(app: App) -> dict[str, Any]:
    return {"id": app.id, "appid": app.appid, "bucket": app.bucket, "created_at": app.created_at,
            "updated_at": app.updated_at, "namespace": app.namespace, "config": msgspec.to_builtins(app.config),
            "urls": {"base": f"/app/{app.id}", "sdk": SDK_PATH, "firebase_callable": f"/{app.id}/REGION/FUNCTION"}}


async def _object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    data = parsed_json(raw) if raw else {}
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "send a JSON object of app settings")
    return data


class AppRoutes:
    """`apps` (None: the app service is not running: every route answers 503 `apps_unavailable`)."""

    def __init__(self, *, apps: AppService | None, keys: Keys):
        self.apps = apps
        self.keys = keys

    def _svc(self) -> AppService:
        if self.apps is None:
            raise ApiError(503, "apps_unavailable", "the app service is not running")
        return self.apps

    @staticmethod
    async def _run(coro: Any) -> Any:
        try:
            return await coro
        except AppError as e:
            raise ApiError(e.status, e.code, e.message, e.headers or None) from None

    async def _mine(self, request: Request, app_id: str) -> App:
        """The app `app_id` of the request's namespace (another's is answered as absent)."""
        app = await self._svc().find_app(app_id)
        if app is None or app.namespace != request_namespace(request):
            raise ApiError(404, "app_not_found", f"app {app_id!r} does not exist (create it with "
                           f"`polyfn apps create {app_id}`)")
        return app

    async def create_app(self, request: Request) -> dict[str, Any]:
        data = await _object(request)
        app_id = data.pop("id", None)
        if not isinstance(app_id, str):
            raise ApiError(400, "invalid_app", "send {\"id\": \"my-env-id\", …settings}")
        return app_json(await self._run(self._svc().create_app(app_id, data, request_namespace(request))))

    async def list_apps(self, request: Request) -> dict[str, Any]:
        ns = request_namespace(request)
        return {"apps": [app_json(a) for a in await self._svc().store.list_apps() if a.namespace == ns]}

    async def get_app(self, app_id: str, request: Request) -> dict[str, Any]:
        return app_json(await self._mine(request, app_id))

    async def update_app(self, app_id: str, request: Request) -> dict[str, Any]:
        await self._mine(request, app_id)
        return app_json(await self._run(self._svc().update_app(app_id, await _object(request))))

    async def delete_app(self, app_id: str, request: Request) -> dict[str, Any]:
        app = await self._mine(request, app_id)
        await self._run(self._svc().delete_app(app_id))
        await self.keys.forget_function(app.owner)  # the app's own storage key (its users' file grants)
        return {"deleted": app_id}

    async def list_users(self, app_id: str, request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                         after: str = "") -> dict[str, Any]:
        await self._mine(request, app_id)
        users = await self._svc().store.list_users(app_id, limit, after)
        return {"users": [u.public() for u in users]}

    async def revoke_user(self, app_id: str, uid: str, request: Request, disable: bool = False) -> dict[str, Any]:
        await self._mine(request, app_id)
        n = await self._run(self._svc().revoke_user(app_id, uid, disable))
        return {"uid": uid, "sessions_revoked": n, "disabled": disable}

    async def enable_user(self, app_id: str, uid: str, request: Request) -> dict[str, Any]:
        await self._mine(request, app_id)
        await self._run(self._svc().enable_user(app_id, uid))
        return {"uid": uid, "disabled": False}

    async def delete_user(self, app_id: str, uid: str, request: Request) -> dict[str, Any]:
        await self._mine(request, app_id)
        await self._run(self._svc().delete_user(app_id, uid))
        return {"deleted": uid}


APPS = (
    Route("POST",   "/apps",                              AppRoutes.create_app,
          {"status_code": 201, "summary": "Create an app (its id is wx.cloud's `env`)"}),
    Route("GET",    "/apps",                              AppRoutes.list_apps, {"summary": "List apps"}),
    Route("GET",    "/apps/{app_id}",                     AppRoutes.get_app, {"summary": "Describe an app"}),
    Route("PATCH",  "/apps/{app_id}",                     AppRoutes.update_app,
          {"summary": "Change some of an app's settings"}),
    Route("DELETE", "/apps/{app_id}",                     AppRoutes.delete_app,
          {"summary": "Delete an app with its users and sessions"}),
    Route("GET",    "/apps/{app_id}/users",               AppRoutes.list_users,
          {"summary": "List an app's users (uid order; page with `after`)"}),
    Route("POST",   "/apps/{app_id}/users/{uid}/revoke",  AppRoutes.revoke_user,
          {"summary": "Sign a user out everywhere (optionally disable them)"}),
    Route("POST",   "/apps/{app_id}/users/{uid}/enable",  AppRoutes.enable_user,
          {"summary": "Let a disabled user sign in again"}),
    Route("DELETE", "/apps/{app_id}/users/{uid}",         AppRoutes.delete_user,
          {"summary": "Delete a user (and end their sessions)"}),
)


def build_router(*, apps: AppService | None, keys: Keys) -> APIRouter:
    r = APIRouter(tags=["apps"])
    mount(r, APPS, AppRoutes(apps=apps, keys=keys))
    return r
