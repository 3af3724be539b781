"""What the client reads off the wire, shared by every area of the API: the errors it raises (`ApiError` with
the platform's stable code, `ServerUnreachable`), the error envelope, Server-Sent Events, query parameters; and
`Calls`, what an area's endpoints (sdk/endpoints.py) need of the client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

#: Marks errors produced by the platform rather than by the function (docs/api.md, "Errors").
ERROR_HEADER = "x-polyfn-error"


class PolyfnError(Exception):
    """Base class of everything this client raises, so callers can catch one type."""


class ServerUnreachable(PolyfnError):
    """No TCP/HTTP conversation was possible with the server (refused, DNS failure, connect timeout)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach polyfn at {url}: {reason}")
        self.url = url
        self.reason = reason


class StreamBrokenOff(PolyfnError):
    """A streamed answer ended before its end: the function failed mid-stream (or the server went)."""


class ApiError(PolyfnError):
    """The server answered with an error; `code` is the stable API code (e.g. `function_not_found`)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def error_envelope(body: bytes) -> tuple[str, str] | None:
    """Return (code, message) when `body` is the platform's `{"error": {...}}` shape, else None."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        return str(err.get("code") or "error"), str(err.get("message") or "")
    return None


def error_from_response(status: int, headers: Mapping[str, str], body: bytes, reason: str = "") -> ApiError:
    """Build the ApiError for a failed response, tolerating bodies that are not our envelope.

    A reverse proxy in front of polyfn, or a framework-level failure (e.g. FastAPI's own
    `{"detail": ...}` validation answer), must still produce a readable message, not a crash.
    """
    envelope = error_envelope(body)
    if envelope is not None:
        return ApiError(status, *envelope)
    code = headers.get(ERROR_HEADER) or f"http_{status}"
    message = reason or "request failed"
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        if text:
            message = text[:500]
    else:
        if isinstance(data, dict) and "detail" in data:
            message = json.dumps(data["detail"]) if not isinstance(data["detail"], str) else data["detail"]
        else:
            message = json.dumps(data)[:500]
    return ApiError(status, code, message)


def iter_sse_data(lines: Iterator[str]) -> Iterator[str]:
    """Yield the `data` of each Server-Sent Event in `lines` (multi-line data joined with newlines).

    Comments (`: keep-alive`) and other fields (`event:`, `id:`, `retry:`) are skipped: the log
    stream only carries data events, and ignoring the rest keeps us compatible with heartbeats.
    """
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def query(**values: Any) -> dict[str, Any]:
    """Query parameters without the unset ones, so the server's defaults apply."""
    return {key: value for key, value in values.items() if value is not None}


class Calls:
    """What the endpoints of one area of the API need of the client (`Client` has them)."""

    _http: httpx.Client
    _long: Any

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _transport_error(self, exc: httpx.TransportError) -> PolyfnError:
        raise NotImplementedError
