"""OpenFaaS python3-http flavor: event/context objects and the template's response rules."""

from __future__ import annotations

import pytest

from polyfn.runtimes.python.flavors import HandlerError

from .conftest import body_json, header

SRC = """
def handle(event, context):
    if event.path == "/none":
        return None
    if event.path == "/bin":
        return {"statusCode": 200, "body": event.body[::-1], "headers": {"Content-type": "application/octet-stream"}}
    if event.path == "/boom":
        raise ValueError("x")
    return {"statusCode": 201, "body": {"method": event.method, "q": event.query.get("a"),
            "ua": event.headers.get("X-Test"), "body": event.body.decode(), "host": context.hostname},
            "headers": {"X-H": "1"}}
"""


def test_event_context_and_dict_body(load) -> None:
    fn = load("openfaas-http", SRC, "handler.handle")
    r = fn.http("PUT", "/", b"hi", "a=b", {"X-Test": "t"})
    assert r.status == 201 and header(r, "x-h") == "1" and header(r, "content-type") == "application/json"
    out = body_json(r)
    assert out["method"] == "PUT" and out["q"] == "b" and out["ua"] == "t" and out["body"] == "hi" and out["host"]


def test_none_and_binary(load) -> None:
    fn = load("openfaas-http", SRC, "handler.handle")
    r = fn.http("GET", "/none")
    assert (r.status, r.body) == (200, b"")
    data = bytes(range(256))
    assert fn.http("POST", "/bin", data, headers={"Content-Type": "application/octet-stream"}).body == data[::-1]


def test_error(load) -> None:
    r = load("openfaas-http", SRC, "handler.handle").http("GET", "/boom")
    assert r.status == 500 and r.error["errorType"] == "ValueError"


def test_async(load) -> None:
    fn = load("openfaas-http", "async def handle(event, context):\n    return {'statusCode': 200, 'body': 'a'}\n",
              "handler.handle")
    assert fn.http().body == b"a"


def test_wrong_arity(load) -> None:
    with pytest.raises(HandlerError) as e:
        load("openfaas-http", "def handle(req):\n    pass\n", "handler.handle")
    assert "python3-http `def handle(event, context)`" in e.value.message
