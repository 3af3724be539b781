"""The OpenWhisk REST API subset with requests shaped as `wsk` sends them."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import httpx
import pytest

from .conftest import wait_until

# A function deployed natively (handler(event, context)) exercises the API path (parameters, results, errors,
# activations, web actions) independently of the openwhisk flavor; `wsk`-created actions are tested below.
ECHO = (
    "def handler(event, context):\n"
    "    print('params', sorted(event))\n"
    "    if event.get('boom'):\n"
    "        raise RuntimeError('kaboom')\n"
    "    if event.get('fail'):\n"
    "        return {'error': 'bad request'}\n"
    "    if '__ow_method' in event:\n"
    "        return {'statusCode': 201, 'headers': {'x-web': '1'}, 'body': event['__ow_method'] + ':' + event.get('name', ''),\n"
    "                'text': 'plain ' + event.get('name', ''), 'echo': {'path': event['__ow_path']}}\n"
    "    return {'payload': event.get('payload', '')[::-1], 'greeting': event.get('greeting')}\n"
)


@pytest.fixture(scope="module")
def wsk(server: Any) -> httpx.Client:
    server.deploy("ow-echo", {"handler.py": ECHO}, annotations={
        "openwhisk/parameters": json.dumps([{"key": "greeting", "value": "hi"}]),
        "openwhisk/annotations": json.dumps([{"key": "web-export", "value": True}])})
    return httpx.Client(base_url=server.url + "/api/v1/namespaces/_", auth=("polyfn-admin", server.key), timeout=60)


def test_auth(server: Any, wsk: httpx.Client) -> None:
    r = server.http.get("/api/v1/namespaces/_/actions", auth=("polyfn-admin", "nope"))
    assert r.status_code == 401 and r.json()["error"] == "The supplied authentication is invalid"
    assert wsk.get("/actions").status_code == 200
    assert server.http.get("/api/v1/namespaces", auth=("polyfn-admin", server.key)).json() == ["polyfn"]


def test_invoke_blocking_result_and_record(wsk: httpx.Client) -> None:
    r = wsk.post("/actions/ow-echo", params={"blocking": "true", "result": "true"}, json={"payload": "abc"})
    assert r.status_code == 200 and r.json() == {"payload": "cba", "greeting": "hi"}
    r = wsk.post("/actions/ow-echo", params={"blocking": "true"}, json={"payload": "xy", "greeting": "yo"})
    rec = r.json()
    assert r.status_code == 200 and rec["response"]["success"] is True
    assert rec["response"]["result"] == {"payload": "yx", "greeting": "yo"}
    assert any("params" in line for line in rec["logs"])
    got = wsk.get(f"/activations/{rec['activationId']}").json()
    assert got["activationId"] == rec["activationId"] and got["response"]["status"] == "success"
    assert wsk.get(f"/activations/{rec['activationId']}/result").json()["result"]["payload"] == "yx"
    assert wsk.get(f"/activations/{rec['activationId']}/logs").json()["logs"]


def test_errors(wsk: httpx.Client) -> None:
    r = wsk.post("/actions/ow-echo", params={"blocking": "true", "result": "true"}, json={"fail": True})
    assert r.status_code == 502 and r.json() == {"error": "bad request"}
    r = wsk.post("/actions/ow-echo", params={"blocking": "true", "result": "true"}, json={"boom": True})
    assert r.status_code == 502 and "kaboom" in r.json()["error"]
    r = wsk.post("/actions/ow-echo", params={"blocking": "true"}, json={"boom": True})
    assert r.json()["response"]["status"] == "action developer error"
    assert wsk.post("/actions/nope", params={"blocking": "true"}).status_code == 404
    r = wsk.put("/actions/ow-java", json={"exec": {"kind": "java:8", "code": "x"}})
    assert r.status_code == 400 and "java:8" in r.json()["error"]
    assert wsk.put("/actions/ow-echo", json={"exec": {"kind": "python:3", "code": "x"}}).status_code == 409
    for limits in ({"timeout": "soon"}, {"memory": [256]}, "big"):  # a 400 naming limits, not a 500
        r = wsk.put("/actions/ow-limits", json={"exec": {"kind": "python:3", "code": "def main(a): return a"},
                                                "limits": limits})
        assert r.status_code == 400 and "limits" in r.json()["error"], (limits, r.text)


def test_non_blocking_and_activation_list(wsk: httpx.Client) -> None:
    r = wsk.post("/actions/ow-echo", json={"payload": "later"})
    assert r.status_code == 202
    aid = r.json()["activationId"]
    assert wait_until(lambda: wsk.get(f"/activations/{aid}").status_code == 200, 20)
    assert wsk.get(f"/activations/{aid}/result").json()["result"]["payload"] == "retal"
    listed = wsk.get("/activations", params={"name": "ow-echo", "limit": 50}).json()
    assert aid in [a["activationId"] for a in listed]
    assert "logs" not in listed[0]


def test_web_actions(server: Any, wsk: httpx.Client) -> None:
    r = server.http.post("/api/v1/web/_/default/ow-echo.http/sub/path?name=ann")
    assert r.status_code == 201 and r.text == "post:ann" and r.headers["x-web"] == "1"
    r = server.http.get("/api/v1/web/_/default/ow-echo.json/p", params={"name": "bo"})
    assert r.json()["echo"] == {"path": "/p"}
    assert server.http.get("/api/v1/web/_/default/ow-echo.text?name=cy").text == "plain cy"
    server.deploy("ow-private", {"handler.py": ECHO})
    assert server.http.get("/api/v1/web/_/default/ow-private.json").status_code == 404


def test_wsk_action_create_python_and_zip(wsk: httpx.Client) -> None:
    code = "def main(args):\n    return {'payload': args['payload'][::-1]}\n"
    r = wsk.put("/actions/ow_reverse", params={"overwrite": "false"},
                json={"namespace": "_", "name": "ow_reverse", "exec": {"kind": "python:default", "code": code},
                      "annotations": [{"key": "exec", "value": "python"}], "parameters": [], "limits": {}})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "ow_reverse"
    r = wsk.post("/actions/ow_reverse", params={"blocking": "true", "result": "true"}, json={"payload": "abc"})
    assert r.json() == {"payload": "cba"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", "from helper import rev\ndef main(args):\n    return {'r': rev(args['s'])}\n")
        zf.writestr("helper.py", "def rev(s):\n    return s[::-1]\n")
    r = wsk.put("/actions/ow-zip", json={"exec": {"kind": "python:3", "code": base64.b64encode(buf.getvalue()).decode(),
                                                  "binary": True}})
    assert r.status_code == 200, r.text
    r = wsk.post("/actions/ow-zip", params={"blocking": "true", "result": "true"}, json={"s": "xyz"})
    assert r.json() == {"r": "zyx"}
    assert wsk.delete("/actions/ow_reverse").status_code == 200
    assert wsk.get("/actions/ow_reverse").status_code == 404
