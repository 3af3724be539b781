"""The console's sessions from the visitor's side: log in with an API key, log out, and (an administrator's
session) pick the namespace to work in."""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from polyfn.console.frame import COOKIE, SECURITY_HEADERS, Pages, redirect, safe_next, same_origin
from polyfn.tenancy import key_namespace

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.console.sessions import Sessions

#: pages that stay where they are when an administrator picks another namespace
LIST_PAGES = ("/console/functions", "/console/activations", "/console/tables", "/console/usage", "/console/deploy",
              "/console/workflows")


class LoginPages:
    """`keys` (KeyRing): logging in with a namespace's key; `namespaces`: the administrator's picker."""

    def __init__(self, *, settings: Settings, sessions: Sessions, admin_key: str, keys: Any, namespaces: Any,
                 pages: Pages):
        self.settings = settings
        self.sessions = sessions
        self.admin_key = admin_key
        self.keys = keys
        self.namespaces = namespaces
        self.pages = pages

    async def login_page(self, request: Request) -> Response:
        return self.pages.render(request, "login.html", authed=False, error="",
                                 next=safe_next(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        if not same_origin(request):
            return Response("cross-origin request refused", status_code=403, headers=SECURITY_HEADERS)
        form = await request.form()
        key = str(form.get("key") or "").strip()
        nxt = safe_next(str(form.get("next") or ""))
        confined: str | None = None
        if not key or not hmac.compare_digest(key.encode(), self.admin_key.encode()):
            rec = self.keys.verify(key) if key and self.keys is not None else None
            if rec is None:
                await asyncio.sleep(0.2)  # slows guessing a little; the key has 256 bits anyway
                return self.pages.render(
                    request, "login.html", 401, authed=False, next=nxt,
                    error="That key is not this node's API key nor one of its other keys. The node's own is in "
                          "admin.key in the data dir; a namespace's is made with "
                          "`polyfn --namespace N keys create`.")
            if rec.scope not in ("admin", "deploy") or rec.owner is not None or rec.function:
                return self.pages.render(
                    request, "login.html", 403, authed=False, next=nxt,
                    error=f"Key {rec.id} has scope {rec.scope!r}: the console needs a deploy or admin key "
                          "not limited to one function.")
            confined = key_namespace(rec)
        resp = redirect(nxt or "/console/")
        resp.set_cookie(COOKIE, self.sessions.create(confined), max_age=int(self.settings.console_session_ttl),
                        path="/console", httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return resp

    async def pick_namespace(self, request: Request) -> Response:
        """An administrator's session works in the namespace picked (a namespace's session cannot pick)."""
        token = str(request.cookies.get(COOKIE))
        _ns, may_pick = self.sessions.working(token)
        form = await request.form()
        name = str(form.get("namespace") or "")
        if not may_pick or self.namespaces is None or not await self.namespaces.exists(name):
            return self.pages.not_found(request, f"namespace {name!r}")
        self.sessions.chosen[token] = name
        back = str(form.get("next") or "")  # (a list page stays; a page of one thing of the old namespace does not)
        return redirect(back if back in LIST_PAGES else "/console/functions")

    async def logout(self, request: Request) -> Response:
        self.sessions.end(request.cookies.get(COOKIE))
        resp = redirect("/console/login")
        resp.delete_cookie(COOKIE, path="/console")
        return resp

    async def index(self, request: Request) -> RedirectResponse:
        return redirect("/console/functions")
