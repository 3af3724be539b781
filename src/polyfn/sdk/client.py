"""A small synchronous client for the polyfn control API (`/v1`, see docs/api.md).

The CLI is built on it, and it is the supported way to drive polyfn from Python scripts and tests.
It deliberately mirrors the REST API one method per endpoint and returns the decoded JSON as plain
dicts: the API document is the contract, so a second set of typed models here would only drift.

Errors are values the caller can act on: every non-2xx answer the *platform* produced becomes an
`ApiError(status, code, message)` with the stable code from the API, and a server that cannot be
reached at all becomes `ServerUnreachable` (distinct because the fix — start the server or point at
another URL — is different from any API error).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from polyfn import __version__
from polyfn.sdk.endpoints import Events, Observing, Workflows
from polyfn.sdk.wire import (
    ERROR_HEADER,
    ApiError,
    PolyfnError,
    ServerUnreachable,
    StreamBrokenOff,
    error_envelope,
    error_from_response,
    iter_sse_data,
)

__all__ = ["DEFAULT_URL", "ApiError", "Client", "InvokeResponse", "PolyfnError", "ServerUnreachable",
           "StreamBrokenOff", "encode_inline_files", "error_from_response", "iter_sse_data", "normalize_url"]

DEFAULT_URL = "http://127.0.0.1:8080"
USER_AGENT = f"polyfn-sdk/{__version__}"

ACTIVATION_HEADER = "x-polyfn-activation-id"
COLD_HEADER = "x-polyfn-cold"


@dataclass(frozen=True)
class InvokeResponse:
    """What an invocation returned: the function's own status, headers and body, untouched.

    Only *platform* failures raise; a function's error (HTTP 500 with its error payload) is a
    normal answer here because the payload is the useful part and callers want to see it.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def activation_id(self) -> str | None:
        """The id to look the invocation up with (`polyfn activation ID`)."""
        return self.headers.get(ACTIVATION_HEADER)

    @property
    def cold(self) -> bool | None:
        """Whether this invocation had to start an instance; None if the server did not say."""
        value = self.headers.get(COLD_HEADER)
        return None if value is None else value.strip().lower() == "true"

    @property
    def function_error(self) -> bool:
        """True when the handler raised (the body is then the function's error payload)."""
        marker = self.headers.get(ERROR_HEADER)
        return marker == "function_error" or (marker is None and self.status == 500)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def encode_inline_files(files: Mapping[str, str | bytes]) -> dict[str, dict[str, str]]:
    """Split files into the JSON deploy body's `files` (UTF-8 text) and `files_base64` (anything else)."""
    text: dict[str, str] = {}
    binary: dict[str, str] = {}
    for name, content in files.items():
        if isinstance(content, str):
            text[name] = content
            continue
        try:
            text[name] = content.decode("utf-8")
        except UnicodeDecodeError:
            binary[name] = base64.b64encode(content).decode("ascii")
    out: dict[str, dict[str, str]] = {}
    if text:
        out["files"] = text
    if binary:
        out["files_base64"] = binary
    return out


