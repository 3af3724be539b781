"""OpenWhisk flavor: params, web-action __ow_* params and results, {"error"} failures, __OW_* env."""

from __future__ import annotations

import base64

import pytest

from polyfn.runtimes.python.flavors import HandlerError

from .conftest import body_json, header

ECHO = """
import os
def main(params):
    return {"params": params, "env": {k: v for k, v in os.environ.items() if k.startswith("__OW_")}}
"""


def test_invoke_params_and_env(load) -> None:
    fn = load("openwhisk", ECHO, "action.main")
    out = body_json(fn.event({"name": "x"}))
    assert out["params"] == {"name": "x"}
    env = out["env"]
    assert env["__OW_ACTION_NAME"] == "/guest/fn-test" and env["__OW_NAMESPACE"] == "guest"
    assert len(env["__OW_ACTIVATION_ID"]) == 32 and int(env["__OW_DEADLINE"]) > 0


def test_web_action_params(load) -> None:
    fn = load("openwhisk", ECHO, "action.main")
    p = body_json(fn.http("POST", "/sub", b'{"b": 2}', "a=1", {"Content-Type": "application/json"}))["params"]
    assert p["a"] == "1" and p["b"] == 2 and p["__ow_method"] == "post" and p["__ow_path"] == "/sub"
    assert p["__ow_headers"]["content-type"] == "application/json" and "__ow_body" not in p
    raw = body_json(fn.http("POST", "/", b"\x00\xff", headers={"Content-Type": "application/octet-stream"}))["params"]
    assert base64.b64decode(raw["__ow_body"]) == b"\x00\xff"


def test_web_action_http_result_and_binary(load) -> None:
    src = """
    import base64
    def main(params):
        if params.get("__ow_path") == "/img":
            return {"headers": {"Content-Type": "image/png"}, "body": base64.b64encode(b"\\x89PNG").decode()}
        if params.get("__ow_path") == "/empty":
            return {}
        return {"statusCode": 201, "headers": {"X-W": "1"}, "body": "<b>hi</b>"}
    """
    fn = load("openwhisk", src, "action.main")
    r = fn.http("GET", "/")
    assert (r.status, r.body, header(r, "x-w"), header(r, "content-type")) == (201, b"<b>hi</b>", "1", "text/html")
    assert fn.http("GET", "/img").body == b"\x89PNG"
    assert fn.http("GET", "/empty").status == 204


def test_error_result_marks_failure(load) -> None:
    fn = load("openwhisk", "def main(params):\n    return {'error': 'bad input'}\n", "action.main")
    r = fn.event({})
    assert r.status == 502 and body_json(r) == {"error": "bad input"} and r.error["errorType"] == "ApplicationError"
    web = fn.http("GET", "/")
    assert web.status == 400 and body_json(web) == {"error": "bad input"}


def test_exception_and_non_dict(load) -> None:
    r = load("openwhisk", "def main(params):\n    raise KeyError('k')\n", "action.main").event({})
    assert r.status == 502 and "KeyError" in body_json(r)["error"] and r.error["errorType"] == "KeyError"
    r = load("openwhisk", "def main(params):\n    return 'str'\n", "action.main").event({})
    assert r.status == 502 and r.error["errorType"] == "TypeError"


def test_async_main(load) -> None:
    fn = load("openwhisk", "async def main(params):\n    return {'ok': params['x']}\n", "action.main")
    assert body_json(fn.event({"x": 1})) == {"ok": 1}


def test_wrong_arity(load) -> None:
    with pytest.raises(HandlerError) as e:
        load("openwhisk", "def main():\n    pass\n", "action.main")
    assert "OpenWhisk `def main(params)`" in e.value.message
