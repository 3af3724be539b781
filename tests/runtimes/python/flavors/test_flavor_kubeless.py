"""Kubeless flavor: event dict (data, event-id, extensions.request), context dict, errors."""

from __future__ import annotations

import pytest

from polyfn.runtimes.python.flavors import HandlerError

from .conftest import body_json


def test_event_and_context(load) -> None:
    src = """
    def f(event, context):
        req = event['extensions']['request']
        return {"data": event['data'], "id": event['event-id'], "type": event['event-type'],
                "ns": event['event-namespace'], "time": bool(event['event-time']), "ctx": context,
                "method": req.method, "hdr": req.get_header('x-a')}
    """
    fn = load("kubeless", src, "fn.f")
    out = body_json(fn.http("POST", "/", b'{"k": 1}', headers={"Content-Type": "application/json", "X-A": "v",
                                                              "event-id": "e1"}))
    assert out["data"] == {"k": 1} and out["id"] == "e1" and out["type"] == "application/json"
    assert out["ns"] == "cli.kubeless.io" and out["time"] and out["method"] == "POST" and out["hdr"] == "v"
    assert out["ctx"] == {"function-name": "f", "timeout": "30", "runtime": "python3.11", "memory-limit": "128Mi"}


def test_non_json_data_is_bytes(load) -> None:
    fn = load("kubeless", "def reverse(event, context):\n    return event['data'][::-1]\n", "reverse.reverse")
    data = bytes(range(256))
    assert fn.http("POST", "/", data, headers={"Content-Type": "application/octet-stream"}).body == data[::-1]
    assert fn.http("POST", "/", b"hello", headers={"Content-Type": "text/plain"}).body == b"olleh"
    assert fn.event("hello").body == b"olleh"


def test_error_and_async(load) -> None:
    fn = load("kubeless", "def f(event, context):\n    raise IndexError('i')\n", "fn.f")
    r = fn.http("POST", "/", b"x")
    assert r.status == 500 and r.error["errorType"] == "IndexError"
    fa = load("kubeless", "async def f(event, context):\n    return 'a'\n", "fn.f")
    assert fa.http("POST", "/", b"x").body == b"a"


def test_wrong_arity(load) -> None:
    with pytest.raises(HandlerError) as e:
        load("kubeless", "def f(event):\n    pass\n", "fn.f")
    assert "Kubeless `def f(event, context)`" in e.value.message
