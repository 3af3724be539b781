"""Flavor adapters, called directly as the instance calls them."""

from __future__ import annotations

import json
import time

import pytest

from polyfn.protocol import Invoke
from polyfn.runtimes.python.flavors import FunctionMeta, HandlerError, load_adapter

META = FunctionMeta("fn", 3, "handler.handler", 128, 10.0, {})


def http(method: str = "GET", path: str = "/", query: str = "", body: bytes = b"",
         headers: list[tuple[str, str]] | None = None) -> Invoke:
    return Invoke(1, "act-1", "http", time.time() + 10, method, path, query, headers or [], body, "")


def event(payload: bytes, ct: str = "application/json") -> Invoke:
    return Invoke(1, "act-2", "event", time.time() + 10, body=payload, content_type=ct)


def call(adapter, inv):  # type: ignore[no-untyped-def]
    return adapter.respond(inv, adapter.handler(*adapter.args(inv)))


def test_native_event_gets_parsed_json_and_context() -> None:
    seen = {}

    def handler(event, context):  # type: ignore[no-untyped-def]
        seen.update(event=event, fn=context.function_name, rev=context.function_version,
                    mem=context.memory_limit_in_mb, aid=context.activation_id,
                    rem=context.get_remaining_time_in_millis())
        return {"ok": True}

    a = load_adapter("native", handler, META)
    status, _headers, body = call(a, event(b'{"x": [1, 2]}'))
    assert (status, json.loads(body)) == (200, {"ok": True})
    assert seen["event"] == {"x": [1, 2]} and seen["fn"] == "fn" and seen["rev"] == "3"
    assert seen["mem"] == 128 and seen["aid"] == "act-2" and 0 < seen["rem"] <= 10000


def test_native_non_json_payload_is_bytes() -> None:
    a = load_adapter("native", lambda e, c: e, META)
    _status, headers, body = call(a, event(b"\x00raw", "application/octet-stream"))
    assert body == b"\x00raw" and ("content-type", "application/octet-stream") in headers


@pytest.mark.parametrize("value,status,ctype,body", [
    ("text", 200, "text/plain; charset=utf-8", b"text"),
    (b"\x01", 200, "application/octet-stream", b"\x01"),
    ({"a": 1}, 200, "application/json", b'{"a": 1}'),
    (("made", 201), 201, "text/plain; charset=utf-8", b"made"),
    (("x", 202, {"Content-Type": "text/csv"}), 202, "text/csv", b"x"),
    ({"statusCode": 418, "body": "teapot", "headers": {"X-T": "1"}}, 418, "text/plain; charset=utf-8", b"teapot"),
    (None, 204, None, b""),
])
def test_native_http_return_shapes(value, status, ctype, body) -> None:  # type: ignore[no-untyped-def]
    a = load_adapter("native", lambda e, c: value, META)
    s, headers, b = call(a, http())
    assert (s, b) == (status, body)
    assert dict((k.lower(), v) for k, v in headers).get("content-type") == ctype


