"""The HTTP trigger: method, path, query, headers and body reach the function; status, headers and body
come back, binary bodies included."""

from __future__ import annotations

import base64

from .conftest import Server, start_server

ECHO = '''
import base64

def handler(event, context):
    return {
        "statusCode": 201,
        "headers": {"X-Echo-Method": event.method, "Content-Type": "application/json"},
        "body": {
            "method": event.method, "path": event.path, "query": event.query, "query_string": event.query_string,
            "header": event.headers.get("X-Custom"), "body_b64": base64.b64encode(event.body).decode(),
            "function": context.function_name, "activation": context.activation_id,
            "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 60000,
        },
    }
'''

BINARY = '''
def handler(event, context):
    if hasattr(event, "method"):
        return (bytes(reversed(event.body)), 200, {"Content-Type": "application/octet-stream"})
    return event
'''


def test_request_reaches_function_and_response_comes_back(server: Server) -> None:
    server.deploy("echo", {"handler.py": ECHO})
    r = server.http.request("PATCH", "/fn/echo/a/b%20c?x=1&y=two&x=3", headers={"X-Custom": "v1"}, content=b"\x00\xffdata")
    assert r.status_code == 201
    assert r.headers["x-echo-method"] == "PATCH"
    assert r.headers["x-polyfn-activation-id"]
    body = r.json()
    assert body["method"] == "PATCH"
    assert body["path"] in ("/a/b%20c", "/a/b c")
    assert body["query"] == {"x": "3", "y": "two"}
    assert body["query_string"] == "x=1&y=two&x=3"
    assert body["header"] == "v1"
    assert base64.b64decode(body["body_b64"]) == b"\x00\xffdata"
    assert body["function"] == "echo"
    assert body["activation"] == r.headers["x-polyfn-activation-id"]
    assert body["remaining_ok"] is True


def test_root_path_and_methods(server: Server) -> None:
    server.deploy("echo2", {"handler.py": ECHO})
    for method in ("GET", "POST", "PUT", "DELETE"):
        r = server.http.request(method, "/fn/echo2")
        assert r.status_code == 201, r.text
        assert r.json()["path"] == "/"
        assert r.json()["method"] == method


def test_binary_round_trip(server: Server) -> None:
    server.deploy("binary", {"handler.py": BINARY})
    payload = bytes(range(256)) * 100
    r = server.http.post("/fn/binary", content=payload)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == bytes(reversed(payload))


def test_invoke_api_passes_parsed_json(server: Server) -> None:
    server.deploy("jsonecho", {"handler.py": BINARY})
    r = server.api.post("/v1/functions/jsonecho/invoke", json={"a": [1, 2, {"b": None}]})
    assert r.status_code == 200
    assert r.json() == {"a": [1, 2, {"b": None}]}
    assert r.headers["x-polyfn-activation-id"]


def test_function_header_injection_is_dropped(server: Server) -> None:
    server.deploy("inject", {"handler.py": '''
def handler(event, context):
    return ("ok", 200, {"X-Bad": "a\\r\\nSet-Cookie: evil=1", "X-Good": "yes", "Content-Length": "999"})
'''})
    r = server.http.get("/fn/inject")
    assert r.status_code == 200 and r.text == "ok"
    assert r.headers.get("x-good") == "yes"
    assert "x-bad" not in r.headers and "set-cookie" not in r.headers
    assert r.headers["content-length"] == "2"


def test_functions_see_neither_the_api_key_nor_the_server_environment(tmp_path) -> None:
    s = start_server(tmp_path / "d", env={"POLYFN_API_KEY": "leaked-key", "SERVER_SECRET": "leaked-secret"})
    try:
        s.deploy("peek", {"handler.py": '''
import os
def handler(event, context):
    return dict(os.environ)
'''}, env={"MINE": "1"})
        for r in (s.api.post("/v1/functions/peek/invoke", json={}), s.http.get("/fn/peek")):
            assert r.status_code == 200
            env = r.json()
            assert "leaked" not in r.text and s.key not in r.text
            assert env["MINE"] == "1" and env["POLYFN_FUNCTION_NAME"] == "peek"
    finally:
        s.stop()
