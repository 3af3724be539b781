"""polyfn's own control routes for the database (`/v1/db/…`, admin key): which tables functions may reach.

`GET /v1/db/grants` lists grants; `PUT /v1/db/grants/{function}/{table}` with `{"access": "read"|"write"}`
grants; `DELETE /v1/db/grants/{function}[/{table}]` revokes. Raw ASGI like the faces, answered by the
database service, so the control API's wiring stays untouched.
"""

from __future__ import annotations

import json
from typing import Any

from polyfn.db.access import ACCESS, Grants
from polyfn.tenancy import HEADER, SEP, key_namespace, local, qualify

PREFIX = "/v1/db/"


class Control:
    def __init__(self, grants: Grants, keys: Any, ns: str = "default"):
        self.grants = grants
        self.keys = keys
        self.ns = ns

    @staticmethod
    def owns(scope: dict[str, Any]) -> bool:
        return scope["type"] == "http" and scope["path"].startswith(PREFIX)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        status, out = await self.handle(scope, body)
        data = json.dumps(out).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    async def handle(self, scope: dict[str, Any], body: bytes) -> tuple[int, dict[str, Any]]:
        auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        key = self.keys.from_authorization(auth)
        if key is None:
            return 401, _err("unauthorized", "missing, wrong or revoked API key: send 'Authorization: Bearer <key>'")
        if key.scope != "admin":
            return 403, _err("forbidden", f"key {key.id} has scope {key.scope!r}; table grants need 'admin'")
        parts = [p for p in scope["path"][len(PREFIX):].split("/") if p]
        method = scope["method"]
        ns = key_namespace(key) or dict(scope["headers"]).get(HEADER.encode(), b"").decode("latin-1") or self.ns
        if len(parts) > 1:  # the function, by its held name in that namespace (tenancy.py)
            parts[1] = qualify(ns, parts[1].replace(SEP, "-"))
        if not parts or parts[0] != "grants":
            return 404, _err("not_found", f"no such database route: {scope['path']}")
        if method == "GET" and len(parts) == 1:
            return 200, {"grants": [{**g, "function": local(g["function"])} for g in await self.grants.list(ns)]}
        if method == "PUT" and len(parts) == 3:
            try:
                access = (json.loads(body) if body else {}).get("access", "write")
            except (ValueError, AttributeError):
                return 400, _err("invalid_json", "the body must be a JSON object like {\"access\": \"read\"}")
            if access not in ACCESS:
                return 400, _err("invalid_access", f"access={access!r}: use one of {', '.join(ACCESS)}")
            await self.grants.grant(ns, parts[1], parts[2], access)
            return 200, {"function": local(parts[1]), "table": parts[2], "access": access}
        if method == "DELETE" and len(parts) in (2, 3):
            n = await self.grants.revoke(ns, parts[1], parts[2] if len(parts) == 3 else None)
            return 200, {"revoked": n}
        return 405, _err("method_not_allowed", f"{method} {scope['path']} is not a database route")


def _err(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
