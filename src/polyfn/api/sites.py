"""`/v1/sites`: static sites served at `/sites/NAME/` (a namespace's at `/sites/NS/NAME/`: polyfn.sites). Deploy with a zip (multipart `code`) or
inline files (`files` / `files_base64`, as for functions); `spa` (default true) turns the index.html fallback on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request

from polyfn.api.deploy_body import read_deploy
from polyfn.api.errors import ApiError
from polyfn.api.namespaces import request_namespace
from polyfn.api.routes import Route, mount
from polyfn.sites import MAX_SITE_BYTES, MAX_SITE_FILES, SiteError

if TYPE_CHECKING:
    from polyfn.sites import Sites


class SiteRoutes:
    def __init__(self, *, sites: Sites):
        self.sites = sites

    async def deploy_site(self, name: str, request: Request, spa: bool = True) -> dict[str, Any]:
        fields, files = await read_deploy(request, MAX_SITE_BYTES, MAX_SITE_FILES)
        try:
            return await self.sites.deploy(name, files, bool(fields.get("spa", spa)), request_namespace(request))
        except SiteError as e:
            raise ApiError(e.status, e.code, e.message) from None

    async def list_sites(self, request: Request) -> dict[str, Any]:
        return {"sites": await self.sites.list(request_namespace(request))}

    async def delete_site(self, name: str, request: Request) -> dict[str, Any]:
        if not await self.sites.delete(name, request_namespace(request)):
            raise ApiError(404, "site_not_found", f"site {name!r} does not exist")
        return {"deleted": name}


SITES = (
    Route("PUT",    "/sites/{name}", SiteRoutes.deploy_site,
          {"summary": "Deploy a static site (replaces its files at once)"}),
    Route("GET",    "/sites",        SiteRoutes.list_sites, {"summary": "List static sites"}),
    Route("DELETE", "/sites/{name}", SiteRoutes.delete_site, {"summary": "Delete a static site"}),
)


def build_router(sites: Sites) -> APIRouter:
    r = APIRouter(tags=["sites"])
    mount(r, SITES, SiteRoutes(sites=sites))
    return r
