"""Tencent SCF flavor: dict context, API gateway event, integration response, COS/timer events, errors."""

from __future__ import annotations

import base64
import json

import pytest

from polyfn.events.cloudevent import TYPE_OBJECT_CREATED, TYPE_TIMER
from polyfn.runtimes.python.flavors import HandlerError

from .conftest import body_json, header

ECHO = """
def main_handler(event, context):
    return {"event": event, "context": context, "ctx_type": type(context).__name__}
"""


def test_context_is_a_dict(load) -> None:
    fn = load("tencent", ECHO, "index.main_handler")
    out = body_json(fn.event({"k": 1}))
    assert out["ctx_type"] == "dict" and out["event"] == {"k": 1}
    ctx = out["context"]
    assert ctx["function_name"] == "fn-test" and ctx["memory_limit_in_mb"] == 128 and ctx["namespace"] == "default"
    assert len(ctx["request_id"]) == 32 and 0 < ctx["time_limit_in_ms"] <= 30000
    assert ctx["tencentcloud_region"] == "ap-guangzhou" and "function_version" in ctx and "environment" in ctx


def test_apigw_event_and_integration_response(load) -> None:
    src = """
    import base64
    def main_handler(event, context):
        if event["path"] == "/bin":
            return {"isBase64Encoded": True, "statusCode": 200, "headers": {"Content-Type": "image/png"},
                    "body": base64.b64encode(b"\\x00\\xff").decode()}
        return {"isBase64Encoded": False, "statusCode": 200, "headers": {"Content-Type": "text/html"},
                "body": event["httpMethod"] + " " + event["queryString"]["a"] + " " + event["body"] + " "
                        + event["requestContext"]["stage"]}
    """
    fn = load("tencent", src, "index.main_handler")
    r = fn.http("POST", "/x", b"hello", "a=1")
    assert r.body == b"POST 1 hello release" and header(r, "content-type") == "text/html"
    assert fn.http("GET", "/bin").body == b"\x00\xff"


def test_cos_and_timer_events(load) -> None:
    fn = load("tencent", "def main_handler(event, context):\n    return event\n", "index.main_handler")
    cos = body_json(fn.cloudevent(TYPE_OBJECT_CREATED, {"bucket": "b", "key": "k.jpg", "size": 1}))
    rec = cos["Records"][0]
    assert rec["event"]["eventSource"] == "qcs::cos" and rec["cos"]["cosObject"]["key"].endswith("/b/k.jpg")
    t = body_json(fn.cloudevent(TYPE_TIMER, {"trigger": "tick", "payload": "m"}))
    assert t["Type"] == "Timer" and t["TriggerName"] == "tick" and t["Message"] == "m"


def test_error_shape(load) -> None:
    fn = load("tencent", "def main_handler(event, context):\n    raise TypeError('t')\n", "index.main_handler")
    r = fn.event({})
    err = body_json(r)
    assert r.status == 500 and err["errorType"] == "TypeError" and err["errorMessage"] == "t"
    assert err["requestId"] and isinstance(err["stackTrace"], list)


def test_async(load) -> None:
    fn = load("tencent", "async def main_handler(event, context):\n    return 'ok'\n", "index.main_handler")
    assert body_json(fn.event({})) == "ok"


def test_binary_request_base64(load) -> None:
    fn = load("tencent", "def main_handler(event, context):\n    return event\n", "index.main_handler")
    ev = body_json(fn.http("POST", "/", b"\xff\x00", headers={"Content-Type": "application/octet-stream"}))
    assert ev["isBase64Encoded"] and base64.b64decode(ev["body"]) == b"\xff\x00"
    assert json.dumps(ev)


def test_wrong_arity(load) -> None:
    with pytest.raises(HandlerError) as e:
        load("tencent", "def main_handler():\n    pass\n", "index.main_handler")
    assert "Tencent SCF `def main_handler(event, context)`" in e.value.message
