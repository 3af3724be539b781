"""Alibaba FC flavor: bytes events, FC context, HTTP trigger event, WSGI handler, errors."""

from __future__ import annotations

import base64
import json

import pytest

from polyfn.events.cloudevent import TYPE_OBJECT_CREATED, TYPE_TIMER
from polyfn.runtimes.python.flavors import HandlerError

from .conftest import body_json, header

ECHO = """
import json
def handler(event, context):
    return json.dumps({"type": type(event).__name__, "event": event.decode("latin-1"),
        "request_id": context.request_id, "function": [context.function.name, context.function.handler,
        context.function.memory, context.function.timeout], "service": context.service.name,
        "region": context.region, "account_id": context.account_id,
        "creds": [context.credentials.access_key_id, context.credentials.security_token]})
"""


def test_event_is_bytes_and_context(load) -> None:
    fn = load("aliyun", ECHO, "index.handler", env={"ALIBABA_CLOUD_ACCESS_KEY_ID": "AK"})
    out = json.loads(fn.event({"a": 1}).body)
    assert out["type"] == "bytes" and json.loads(out["event"]) == {"a": 1}
    assert out["function"] == ["fn-test", "index.handler", 128, 30]
    assert out["service"] == "polyfn" and out["region"] == "cn-hangzhou" and len(out["request_id"]) == 32
    assert out["creds"] == ["AK", ""]


def test_http_trigger_event_and_response_dict(load) -> None:
    src = """
    import json, base64
    def handler(event, context):
        ev = json.loads(event)
        if ev["rawPath"] == "/bin":
            return {"statusCode": 200, "headers": {"Content-Type": "image/png"}, "isBase64Encoded": True,
                    "body": base64.b64encode(base64.b64decode(ev["body"])[::-1]).decode()}
        return {"statusCode": 201, "headers": {"X-Ev": ev["requestContext"]["http"]["method"]},
                "body": ev["queryParameters"]["q"] + ev["body"]}
    """
    fn = load("aliyun", src, "index.handler")
    r = fn.http("POST", "/x", b"body", "q=Q", {"Content-Type": "text/plain"})
    assert (r.status, r.body, header(r, "x-ev")) == (201, b"Qbody", "POST")
    data = bytes(range(256))
    r = fn.http("POST", "/bin", data, headers={"Content-Type": "application/octet-stream"})
    assert r.body == data[::-1] and header(r, "content-type") == "image/png"


def test_wsgi_handler(load) -> None:
    src = """
    def handler(environ, start_response):
        ctx = environ['fc.context']
        body = environ['wsgi.input'].read(int(environ.get('CONTENT_LENGTH') or 0))
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [environ['fc.request_uri'].encode(), b' ', ctx.request_id[:4].encode() and b'ok ', body[::-1]]
    """
    fn = load("aliyun", src, "index.handler")
    r = fn.http("POST", "/p", b"abc", "x=1")
    assert r.status == 200 and r.body == b"/p?x=1 ok cba" and header(r, "content-type") == "text/plain"


def test_oss_and_timer_events(load) -> None:
    fn = load("aliyun", "def handler(event, context):\n    return event\n", "index.handler")
    oss = json.loads(fn.cloudevent(TYPE_OBJECT_CREATED, {"bucket": "b", "key": "k", "size": 2}).body)
    assert oss["events"][0]["eventSource"] == "acs:oss" and oss["events"][0]["oss"]["object"]["key"] == "k"
    t = json.loads(fn.cloudevent(TYPE_TIMER, {"trigger": "every-minute", "payload": "hi"}).body)
    assert t["triggerName"] == "every-minute" and t["payload"] == "hi"


def test_logger(load, capsys) -> None:
    fn = load("aliyun", "def handler(event, context):\n    context.getLogger().info('logged')\n    return 'x'\n",
              "index.handler")
    r = fn.event(b"raw", "application/octet-stream")
    assert r.body == b"x"
    out = capsys.readouterr().out
    assert "[INFO] logged" in out and out.split(" ")[1] == fn.last_request_id


def test_error_shape(load) -> None:
    fn = load("aliyun", "def handler(event, context):\n    return 1 / 0\n", "index.handler")
    r = fn.event({})
    assert r.status == 500 and set(body_json(r)) == {"errorMessage", "errorType", "stackTrace"}
    assert r.error["errorType"] == "ZeroDivisionError"


def test_async_handler(load) -> None:
    fn = load("aliyun", "async def handler(event, context):\n    return event[::-1]\n", "index.handler")
    assert fn.event(b"abc", "application/octet-stream").body == b"cba"


def test_wrong_arity(load) -> None:
    with pytest.raises(HandlerError) as e:
        load("aliyun", "def handler(event):\n    pass\n", "index.handler")
    assert "Alibaba FC" in e.value.message


def test_binary_event(load) -> None:
    fn = load("aliyun", "def handler(event, context):\n    return event[::-1]\n", "index.handler")
    data = bytes(range(256))
    r = fn.event(data, "application/octet-stream")
    assert r.body == data[::-1] and header(r, "content-type") == "application/octet-stream"
    assert base64.b64encode(r.body)
