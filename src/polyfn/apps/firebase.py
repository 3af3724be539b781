"""The Firebase face: the real `firebase` JS SDK talks to polyfn as it talks to Firebase's emulators.

    connectAuthEmulator(auth, 'http://NODE')        → /identitytoolkit.googleapis.com/v1/accounts:…?key=APP
                                                      /securetoken.googleapis.com/v1/token?key=APP
    connectFunctionsEmulator(functions, HOST, PORT) → POST /{projectId}/{region}/{function}

The app is named by the web config: `apiKey` and `projectId` are the polyfn app id. Auth covers anonymous
and email/password sign-up and sign-in, token refresh and the account lookup the SDK makes after each
sign-in; tokens are polyfn's own (`AppService`), so a user signed in through Firebase is the same user the
wx.cloud SDK knows. Errors use the Identity Toolkit's shape (`{"error": {"code", "message": "EMAIL_EXISTS"}}`),
which the SDK maps to `auth/…` codes.

Callable functions: the ID token (`Authorization: Bearer …`) is verified here; a bad one is answered
`401 {"error": {"status": "UNAUTHENTICATED", …}}` before any function runs. The call then reaches the
function as an HTTP request with the verified identity, and the function's `onCall` wrapper (polyfn's
`firebase-functions` for Node, `firebase_functions` for Python) speaks the rest of the protocol:
`{"data": …}` in, `{"result": …}` or `{"error": {"status", "message", "details"}}` out. Failures of the
platform (no such function, timeouts, crashes) are put in the same error shape.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

from polyfn import jsontext
from polyfn.apps.http import PREFLIGHT, _read_body, _send, cors_grant
from polyfn.apps.service import AppError, AppService
from polyfn.apps.tokens import TokenError
from polyfn.call import Call
from polyfn.invoker import Invoker, Outcome
from polyfn.outcome import JSON_HEADERS

AUTH_PREFIXES = ("/identitytoolkit.googleapis.com/", "/securetoken.googleapis.com/")
BODY_MAX = 64 * 1024

# polyfn's error codes → the Identity Toolkit's messages (what the SDK turns into auth/… codes)
_AUTH_MESSAGES = {
    "email_exists": "EMAIL_EXISTS", "invalid_credentials": "INVALID_LOGIN_CREDENTIALS",
    "invalid_email": "INVALID_EMAIL", "weak_password": "WEAK_PASSWORD : Password should be at least 8 characters",
    "too_many_attempts": "TOO_MANY_ATTEMPTS_TRY_LATER", "user_disabled": "USER_DISABLED",
    "method_not_allowed": "OPERATION_NOT_ALLOWED", "token_expired": "TOKEN_EXPIRED",
    "token_revoked": "TOKEN_EXPIRED", "token_invalid": "INVALID_ID_TOKEN", "token_wrong_app": "INVALID_ID_TOKEN",
    "token_missing": "MISSING_ID_TOKEN", "app_not_found": "API_KEY_INVALID", "user_not_found": "USER_NOT_FOUND",
}
# HTTP status → the callable protocol's canonical status (for errors polyfn itself produces)
_CALLABLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                    409: "ALREADY_EXISTS", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
                    501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


class FirebaseFace:
    def __init__(self, service: AppService, invoker: Invoker):
        self.service = service
        self.invoker = invoker

    def callable_app(self, path: str) -> str | None:
        """The app id when `path` is a callable function's URL (/{project}/{region}/{name}) of a known app."""
        if path.count("/") != 3:
            return None
        project = path[1:path.index("/", 1)]
        return project if self.service.app(project) is not None else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path: str = scope["path"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if path.startswith(AUTH_PREFIXES):
            app_id = (parse_qs(scope["query_string"].decode("latin-1")).get("key") or [""])[0]
            out = await self._guard(app_id, scope, headers, receive, self._auth, path)
        else:
            app_id = path.split("/")[1]
            out = await self._guard(app_id, scope, headers, receive, self._callable, path)
        await _send(send, out)

    async def _guard(self, app_id: str, scope: dict[str, Any], headers: dict[str, str], receive: Any,
                     handler: Any, path: str) -> Outcome:
        """The app, its origins (CORS) and the body, then `handler`."""
        app = self.service.app(app_id) or await self.service.find_app(app_id)
        callable_ = handler == self._callable
        if app is None:
            return _callable_error(404, f"app {app_id!r} does not exist") if callable_ else _auth_error(
                400, "API_KEY_INVALID", f"no polyfn app {app_id!r}: the web config's apiKey is the app id")
        origin = headers.get("origin")
        grant = cors_grant(app, origin, headers.get("host", ""))
        if origin is not None and grant is None:
            return Outcome(403, [*JSON_HEADERS, (b"x-polyfn-error", b"origin_not_allowed")], json.dumps(
                {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": f"origin {origin!r} may not "
                           f"call app {app_id!r}"}}).encode())
        if scope["method"] == "OPTIONS":
            asked = headers.get("access-control-request-headers", "")
            extra = [(b"access-control-allow-headers", asked.encode("latin-1"))] if asked else []
            return Outcome(204, [*(grant or []), *[h for h in PREFLIGHT if not extra or h[0] !=
                                                    b"access-control-allow-headers"], *extra], b"")
        limit = self.invoker.max_payload if callable_ else BODY_MAX
        body = await _read_body(receive, limit)
        if body is None:
            out = _callable_error(413, "the request is too large") if callable_ else _auth_error(
                413, "INVALID_REQUEST", "the request is too large")
        else:
            client = scope.get("client")
            out = await handler(app.id, path, scope["method"], headers, body, client[0] if client else "")
        out.headers.extend(grant or [])
        return out

    # -- Identity Toolkit / Secure Token (the Auth SDK in emulator mode) ------------------------------------

    async def _auth(self, app_id: str, path: str, method: str, headers: dict[str, str], body: bytes,
                    client: str) -> Outcome:
        endpoint = path.split("/v1/", 1)[-1]
        if method != "POST":
            return _auth_error(405, "METHOD_NOT_ALLOWED", f"{method} is not supported here")
        try:
            if endpoint == "token":
                form = parse_qs(body.decode("utf-8", "replace"))
                if (form.get("grant_type") or [""])[0] != "refresh_token":
                    return _auth_error(400, "INVALID_GRANT_TYPE", "grant_type must be refresh_token")
                t = await self.service.refresh(app_id, (form.get("refresh_token") or [""])[0])
                return _json({"access_token": t["access_token"], "expires_in": str(t["expires_in"]),
                              "token_type": "Bearer", "refresh_token": t["refresh_token"],
                              "id_token": t["access_token"], "user_id": t["user"]["uid"], "project_id": app_id})
            try:  # (loads_text: nested too deeply, or a lone surrogate, is malformed too; both were 500s)
                req = jsontext.loads_text(body) if body else {}
            except ValueError:
                req = None
            if not isinstance(req, dict):
                return _auth_error(400, "INVALID_JSON", "the body must be a JSON object")
            if endpoint == "accounts:signUp":
                if req.get("email") is None and req.get("password") is None:
                    t = await self.service.signin.sign_in_anonymous(app_id, client)
                else:
                    t = await self.service.signin.sign_up(app_id, req.get("email"), req.get("password"), client)
                return _json(_sign_in_answer("identitytoolkit#SignupNewUserResponse", t))
            if endpoint == "accounts:signInWithPassword":
                password = req.get("password")
                if not isinstance(password, str) or not password:
                    return _auth_error(400, "MISSING_PASSWORD", "password is required")
                t = await self.service.signin.sign_in_password(app_id, req.get("email"), password, client)
                return _json({**_sign_in_answer("identitytoolkit#VerifyPasswordResponse", t), "registered": True})
            if endpoint == "accounts:lookup":
                ident = self.service.verify(app_id, str(req.get("idToken") or ""))
                user = await self.service.store.get_user(app_id, ident.uid)
                if user is None:
                    return _auth_error(400, "USER_NOT_FOUND", "the user was deleted")
                return _json({"kind": "identitytoolkit#GetAccountInfoResponse", "users": [_account(user)]})
        except TokenError as e:
            return _auth_error(400, _AUTH_MESSAGES.get(e.code, "INVALID_ID_TOKEN"), e.message, e.code)
        except AppError as e:
            return _auth_error(e.status if e.status != 401 else 400, _AUTH_MESSAGES.get(e.code, e.code.upper()),
                               e.message, e.code, e.headers)
        return _auth_error(400, "OPERATION_NOT_ALLOWED", f"{endpoint} is not supported by polyfn")

    # -- callable functions ------------------------------------------------------------------------------

    async def _callable(self, app_id: str, path: str, method: str, headers: dict[str, str], body: bytes,
                        client: str) -> Outcome:
        name = path.rsplit("/", 1)[1]
        scheme, _, token = headers.get("authorization", "").partition(" ")
        ident = None
        if scheme.lower() == "bearer" and token.strip():
            try:
                ident = self.service.verify(app_id, token.strip())
            except TokenError as e:
                out = _callable_error(401, f"the ID token was refused: {e.message}")
                out.headers.append((b"x-polyfn-error", e.code.encode()))
                return out
        app = self.service.app(app_id)
        name = self._function(name, app.function if app is not None else str)
        if name is None:
            return _callable_error(404, f"function {path.rsplit('/', 1)[1]!r} does not exist")
        pairs = [(k, v) for k, v in headers.items() if k not in ("cookie", "content-length")]
        out = await self.invoker.call(Call(name, "http", "http", method, "/", "", pairs, body,
                                           headers.get("content-type", ""), identity=ident.wire() if ident else None))
        platform = next((v for k, v in out.headers if k == b"x-polyfn-error"), None)
        if platform is not None:  # polyfn's own failure (timeout, crash …): in the protocol's shape
            try:
                message = json.loads(out.body)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = platform.decode()
            err = _callable_error(out.status, message)
            err.headers.extend(h for h in out.headers if h[0] in (b"x-polyfn-error", b"x-polyfn-activation-id"))
            return err
        return out


    def _function(self, name: str, held: Any = str) -> str | None:
        """The polyfn function a callable name means (`held(local)`: its name in the app's namespace). Firebase
        names functions after their export (`addMessage`); polyfn names are lower-case: `add-message` (or
        `addmessage`) is that function."""
        kebab = re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", name).lower()
        for candidate in (name, kebab, name.lower()):
            if "~" not in candidate and self.invoker.registry.get(held(candidate)) is not None:
                return held(candidate)
        return None