def test_native_http_request_object() -> None:
    a = load_adapter("native", lambda e, c: {"m": e.method, "p": e.path, "q": e.query, "h": e.headers["x-a"],
                                            "j": e.json(), "all": e.query_all}, META)
    _, _, body = call(a, http("PUT", "/p", "a=1&a=2&b=", b'{"k": 1}', [("X-A", "v")]))
    assert json.loads(body) == {"m": "PUT", "p": "/p", "q": {"a": "2", "b": ""}, "h": "v", "j": {"k": 1},
                                "all": {"a": ["1", "2"], "b": [""]}}


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("query,ct,body,params", [
    ("name=ada", "", b"", {"name": "ada"}),
    ("a=1&a=2&b=", "", b"", {"a": "2", "b": ""}),
    ("", "application/json", b'{"name": "ada", "n": [1]}', {"name": "ada", "n": [1]}),
    ("", "", b'{"name": "ada"}', {"name": "ada"}),  # no content type: a JSON object still counts
    ("name=q&x=1", "application/json; charset=utf-8", b'{"name": "body"}', {"name": "body", "x": "1"}),
    ("x=1", FORM, b"name=ada&y=%C3%A9", {"x": "1", "name": "ada", "y": "\u00e9"}),
    ("x=1", "application/json", b"[1, 2]", {"x": "1"}),  # not an object: only in json()
    ("x=1", "application/json", b"{broken", {"x": "1"}),  # malformed: the handler reads the raw body
    ("x=1", "application/json", b'{"a":' * 1000 + b"1" + b"}" * 1000, {"x": "1"}),  # deeper than json parses
    ("x=1", "text/plain", b'{"name": "ada"}', {"x": "1"}),  # text is text
    ("", "application/octet-stream", b"\x00", {}),
])
def test_native_http_event_is_query_merged_with_body(query, ct, body, params) -> None:  # type: ignore[no-untyped-def]
    """The native HTTP contract (OpenWhisk web actions' way): `event` is a dict of the query parameters
    updated with a JSON-object or form body; the raw request stays on its attributes."""
    seen = {}

    def handler(event, context):  # type: ignore[no-untyped-def]
        seen.update(params=dict(event), body=event.body, qs=event.query_string, ct=event.headers.get("content-type"))
        return event

    a = load_adapter("native", handler, META)
    inv = Invoke(1, "act-1", "http", time.time() + 10, "POST", "/", query, [("Content-Type", ct)] if ct else [],
                 body, ct)
    status, _, out = call(a, inv)
    assert status == 200 and seen["params"] == params and json.loads(out) == params
    assert seen["body"] == body and seen["qs"] == query and seen["ct"] == (ct or None)


def test_readme_greet_reads_name_from_query_json_and_invoke_alike() -> None:
    def greet(event, context):  # type: ignore[no-untyped-def]
        return {"hello": event.get("name", "world")}

    a = load_adapter("native", greet, META)
    assert json.loads(call(a, http(query="name=ada"))[2]) == {"hello": "ada"}
    assert json.loads(call(a, http("POST", body=b'{"name": "ada"}'))[2]) == {"hello": "ada"}
    assert json.loads(call(a, http())[2]) == {"hello": "world"}
    assert json.loads(call(a, event(b'{"name": "ada"}'))[2]) == {"hello": "ada"}


def test_openfaas_gets_text_returns_body() -> None:
    a = load_adapter("openfaas", lambda req: req[::-1], META)
    assert call(a, http(body="héllo".encode())) == (200, [("content-type", "text/plain; charset=utf-8")],
                                                    "olléh".encode())
    assert call(a, event(b'"hello"'))[2] == b'"olleh"'


def test_error_payload_shape() -> None:
    def handler(event, context):  # type: ignore[no-untyped-def]
        raise KeyError("missing")

    a = load_adapter("native", handler, META)
    inv = event(b"{}")
    try:
        a.handler(*a.args(inv))
    except Exception as exc:
        status, _, body, err = a.fail(inv, exc)
    assert status == 500 and err["errorType"] == "KeyError" and "'missing'" in err["errorMessage"]
    assert json.loads(body) == err and isinstance(err["stackTrace"], list)


@pytest.mark.parametrize("flavor,fn", [("native", lambda a: a), ("native", lambda a, b, c: a),
                                       ("openfaas", lambda a, b: a)])
def test_wrong_arity_names_the_convention(flavor, fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(HandlerError) as e:
        load_adapter(flavor, fn, META)
    assert e.value.error_type == "Runtime.HandlerSignature"
    assert ("native" if flavor == "native" else "OpenFaaS") in e.value.message


def test_unknown_flavor() -> None:
    with pytest.raises(HandlerError):
        load_adapter("cobol", lambda a: a, META)
