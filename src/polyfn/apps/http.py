"""The client face of the app platform: what the JS client SDK (and any HTTP client) calls, under `/app/{env}/`.

    POST auth/anonymous | auth/signup | auth/signin | auth/custom | auth/refresh | auth/signout
    GET  auth/user                                  the signed-in user
    POST call/{function}                            wx.cloud.callFunction: JSON `data` in, the function's result out
    …    storage/…, db/…                            the faces of `storage.py` and `database.py` in this package

Raw ASGI like the gateway (no framework routing, no models: callFunction is the hot path). Every answer is
JSON (but `db/collection.watch`: server-sent events); errors are `{"error": {"code", "message"}}` with a
stable code (`token_expired`, `token_revoked`, …) and `X-Polyfn-Error`. A browser's `Origin` must be one of
the app's `origins` or the request is refused (403 `origin_not_allowed`, no CORS grant); requests without
`Origin` (mini-programs, servers) pass.

The caller's identity is only ever the one a verified `Authorization: Bearer <access token>` names; it
travels to the function in the `Invoke` frame, never as a header.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from polyfn import jsontext
from polyfn.apps.model import App, Identity
from polyfn.apps.service import AppError, AppService
from polyfn.apps.tokens import TokenError
from polyfn.call import Call
from polyfn.db.wx_api import EventStream
from polyfn.gateway.asgi import send_outcome as _send
from polyfn.invoker import Invoker, Outcome, platform_error
from polyfn.outcome import JSON_HEADERS

AUTH_BODY_MAX = 64 * 1024
_SKIP_TO_FUNCTION = frozenset({"authorization", "cookie", "content-length", "host", "origin"})
Handler = Callable[["Request"], Awaitable["Outcome | EventStream"]]


class Request:
    """One request to an app: the app, the rest of the path, headers (lower-case str), body, client address."""

    __slots__ = ("_identity", "app", "body", "client", "headers", "method", "parts", "query", "service")

    def __init__(self, service: AppService, app: App, method: str, parts: list[str], headers: dict[str, str],
                 body: bytes, client: str, query: str):
        self.service = service
        self.app = app
        self.method = method
        self.parts = parts
        self.headers = headers
        self.body = body
        self.client = client
        self.query = query
        self._identity: Identity | bool | None = False

    def identity(self, required: bool = False) -> Identity | None:
        """The verified caller, None without a token (TokenError `token_missing` when `required`). A token
        that is present but bad is always refused: it is never silently treated as no token."""
        if self._identity is False:
            scheme, _, token = self.headers.get("authorization", "").partition(" ")
            token = token.strip()
            self._identity = self.service.verify(self.app.id, token) if scheme.lower() == "bearer" and token else None
        if self._identity is None and required:
            raise TokenError("token_missing", "sign in first: send Authorization: Bearer <access token>")
        return self._identity  # type: ignore[return-value]

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return jsontext.loads_text(self.body)
        except ValueError as e:
            raise AppError(400, "invalid_json", f"the body is not valid JSON: {e}") from None

    def fields(self, *names: str) -> list[Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise AppError(400, "invalid_request", f"send a JSON object with {', '.join(names)}")
        return [data.get(n) for n in names]


def json_outcome(value: Any, status: int = 200) -> Outcome:
    return Outcome(status, list(JSON_HEADERS), json.dumps(value).encode())


class AppsFace:
    """`/app/{env}/…` and `/sdk/…` (the client SDK's files). `extra` routes come from the other faces of this
    package (storage, database): `{("POST", "storage", "upload"): handler, …}`; a handler takes a `Request`
    and returns an `Outcome`."""

    def __init__(self, service: AppService, invoker: Invoker, sdk_dir: Path | None = None,
                 extra: dict[tuple[str, str, str], Handler] | None = None):
        self.service = service
        self.invoker = invoker
        self.max_payload = invoker.max_payload
        self.sdk_dir = sdk_dir
        self.closers: list[Callable[[], Awaitable[None]]] = []  # the other faces' clean-up, run by `close`
        self.routes: dict[tuple[str, str, str], Handler] = {
            ("POST", "auth", "anonymous"): self.anonymous,
            ("POST", "auth", "signup"): self.signup,
            ("POST", "auth", "signin"): self.signin,
            ("POST", "auth", "custom"): self.custom,
            ("POST", "auth", "refresh"): self.refresh,
            ("POST", "auth", "signout"): self.signout,
            ("GET", "auth", "user"): self.user,
            **(extra or {}),
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path: str = scope["path"]
        if path.startswith("/sdk/"):
            await _send(send, self._sdk_file(path[len("/sdk/"):], scope["method"]))
            return
        env, _, rest = path[len("/app/"):].partition("/")
        parts = rest.split("/")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        app = self.service.app(env) or await self.service.find_app(env)
        if app is None:
            await _send(send, platform_error(404, "app_not_found", f"app {env!r} does not exist"))
            return
        origin = headers.get("origin")
        grant = cors_grant(app, origin, headers.get("host", ""))
        if origin is not None and grant is None:
            await _send(send, platform_error(403, "origin_not_allowed", f"origin {origin!r} may not call app "
                                             f"{env!r}: add it with `polyfn apps update {env} --origin {origin}`"))
            return
        method = scope["method"]
        if method == "OPTIONS":
            await _send(send, Outcome(204, [*(grant or []), *PREFLIGHT], b""))
            return
        handler = self._route(method, parts)
        if handler is None:
            out = platform_error(404, "not_found", f"no such endpoint: {method} {path}")
        else:
            limit = self.max_payload if parts[0] in ("call", "fn", "db", "storage") else AUTH_BODY_MAX
            body = await _read_body(receive, limit)
            if body is None:
                out = platform_error(413, "payload_too_large", f"the body exceeds {limit} bytes")
            else:
                client = scope.get("client")
                req = Request(self.service, app, method, parts, headers, body, client[0] if client else "",
                              scope["query_string"].decode("latin-1"))
                out = await _guarded(handler, req)
        if grant:
            out.headers.extend(grant)
        if isinstance(out, EventStream):  # collection.watch: events until the client goes away
            await out.serve(receive, send)
            return
        await _send(send, out)

    async def close(self) -> None:
        for close in self.closers:
            await close()

    def _route(self, method: str, parts: list[str]) -> Handler | None:
        if parts[0] == "call" and len(parts) == 2 and method == "POST":
            return self.call
        return self.routes.get((method, parts[0], "/".join(parts[1:])))

    # -- auth --------------------------------------------------------------------------------------------

    async def anonymous(self, req: Request) -> Outcome:
        return json_outcome(await self.service.signin.sign_in_anonymous(req.app.id, req.client))

    async def signup(self, req: Request) -> Outcome:
        email, password = req.fields("email", "password")
        return json_outcome(await self.service.signin.sign_up(req.app.id, email, password, req.client), 201)

    async def signin(self, req: Request) -> Outcome:
        email, password = req.fields("email", "password")
        if not isinstance(password, str):
            raise AppError(400, "invalid_request", "send {\"email\": …, \"password\": …}")
        return json_outcome(await self.service.signin.sign_in_password(req.app.id, email, password, req.client))

    async def custom(self, req: Request) -> Outcome:
        (data,) = req.fields("data")
        return json_outcome(await self.service.signin.sign_in_custom(req.app.id, data, req.client))

    async def refresh(self, req: Request) -> Outcome:
        (token,) = req.fields("refresh_token")
        if not isinstance(token, str):
            raise AppError(400, "invalid_request", "send {\"refresh_token\": …}")
        return json_outcome(await self.service.refresh(req.app.id, token))

    async def signout(self, req: Request) -> Outcome:
        (token,) = req.fields("refresh_token")
        await self.service.sign_out(req.app.id, req.identity(), token if isinstance(token, str) else "")
        return json_outcome({"signed_out": True})

    async def user(self, req: Request) -> Outcome:
        ident = req.identity(required=True)
        assert ident is not None
        return json_outcome({"uid": ident.uid, "openid": ident.openid, "unionid": ident.unionid,
                             "email": ident.email, "provider": ident.provider, "app": ident.app,
                             "appid": ident.appid, "expires_at": ident.exp})

    # -- functions ---------------------------------------------------------------------------------------

    async def call(self, req: Request) -> Outcome:
        """wx.cloud.callFunction: the body is the `data` (JSON), the answer the function's own result."""
        name = req.app.function(req.parts[1])  # (a function of the app's namespace)
        ident = req.identity()
        active = self.invoker.registry.get(name)
        if active is not None and active.revision.spec.auth == "key":
            raise AppError(403, "function_not_public", f"function {name!r} needs an API key; apps may call functions "
                                                       "with auth anonymous or app")
        if active is not None and active.revision.spec.auth == "app" and ident is None:
            raise TokenError("token_missing", f"function {name!r} is for signed-in users: sign in first")
        if req.body:
            try:
                jsontext.loads(req.body)  # (only checked: the function gets the bytes)
            except ValueError as e:
                raise AppError(400, "invalid_json", f"callFunction data must be JSON: {e}") from None
        headers = [(k, v) for k, v in req.headers.items() if k not in _SKIP_TO_FUNCTION]
        return await self.invoker.call(Call(name, "event", "app", headers=headers, body=req.body or b"{}",
                                            content_type="application/json",
                                            identity=ident.wire() if ident else None))

    # -- the SDK's files -----------------------------------------------------------------------------------

    def _sdk_file(self, name: str, method: str) -> Outcome:
        if method not in ("GET", "HEAD"):
            return platform_error(405, "method_not_allowed", "the SDK's files are read with GET")
        if self.sdk_dir is None or "/" in name or name.startswith(".") or not name.endswith((".js", ".mjs")):
            return platform_error(404, "not_found", f"no SDK file {name!r}")
        path = self.sdk_dir / name
        try:
            body = path.read_bytes()
        except OSError:
            return platform_error(404, "not_found", f"no SDK file {name!r}")
        return Outcome(200, [(b"content-type", b"text/javascript; charset=utf-8"),
                             (b"cache-control", b"public, max-age=300"),
                             (b"access-control-allow-origin", b"*")], b"" if method == "HEAD" else body)


PREFLIGHT = [(b"access-control-allow-methods", b"GET, POST, PUT, DELETE, OPTIONS"),
             (b"access-control-allow-headers", b"authorization, content-type, x-polyfn-sdk"),
             (b"access-control-max-age", b"600")]


def cors_grant(app: App, origin: str | None, host: str = "") -> list[tuple[bytes, bytes]] | None:
    """The CORS headers for a browser at `origin`: [] without an Origin header or from the node's own origin
    (a page of `polyfn sites` calling its functions), None when not allowed."""
    if origin is None or (host and origin.partition("://")[2] == host):
        return []
    allowed = app.config.origins
    if origin not in allowed and "*" not in allowed:
        return None
    return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin"),
            (b"access-control-expose-headers", b"x-polyfn-activation-id, x-polyfn-error")]


async def _guarded(handler: Handler, req: Request) -> Outcome | EventStream:
    try:
        return await handler(req)
    except TokenError as e:
        return platform_error(401, e.code, e.message,
                              headers=[(b"www-authenticate", f'Bearer error="invalid_token", error_description="{e.code}"'
                                        .encode())])
    except AppError as e:
        return platform_error(e.status, e.code, e.message,
                              headers=[(k.encode(), v.encode()) for k, v in e.headers.items()])


async def _read_body(receive: Any, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not msg.get("more_body"):
            return b"".join(chunks)