def normalize_url(url: str) -> str:
    """Accept `host:port` and trailing slashes, because that is what people paste."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


class Client(Observing, Events, Workflows):
    """Synchronous client for one polyfn server.

    `timeout` bounds control calls. Deploys and invocations have no read timeout because the
    server enforces their limits (dependency installs, the function's own `timeout`) and says so
    with a proper error; a client-side cut-off would only hide that answer.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        transport: httpx.BaseTransport | None = None,
        traceparent: str | None = None,
        namespace: str | None = None,
    ) -> None:
        """`traceparent`: a W3C trace context sent with every request, so invocations made through this
        client join the caller's trace (inside a function: `context.traceparent` or `$TRACEPARENT`).
        `namespace`: the namespace every request acts in (`X-Polyfn-Namespace`; default: the key's own, or
        `default` for the admin key)."""
        self.url = normalize_url(url)
        self.api_key = api_key or None
        self.timeout = timeout
        headers = {"User-Agent": USER_AGENT}
        if traceparent:
            headers["traceparent"] = traceparent
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self.namespace = namespace or None
        if self.namespace:
            headers["X-Polyfn-Namespace"] = self.namespace
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout), transport=transport
        )
        self._long = httpx.Timeout(timeout, read=None)

    # -- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def function_url(self, name: str) -> str:
        """The public HTTP trigger URL of a function (`ANY /fn/{name}`)."""
        return f"{self.url}/fn/{quote(name, safe='')}"

    def _transport_error(self, exc: httpx.TransportError) -> PolyfnError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.UnsupportedProtocol):
            return ServerUnreachable(self.url, str(exc) or type(exc).__name__)
        if isinstance(exc, httpx.TimeoutException):
            return PolyfnError(f"polyfn at {self.url} did not answer within {self.timeout:g}s")
        return PolyfnError(f"request to polyfn at {self.url} failed: {exc or type(exc).__name__}")

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise error_from_response(
                response.status_code, response.headers, response.content, response.reason_phrase
            )
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise PolyfnError(
                f"polyfn at {self.url} answered {method} {path} with something that is not JSON"
            ) from exc

    # -- endpoints --------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """`GET /healthz` (no key needed): `{"status": "ok", "version": ...}`."""
        return self._json("GET", "/healthz")

    def version(self) -> dict[str, Any]:
        """`GET /v1/version`."""
        return self._json("GET", "/v1/version")

    def deploy(
        self,
        spec: Mapping[str, Any],
        files: Mapping[str, str | bytes] | None = None,
        zip_bytes: bytes | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Create or update a function; returns the function object (with `detected`).

        Give either inline `files` (sent as JSON) or a zip archive (sent as multipart). With
        `on_progress`, the deploy is streamed and each progress message (dependency installs can
        take a while) is passed to it as it arrives.
        """
        if files is not None and zip_bytes is not None:
            raise ValueError("give either files or zip_bytes, not both")
        if not spec.get("name"):
            raise ValueError("spec needs a name")
        kwargs: dict[str, Any]
        if zip_bytes is not None:
            kwargs = {
                "data": {"spec": json.dumps(dict(spec))},
                "files": {"code": ("code.zip", zip_bytes, "application/zip")},
            }
        else:
            kwargs = {"json": {**spec, **encode_inline_files(files or {})}}
        if on_progress is None:
            return self._json("POST", "/v1/functions", timeout=self._long, **kwargs)
        return self._deploy_streamed(kwargs, on_progress)

    def _deploy_streamed(self, kwargs: dict[str, Any], on_progress: Callable[[str], None]) -> dict[str, Any]:
        try:
            with self._http.stream(
                "POST", "/v1/functions", params={"stream": "true"}, timeout=self._long, **kwargs
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(
                        response.status_code, response.headers, response.content, response.reason_phrase
                    )
                if "ndjson" not in response.headers.get("content-type", ""):
                    # A server that ignores `stream=true` answers with the plain function object.
                    response.read()
                    return response.json()
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError as exc:
                        raise PolyfnError(
                            f"the deploy stream sent a line that is not JSON: {line[:200]!r}"
                        ) from exc
                    kind = event.get("event")
                    if kind == "progress":
                        on_progress(str(event.get("message", "")))
                    elif kind == "done":
                        return event["function"]
                    elif kind == "error":
                        err = event.get("error") or {}
                        raise ApiError(
                            int(err.get("status") or 400),
                            str(err.get("code") or "error"),
                            str(err.get("message") or ""),
                        )
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        raise PolyfnError("the deploy stream ended without a result: check the server's log")

    def list_functions(self) -> list[dict[str, Any]]:
        """`GET /v1/functions`: every function with its instance counts."""
        return self._json("GET", "/v1/functions").get("functions", [])

    def get_function(self, name: str) -> dict[str, Any]:
        """`GET /v1/functions/{name}`: the function plus `revisions` and `instances`."""
        return self._json("GET", f"/v1/functions/{quote(name, safe='')}")

    def prewarm(self, name: str, instances: int = 1) -> dict[str, Any]:
        """`POST /v1/functions/{name}/prewarm`: start instances now (bounded by max_instances)."""
        return self._json("POST", f"/v1/functions/{quote(name, safe='')}/prewarm", json={"instances": instances})

    def delete_function(self, name: str) -> dict[str, Any]:
        """`DELETE /v1/functions/{name}`."""
        return self._json("DELETE", f"/v1/functions/{quote(name, safe='')}", timeout=self._long)

    def invoke(
        self,
        name: str,
        payload: bytes = b"{}",
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        event: str | None = None,
    ) -> InvokeResponse:
        """`POST /v1/functions/{name}/invoke`; returns the function's answer, raises platform errors.

        With `event` (`s3:put`, `sqs`, `timer`, …) the payload is the event's data and the server builds a
        vendor-shaped event of that kind (see `polyfn.events.kinds`).

        A platform error is one marked with `X-Polyfn-Error` (other than `function_error`) or, for
        servers that forget the header, one whose body is the `{"error": {...}}` envelope.
        """
        try:
            response = self._http.post(
                f"/v1/functions/{quote(name, safe='')}/invoke",
                content=payload,
                headers={"Content-Type": content_type, **(headers or {})},
                params={"event": event} if event else None,
                timeout=self._long,
            )
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        status, body = response.status_code, response.content
        if status >= 400:
            marker = response.headers.get(ERROR_HEADER)
            if marker is not None and marker != "function_error":
                raise error_from_response(status, response.headers, body, response.reason_phrase)
            if marker is None:
                envelope = error_envelope(body)
                if envelope is not None and envelope[0] != "function_error":
                    raise ApiError(status, *envelope)
        return InvokeResponse(status=status, headers=response.headers, body=body)

    @contextlib.contextmanager
    def invoke_stream(self, name: str, payload: bytes = b"{}", content_type: str = "application/json",
                      headers: Mapping[str, str] | None = None) -> Iterator[tuple[InvokeResponse, Iterator[bytes]]]:
        """`POST /v1/functions/{name}/invoke?mode=stream`: the answer's status and headers (an `InvokeResponse`
        with an empty body) and an iterator over its body's pieces as the function streams them (a function that
        does not stream: its whole body, once). A stream that broke off raises `StreamBrokenOff` from the
        iterator (server-sent events end with an `event: error` instead). Platform errors raise as `invoke`'s."""
        try:
            with self._http.stream("POST", f"/v1/functions/{quote(name, safe='')}/invoke", params={"mode": "stream"},
                                   content=payload, headers={"Content-Type": content_type, **(headers or {})},
                                   timeout=self._long) as response:
                if response.status_code >= 400 and response.headers.get(ERROR_HEADER, "function_error") != "function_error":
                    body = response.read()
                    raise error_from_response(response.status_code, response.headers, body, response.reason_phrase)

                def pieces() -> Iterator[bytes]:
                    try:
                        yield from response.iter_raw()
                    except httpx.RemoteProtocolError as exc:
                        raise StreamBrokenOff(f"the stream of {name!r} broke off (activation "
                                              f"{response.headers.get(ACTIVATION_HEADER)}): {exc}") from exc

                yield InvokeResponse(status=response.status_code, headers=response.headers, body=b""), pieces()
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
