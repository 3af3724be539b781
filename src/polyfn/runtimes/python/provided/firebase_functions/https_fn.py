"""Firebase HTTPS functions: `on_call` (the callable protocol) and `on_request`, on polyfn's `gcp` flavor.

`@on_call()` turns `def fn(req: CallableRequest) -> Any` into an HTTP function that answers Firebase's
callable protocol: POST `{"data": …}` (application/json) in, `{"result": …}` or
`{"error": {"status", "message", "details"}}` out, an `HttpsError` raised by the function becoming its
status. `req.auth` is the caller polyfn verified from the ID token before the function ran (the node itself
answers 401 UNAUTHENTICATED for a bad token); without that it is None: an Authorization header alone proves
nothing here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import json
import traceback
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import flask

T = TypeVar("T")
Request = flask.Request
Response = flask.Response


class FunctionsErrorCode(enum.StrEnum):
    OK = "ok"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"
    INVALID_ARGUMENT = "invalid-argument"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    NOT_FOUND = "not-found"
    ALREADY_EXISTS = "already-exists"
    PERMISSION_DENIED = "permission-denied"
    UNAUTHENTICATED = "unauthenticated"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    FAILED_PRECONDITION = "failed-precondition"
    ABORTED = "aborted"
    OUT_OF_RANGE = "out-of-range"
    UNIMPLEMENTED = "unimplemented"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    DATA_LOSS = "data-loss"


_STATUS = {"ok": 200, "cancelled": 499, "unknown": 500, "invalid-argument": 400, "deadline-exceeded": 504,
           "not-found": 404, "already-exists": 409, "permission-denied": 403, "unauthenticated": 401,
           "resource-exhausted": 429, "failed-precondition": 400, "aborted": 409, "out-of-range": 400,
           "unimplemented": 501, "internal": 500, "unavailable": 503, "data-loss": 500}


class HttpsError(Exception):
    def __init__(self, code: FunctionsErrorCode | str, message: str, details: Any = None):
        super().__init__(message)
        self.code = FunctionsErrorCode(code)
        self.message = message
        self.details = details

    @property
    def status(self) -> int:
        return _STATUS[self.code.value]

    def _as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.code.name, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out


@dataclasses.dataclass(frozen=True)
class AuthData:
    uid: str
    token: dict[str, Any]
    raw_token: str = ""


@dataclasses.dataclass(frozen=True)
class CallableRequest(Generic[T]):
    raw_request: Request
    data: T
    auth: AuthData | None = None
    app: Any = None
    instance_id_token: str | None = None
    acknowledge_streaming: bool = False


_LONG = {"type.googleapis.com/google.protobuf.Int64Value", "type.googleapis.com/google.protobuf.UInt64Value"}


def _decode(value: Any) -> Any:
    """The protocol's encoding: JSON, with 64-bit integers wrapped as {"@type": …, "value": "123"}."""
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if value.get("@type") in _LONG:
            return int(value["value"])
        return {k: _decode(v) for k, v in value.items()}
    return value


def _json(value: Any, status: int) -> Response:
    return flask.Response(json.dumps(value, default=str), status=status, mimetype="application/json")


def on_call(**_options: Any) -> Callable[[Callable[[CallableRequest[Any]], Any]], Callable[[Request], Response]]:
    def decorator(fn: Callable[[CallableRequest[Any]], Any]) -> Callable[[Request], Response]:
        @functools.wraps(fn)
        def handler(request: Request) -> Response:
            try:
                if request.method != "POST":
                    raise HttpsError(FunctionsErrorCode.INVALID_ARGUMENT, f"Bad Request: {request.method} is not POST")
                if request.mimetype != "application/json":
                    raise HttpsError(FunctionsErrorCode.INVALID_ARGUMENT,
                                     "Bad Request: the Content-Type must be application/json")
                body = request.get_json(silent=True)
                if not isinstance(body, dict) or "data" not in body:
                    raise HttpsError(FunctionsErrorCode.INVALID_ARGUMENT, 'Bad Request: the body must be {"data": …}')
                ident = request.environ.get("polyfn.identity")
                auth = AuthData(uid=ident["uid"], token={**(ident.get("claims") or {}), "uid": ident["uid"]},
                                raw_token=ident.get("token", "")) if ident else None
                req: CallableRequest[Any] = CallableRequest(
                    raw_request=request, data=_decode(body["data"]), auth=auth,
                    instance_id_token=request.headers.get("Firebase-Instance-ID-Token"))
                result = fn(req)
                if asyncio.iscoroutine(result):
                    result = asyncio.run(result)
                return _json({"result": result}, 200)
            except HttpsError as e:
                return _json({"error": e._as_dict()}, e.status)
            except Exception:
                traceback.print_exc()
                return _json({"error": {"status": "INTERNAL", "message": "INTERNAL"}}, 500)

        handler.__firebase_callable__ = True  # type: ignore[attr-defined]
        return handler

    return decorator


def on_request(**_options: Any) -> Callable[[Callable[[Request], Any]], Callable[[Request], Any]]:
    def decorator(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        return fn

    return decorator
