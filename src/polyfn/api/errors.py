"""One error shape for the whole API: `{"error": {"code", "message"}}` with the right status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from polyfn.deploy.errors import DeployError
from polyfn.gateway.limits import BodyTooLarge


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   extra: dict[str, Any] | None = None) -> JSONResponse:
    err: dict[str, Any] = {"code": code, "message": message}
    if extra:
        err.update(extra)
    h = {"x-polyfn-error": code, **(headers or {})}
    return JSONResponse({"error": err}, status_code=status, headers=h)


_STATUS_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
                 422: "invalid_request", 429: "too_many_requests"}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return error_response(e.status, e.code, e.message, e.headers)

    @app.exception_handler(DeployError)
    async def _deploy_error(_: Request, e: DeployError) -> JSONResponse:
        return error_response(e.status, e.code, e.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(e.status_code, "error")
        return error_response(e.status_code, code, str(e.detail), dict(e.headers or {}))

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, e: BodyTooLarge) -> JSONResponse:  # (gateway/limits.py: as the body arrives)
        return error_response(413, "payload_too_large", str(e), {"connection": "close"})

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        parts = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()))
            parts.append(f"{loc}: {err.get('msg')}")
        return error_response(400, "invalid_request", "; ".join(parts) or "invalid request")
