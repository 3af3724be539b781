"""The gateway's decisions without a server: the `/fn/` path split (gateway/asgi.py `route`), CORS answers
(gateway/cors.py), and what a connection or a request body may cost (gateway/limits.py). The protocol that
enforces the limits on real sockets is tests/gateway/test_http_protocol.py; `/fn/` end to end is tests/e2e."""

from __future__ import annotations

import json
from typing import Any

import pytest

from polyfn.gateway.asgi import route
from polyfn.gateway.cors import DEFAULT_METHODS, preflight, response_headers
from polyfn.gateway.limits import (
    FD_HEADROOM,
    BodyTooLarge,
    body_limit,
    connections_for,
    error_response,
    limit_body,
)


@pytest.mark.parametrize(("path", "name", "fn_path"), [
    ("/fn/hello", "hello", "/"),
    ("/fn/hello/", "hello", "/"),
    ("/fn/hello/a/b", "hello", "/a/b"),
    ("/fn/hello//a", "hello", "//a"),  # the function's path is passed as sent
    ("/fn/", "", "/"),  # no name: the gateway answers 404 function_not_found
    ("/fn//x", "", "/x"),
])
def test_the_path_names_the_function_and_the_rest_is_its_own(path: str, name: str, fn_path: str) -> None:
    assert route(path) == (name, fn_path)


# -- CORS ------------------------------------------------------------------------------------------------

SITE = {"origins": ["https://app.example.com"], "methods": ["GET", "POST"], "headers": ["content-type"],
        "max_age": 60}
ANY = {"origins": ["*"]}
ANY_CREDENTIALS = {"origins": ["*"], "credentials": True, "expose_headers": ["x-a", "x-b"]}
FROM_APP = [("origin", "https://app.example.com")]
FROM_ELSEWHERE = [("origin", "https://evil.example")]


@pytest.mark.parametrize(("cfg", "headers", "want"), [
    (SITE, FROM_APP, [(b"access-control-allow-origin", b"https://app.example.com"), (b"vary", b"Origin")]),
    (SITE, FROM_ELSEWHERE, []),  # an origin not listed gets no CORS headers: the browser refuses the answer
    (SITE, [], []),  # not a cross-origin request
    (ANY, FROM_ELSEWHERE, [(b"access-control-allow-origin", b"*"), (b"vary", b"Origin")]),
    # with credentials "*" is not allowed by browsers: the origin is echoed instead
    (ANY_CREDENTIALS, FROM_ELSEWHERE, [(b"access-control-allow-origin", b"https://evil.example"), (b"vary", b"Origin"),
                                       (b"access-control-allow-credentials", b"true"),
                                       (b"access-control-expose-headers", b"x-a, x-b")]),
])
def test_response_headers_allow_only_the_listed_origins(cfg: dict[str, Any], headers: list[tuple[str, str]],
                                                        want: list[tuple[bytes, bytes]]) -> None:
    assert response_headers(cfg, headers) == want


def test_a_preflight_is_answered_204_with_the_allowed_methods_headers_and_max_age() -> None:
    out = preflight(SITE, [*FROM_APP, ("access-control-request-method", "POST")])
    assert out is not None and out.status == 204 and out.body == b""
    assert dict(out.headers) == {b"access-control-allow-origin": b"https://app.example.com", b"vary": b"Origin",
                                 b"access-control-allow-methods": b"GET, POST", b"access-control-max-age": b"60",
                                 b"access-control-allow-headers": b"content-type"}


def test_a_preflight_without_configured_lists_echoes_the_request_and_defaults() -> None:
    out = preflight(ANY, [*FROM_APP, ("access-control-request-method", "PUT"),
                          ("access-control-request-headers", "x-token")])
    assert out is not None and dict(out.headers) == {
        b"access-control-allow-origin": b"*", b"vary": b"Origin", b"access-control-allow-methods": DEFAULT_METHODS.encode(),
        b"access-control-max-age": b"600", b"access-control-allow-headers": b"x-token"}


