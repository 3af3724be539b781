"""One error shape for the whole API: `{"error": {"code", "message"}}` with the right status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from polyfn import jsontext
from polyfn.deploy.errors import DeployError
from polyfn.errors import PolyfnError
from polyfn.gateway.limits import BodyTooLarge


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # some errors add fields (errorType, stackTrace, …)

    code: str
    message: str


class Error(BaseModel):
    """Every error of the API: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


#: the error statuses every `/v1` operation may answer, for the OpenAPI document (FastAPI's own 422 is never
#: answered: validation errors are 400 `invalid_request`, see `install`)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Error, "description": why} for status, why in (
        (400, "Bad input: the error's `code` says which (invalid_request, invalid_json, invalid_spec, …)"),
        (401, "A missing, wrong or revoked API key"),
        (403, "The key's scope does not allow this"),
        (404, "An unknown function, activation, trigger, key, …"),
        (405, "A method the path does not take"),
        (409, "A conflict with what exists (trigger_exists, …)"),
        (413, "A body over its limit (payload_too_large, code_too_large)"),
        (429, "Over a rate limit or the function's capacity (`Retry-After`)"),
    )}


#: the API's name for the platform's typed refusal (polyfn/errors.py), serialised by `install`'s handler
ApiError = PolyfnError


def parsed_json(raw: bytes) -> Any:
    """A request body's JSON (`jsontext.loads_text`: a lone surrogate is malformed too), or 400 `invalid_json`."""
    try:
        return jsontext.loads_text(raw)
    except ValueError as e:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {e}") from None


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


def openapi_without_422(app: FastAPI) -> None:
    """The OpenAPI document as the API answers: FastAPI lists a 422 for every operation with parameters,
    which this API never sends (validation errors are 400s, `install`)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for ops in schema.get("paths", {}).values():
                for op in ops.values():
                    if isinstance(op, dict):
                        op.get("responses", {}).pop("422", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return error_response(e.status, e.code, e.message, e.headers, e.extra)

    @app.exception_handler(DeployError)
    async def _deploy_error(_: Request, e: DeployError) -> JSONResponse:
        return error_response(e.status, e.code, e.message, extra=e.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(e.status_code, "error")
        return error_response(e.status_code, code, str(e.detail), dict(e.headers or {}))

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, e: BodyTooLarge) -> JSONResponse:  # (gateway/limits.py: as the body arrives)
        return error_response(413, "payload_too_large", str(e), {"connection": "close"})

    @app.exception_handler(RecursionError)
    async def _too_deep(_: Request, e: RecursionError) -> JSONResponse:
        # a request body nested deeper than the JSON parsers go (json, msgspec: "... while decoding a JSON
        # array", "... while deserializing an object"; polyfn/jsontext.py): malformed input, a 400. Any other
        # RecursionError is a bug of ours, and stays a 500.
        if "decoding" not in str(e) and "deserializing" not in str(e):
            raise e
        return error_response(400, "invalid_json", "the request body is nested too deeply to parse")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        parts = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()))
            parts.append(f"{loc}: {err.get('msg')}")
        return error_response(400, "invalid_request", "; ".join(parts) or "invalid request")