def _json(value: Any, status: int = 200) -> Outcome:
    return Outcome(status, list(JSON_HEADERS), json.dumps(value).encode())


def _auth_error(status: int, message: str, detail: str = "", code: str = "",
                headers: dict[str, str] | None = None) -> Outcome:
    reason = message.split(" : ")[0]
    out = _json({"error": {"code": status, "message": message, "errors": [
        {"message": reason, "domain": "global", "reason": "invalid"}], "details": detail}}, status)
    if code:
        out.headers.append((b"x-polyfn-error", code.encode()))
    out.headers.extend((k.encode(), v.encode()) for k, v in (headers or {}).items())
    return out


def _callable_error(status: int, message: str) -> Outcome:
    canonical = _CALLABLE_STATUS.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")
    return _json({"error": {"status": canonical, "message": message}}, status)


def _sign_in_answer(kind: str, t: dict[str, Any]) -> dict[str, Any]:
    user = t["user"]
    out = {"kind": kind, "idToken": t["access_token"], "refreshToken": t["refresh_token"],
           "expiresIn": str(t["expires_in"]), "localId": user["uid"]}
    if user.get("email"):
        out["email"] = user["email"]
    return out


def _account(user: Any) -> dict[str, Any]:
    ms = lambda t: str(int((t or 0) * 1000))  # noqa: E731
    out: dict[str, Any] = {"localId": user.uid, "emailVerified": False, "disabled": user.disabled,
                           "createdAt": ms(user.created_at), "lastLoginAt": ms(user.last_sign_in_at),
                           "providerUserInfo": []}
    if user.email:
        out["email"] = user.email
        out["providerUserInfo"] = [{"providerId": "password", "email": user.email, "federatedId": user.email,
                                    "rawId": user.email}]
        out["passwordUpdatedAt"] = int(user.created_at * 1000)
    return out