def test_a_preflight_from_an_origin_not_listed_is_answered_without_allowing_anything() -> None:
    out = preflight(SITE, [*FROM_ELSEWHERE, ("access-control-request-method", "POST")])
    assert out is not None and out.status == 204 and out.headers == []


def test_an_options_request_that_is_not_a_preflight_goes_to_the_function() -> None:
    assert preflight(SITE, FROM_APP) is None


# -- limits ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fd_limit", "max_connections", "fits"), [
    (1_000_000, 10_000, 10_000),  # room for all: the setting
    (FD_HEADROOM + 500, 10_000, 500),  # the descriptors left after the headroom
    (1024, 10_000, 16),  # a default 1,024 limit: still a few, never none or a negative number
])
def test_connections_fit_under_the_file_descriptor_limit(fd_limit: int, max_connections: int, fits: int) -> None:
    assert connections_for(fd_limit, max_connections) == fits


MIB = 1 << 20


@pytest.mark.parametrize(("path", "limit"), [
    ("/function/echo", 6 * MIB + MIB),  # OpenFaaS
    ("/async-function/echo", 6 * MIB + MIB),
    ("/api/v1/web/guest/default/echo", 6 * MIB + MIB),  # OpenWhisk web actions
    ("/2015-03-31/functions/echo/invocations", 6 * MIB + MIB),  # Lambda
    ("/api/v1/namespaces/_/actions/echo/invoke", 6 * MIB + MIB),
    ("/console/invoke", 6 * MIB + MIB),
    ("/v1/functions", 30 * MIB * 4 // 3 + MIB),  # a deploy: the code, base64-encoded
])
def test_a_requests_body_limit_is_an_invocations_or_a_deploys(path: str, limit: int) -> None:
    assert body_limit(path, 6 * MIB, 30 * MIB) == limit


def test_an_error_response_is_whole_http_in_the_error_shape() -> None:
    raw = error_response(431, "Request Header Fields Too Large", "headers_too_large", "too many", extra=b"x-a: 1\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert b"x-polyfn-error: headers_too_large" in lines and b"connection: close" in lines and b"x-a: 1" in lines
    assert f"content-length: {len(body)}".encode() in lines
    assert json.loads(body) == {"error": {"code": "headers_too_large", "message": "too many"}}
    assert b"connection: close" not in error_response(503, "Busy", "busy", "m", close=False)


class Recorder:
    """An ASGI `send` that keeps what was sent, and an app that reads the whole body."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.read = b""
        self.ran = False

    async def send(self, msg: dict[str, Any]) -> None:
        self.sent.append(msg)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.ran = True
        while True:
            msg = await receive()
            self.read += msg.get("body", b"")
            if not msg.get("more_body"):
                return


def _receive(*chunks: bytes) -> Any:
    msgs = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return msgs.pop(0)

    return receive


async def test_a_declared_length_past_the_limit_is_refused_before_the_app_runs() -> None:
    r = Recorder()
    await limit_body(r.app, {"headers": [(b"content-length", b"11")]}, _receive(b"x" * 11), r.send, 10)
    assert not r.ran and r.sent[0]["status"] == 413
    assert (b"x-polyfn-error", b"payload_too_large") in r.sent[0]["headers"]
    assert json.loads(r.sent[1]["body"])["error"]["code"] == "payload_too_large"


async def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    r = Recorder()
    await limit_body(r.app, {"headers": [(b"content-length", b"10")]}, _receive(b"x" * 4, b"y" * 6), r.send, 10)
    assert r.ran and r.read == b"xxxxyyyyyy" and r.sent == []


async def test_a_body_without_a_length_is_stopped_when_it_passes_the_limit() -> None:
    r = Recorder()
    with pytest.raises(BodyTooLarge) as e:
        await limit_body(r.app, {"headers": []}, _receive(b"x" * 6, b"y" * 6, b"z"), r.send, 10)
    assert e.value.limit == 10 and r.read == b"x" * 6  # the second chunk was counted, not handed on
