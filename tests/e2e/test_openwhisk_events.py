"""OpenWhisk's event model and the rest of `wsk`'s REST shapes: packages, triggers, rules, the alarm feed, zip
actions without `binary`, application errors and web action forms. Requests are shaped as `wsk` (openwhisk-cli
and openwhisk-client-go) sends them."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import wait_until

ECHO = "def main(args):\n    return {k: v for k, v in args.items() if k != '__ow_headers'}\n"
FAILS = ("def main(args):\n"
         "    if args.get('boom'):\n"
         "        raise ValueError('kaboom')\n"
         "    return {'error': 'nope', 'detail': 1}\n")
NODE_FAILS = ("function main(args) {\n"
              "  if (args.boom) { throw new Error('kaboom'); }\n"
              "  return {error: 'nope'};\n"
              "}\n")


@pytest.fixture(scope="module")
def wsk(server: Any) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api/v1/namespaces/_", auth=("polyfn-admin", server.key), timeout=60)


def _action(wsk: httpx.Client, name: str, code: str, kind: str = "python:3", **extra: Any) -> None:
    r = wsk.put(f"/actions/{name}", params={"overwrite": "true"},
                json={"namespace": "_", "name": name, "exec": {"kind": kind, "code": code}, **extra})
    assert r.status_code == 200, r.text


def _result(wsk: httpx.Client, name: str, params: dict[str, Any] | None = None) -> httpx.Response:
    return wsk.post(f"/actions/{name}", params={"blocking": "true", "result": "true"}, json=params or {})


def _activation(wsk: httpx.Client, aid: str) -> dict[str, Any]:
    assert wait_until(lambda: wsk.get(f"/activations/{aid}").status_code == 200, 30), aid
    return wsk.get(f"/activations/{aid}").json()


def test_api_info(server: Any) -> None:
    r = server.http.get("/api/v1")  # `wsk property get --apibuild`: no auth
    info = r.json()
    assert r.status_code == 200 and info["description"] == "OpenWhisk API" and info["api_version_path"] == "v1"
    assert info["build"] and info["buildno"]
    r = server.http.get("/api/v1/namespaces/", auth=("polyfn-admin", server.key))  # `wsk namespace list`
    assert r.status_code == 200 and r.json() == ["polyfn"]


def test_packages_parameters_and_bindings(wsk: httpx.Client) -> None:
    assert wsk.put("/actions/nopkg/a", json={"exec": {"kind": "python:3", "code": ECHO}}).status_code == 404
    r = wsk.put("/packages/tools", params={"overwrite": "false"},
                json={"namespace": "_", "name": "tools", "publish": False, "binding": {},
                      "parameters": [{"key": "who", "value": "pkg"}, {"key": "color", "value": "red"}]})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "tools" and r.json()["binding"] == {}
    assert wsk.put("/packages/tools", json={}).status_code == 409
    _action(wsk, "tools/echo", ECHO, parameters=[{"key": "who", "value": "action"}])
    assert _result(wsk, "tools/echo", {"x": 1}).json() == {"who": "action", "color": "red", "x": 1}
    got = wsk.get("/actions/tools/echo").json()
    assert got["namespace"] == "polyfn/tools" and got["name"] == "echo"
    assert {"key": "color", "value": "red"} in got["parameters"] and {"key": "who", "value": "action"} in got["parameters"]
    assert [a["name"] for a in wsk.get("/actions/tools/").json()] == ["echo"]  # `wsk action list tools`
    pkg = wsk.get("/packages/tools").json()
    assert [a["name"] for a in pkg["actions"]] == ["echo"]

    # a binding: its parameters over the package's, the action's own over both
    r = wsk.put("/packages/blue", json={"binding": {"namespace": "_", "name": "tools"},
                                        "parameters": [{"key": "color", "value": "blue"}]})
    assert r.status_code == 200, r.text
    assert {"key": "binding", "value": {"namespace": "polyfn", "name": "tools"}} in r.json()["annotations"]
    assert _result(wsk, "blue/echo").json() == {"who": "action", "color": "blue"}
    assert [a["name"] for a in wsk.get("/actions/blue/").json()] == ["echo"]
    shown = wsk.get("/packages/blue").json()
    assert shown["binding"]["name"] == "tools" and [a["name"] for a in shown["actions"]] == ["echo"]
    r = wsk.put("/packages/bad", json={"binding": {"namespace": "_", "name": "nothing"}})
    assert r.status_code == 400 and r.json()["error"] == "Binding references a package that does not exist."
    r = wsk.put("/packages/twice", json={"binding": {"namespace": "_", "name": "blue"}})
    assert r.status_code == 400 and r.json()["error"] == "Cannot bind to another package binding."
    r = wsk.put("/packages/tools", params={"overwrite": "true"}, json={"binding": {"name": "blue"}})
    assert r.status_code == 409
    assert wsk.put("/actions/blue/x", json={"exec": {"kind": "python:3", "code": ECHO}}).status_code == 400
    assert {p["name"] for p in wsk.get("/packages").json()} >= {"tools", "blue"}

    # a package with actions is deleted only with force (which deletes them)
    r = wsk.delete("/packages/tools")
    assert r.status_code == 409 and r.json()["error"].startswith("Package not empty (contains 1 entity)")
    assert wsk.delete("/packages/blue").status_code == 200
    assert wsk.delete("/packages/tools", params={"force": "true"}).status_code == 200
    assert wsk.get("/actions/tools/echo").status_code == 404
    assert wsk.get("/packages/tools").status_code == 404


def test_triggers_rules_and_firing(server: Any, wsk: httpx.Client) -> None:
    _action(wsk, "ev-echo", ECHO, parameters=[{"key": "from", "value": "action"}])
    r = wsk.put("/triggers/ev-t", params={"overwrite": "false"},
                json={"name": "ev-t", "parameters": [{"key": "level", "value": "info"}]})
    assert r.status_code == 200, r.text
    assert wsk.post("/triggers/ev-t", json={"n": 1}).status_code == 204  # no rule: nothing happens
    r = wsk.put("/rules/ev-r", params={"overwrite": "false"},
                json={"name": "ev-r", "status": "", "trigger": "/_/ev-t", "action": "/_/ev-echo"})
    assert r.status_code == 200, r.text
    rule = r.json()
    assert rule["status"] == "active" and rule["trigger"] == {"path": "polyfn", "name": "ev-t"}
    assert rule["action"] == {"path": "polyfn", "name": "ev-echo"}
    r = wsk.put("/rules/ev-missing", json={"trigger": "/_/ev-t", "action": "/_/no-such-action"})
    assert r.status_code == 400 and "no-such-action" in r.json()["error"]
    assert wsk.get("/triggers/ev-t").json()["rules"] == {
        "polyfn/ev-r": {"action": {"path": "polyfn", "name": "ev-echo"}, "status": "active"}}

    r = wsk.post("/triggers/ev-t", json={"n": 2, "level": "debug"})
    assert r.status_code == 202 and r.headers["x-openwhisk-activation-id"] == r.json()["activationId"]
    trig = _activation(wsk, r.json()["activationId"])
    assert trig["name"] == "ev-t" and trig["response"]["result"] == {"n": 2, "level": "debug"}
    [line] = trig["logs"]
    entry = json.loads(line)
    assert entry["rule"] == "polyfn/ev-r" and entry["action"] == "polyfn/ev-echo" and entry["success"] is True
    action = _activation(wsk, entry["activationId"])
    assert action["name"] == "ev-echo"
    assert action["response"]["result"] == {"from": "action", "level": "debug", "n": 2}
    listed = wsk.get("/activations", params={"name": "ev-t"}).json()
    assert [a["activationId"] for a in listed] == [trig["activationId"]]

    # disabled: firing does nothing; enabled again: it runs
    assert wsk.post("/rules/ev-r", json={"status": "inactive"}).json()["status"] == "inactive"
    assert wsk.get("/rules/ev-r").json()["status"] == "inactive"
    assert wsk.post("/triggers/ev-t", json={}).status_code == 204
    r = wsk.post("/rules/ev-r", json={"status": "paused"})
    assert r.status_code == 400 and "not a recognized rule state" in r.json()["error"]
    assert wsk.post("/rules/ev-r", json={"status": "active"}).status_code == 200
    assert wsk.post("/triggers/ev-t", json={}).status_code == 202

    # `wsk list`: actions, packages, triggers, rules
    assert "ev-echo" in [a["name"] for a in wsk.get("/actions", params={"limit": 0}).json()]
    assert wsk.get("/packages", params={"limit": 0}).status_code == 200
    assert [t["name"] for t in wsk.get("/triggers", params={"limit": 0}).json()] == ["ev-t"]
    assert [(x["name"], x["status"]) for x in wsk.get("/rules", params={"limit": 0}).json()] == [("ev-r", "active")]

    assert wsk.delete("/rules/ev-r").status_code == 200
    assert wsk.get("/triggers/ev-t").json()["rules"] == {}
    assert wsk.delete("/triggers/ev-t").status_code == 200
    assert wsk.post("/triggers/ev-t", json={}).status_code == 404


def test_alarm_feed_fires_the_trigger(server: Any, wsk: httpx.Client) -> None:
    _action(wsk, "tick", ECHO)
    feed = [{"key": "feed", "value": "/whisk.system/alarms/alarm"}]
    assert wsk.put("/triggers/every-second", json={"annotations": feed}).status_code == 200
    assert wsk.put("/rules/on-tick", json={"trigger": "/_/every-second", "action": "/_/tick"}).status_code == 200
    system = httpx.Client(base_url=server.url + "/api/v1/namespaces/whisk.system", auth=("polyfn-admin", server.key))
    params = {"lifecycleEvent": "CREATE", "triggerName": "/_/every-second", "authKey": "polyfn-admin:x",
              "cron": "* * * * * *", "trigger_payload": {"hello": "alarm"}}  # OpenWhisk's 6 fields: seconds first
    r = system.post("/actions/alarms/alarm", params={"blocking": "true"}, json=params)
    assert r.status_code == 200, r.text
    assert r.json()["response"]["success"] is True
    polyfn_triggers = server.api.get("/v1/triggers").json()
    alarm = [t for t in polyfn_triggers["triggers"] if t["function"] == "openwhisk:every-second"]
    assert alarm and alarm[0]["config"]["schedule"] == "* * * * * *"

    def fired() -> list[dict[str, Any]]:
        return wsk.get("/activations", params={"name": "every-second", "docs": "true"}).json()

    assert wait_until(lambda: len(fired()) >= 1, 30)
    act = _activation(wsk, fired()[0]["activationId"])
    assert act["response"]["result"] == {"hello": "alarm"}
    child = _activation(wsk, json.loads(act["logs"][0])["activationId"])
    assert child["response"]["result"] == {"hello": "alarm"}

    r = system.post("/actions/alarms/alarm", params={"blocking": "true", "result": "true"},
                    json={**params, "lifecycleEvent": "DELETE"})
    assert r.status_code == 200
    assert not [t for t in server.api.get("/v1/triggers").json()["triggers"]
                if t["function"] == "openwhisk:every-second"]
    r = system.post("/actions/alarms/interval", params={"blocking": "true"},
                    json={**params, "minutes": 7, "lifecycleEvent": "CREATE"})
    assert r.status_code == 400 and "minutes=7" in r.json()["error"]
    r = system.post("/actions/alarms/once", params={"blocking": "true"}, json=params)
    assert r.status_code == 404 and "alarms/alarm" in r.json()["error"]
    r = system.post("/actions/alarms/alarm", params={"blocking": "true"}, json={**params, "cron": "61 * * * *"})
    assert r.status_code == 400


def _zip(files: dict[str, str]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return base64.b64encode(buf.getvalue()).decode()


def test_zip_actions_without_binary_flag(wsk: httpx.Client) -> None:
    # what `wsk action create X file.zip --kind python:3` sends: base64 code, no `binary`
    code = _zip({"__main__.py": "from lib import up\ndef main(args):\n    return {'v': up(args['s'])}\n",
                 "lib.py": "def up(s):\n    return s.upper()\n"})
    _action(wsk, "zpy", code)
    assert _result(wsk, "zpy", {"s": "abc"}).json() == {"v": "ABC"}
    code = _zip({"package.json": json.dumps({"name": "z", "main": "index.js"}),
                 "index.js": "exports.main = (args) => ({v: args.s + '!'});\n"})
    _action(wsk, "zjs", code, kind="nodejs:20")
    assert _result(wsk, "zjs", {"s": "hi"}).json() == {"v": "hi!"}
    r = wsk.put("/actions/zbad", json={"exec": {"kind": "python:3", "code": "not a zip", "binary": True}})
    assert r.status_code == 400


@pytest.mark.parametrize(("kind", "code"), [("python:3", FAILS), ("nodejs:20", NODE_FAILS)])
def test_application_and_developer_errors(wsk: httpx.Client, kind: str, code: str) -> None:
    name = "fails-" + kind.split(":")[0]
    _action(wsk, name, code, kind=kind)
    r = _result(wsk, name)
    assert r.status_code == 502 and r.json()["error"] == "nope"
    r = wsk.post(f"/actions/{name}", params={"blocking": "true"}, json={})
    rec = r.json()
    assert rec["statusCode"] == 1 and rec["response"]["status"] == "application error"
    assert rec["response"]["result"]["error"] == "nope"
    assert wsk.get(f"/activations/{rec['activationId']}").json()["response"]["status"] == "application error"
    r = _result(wsk, name, {"boom": True})
    error = r.json()["error"]
    assert r.status_code == 502 and error.startswith("An error has occurred: ") and "kaboom" in error
    assert error.count("An error has occurred") == 1
    rec = wsk.post(f"/actions/{name}", params={"blocking": "true"}, json={"boom": True}).json()
    assert rec["statusCode"] == 2 and rec["response"]["status"] == "action developer error"


def test_web_action_form_fields(server: Any, wsk: httpx.Client) -> None:
    _action(wsk, "form", "def main(args):\n    return {k: v for k, v in args.items() if not k.startswith('__')}\n",
            annotations=[{"key": "web-export", "value": True}])
    r = server.http.post("/api/v1/web/_/default/form.json?q=1", data={"name": "ann", "age": "7"})
    assert r.status_code == 200 and r.json() == {"q": "1", "name": "ann", "age": "7"}
    r = server.http.post("/api/v1/web/_/default/form.json", data={"name": "bo"},
                         files={"doc": ("a.txt", b"\x00\x01data", "application/octet-stream")})
    assert r.json() == {"name": "bo", "doc": base64.b64encode(b"\x00\x01data").decode()}


def test_docs_openwhisk_section_runs(server: Any, wsk: httpx.Client) -> None:
    """docs/compat.md's OpenWhisk examples, as written, with curl against the server."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "compat.md").read_text()
    section = doc.split("## OpenWhisk REST API (wsk)", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(blocks)], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "URL": server.url, "KEY": server.key}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '{"payload":"cba"}' in out.stdout.replace(" ", "")
    aid = json.loads(out.stdout[out.stdout.rindex('{"activationId"'):].strip())["activationId"]
    entry = json.loads(_activation(wsk, aid)["logs"][0])
    assert _activation(wsk, entry["activationId"])["response"]["result"]["payload"] == "zyx"


def test_the_real_openwhisk_js_client(server: Any) -> None:
    """npm `openwhisk` (apache/openwhisk-client-js), unmodified, through packages, bindings, a zip action sent as
    a Buffer, triggers, rules, firing, activations, the alarm feed and an application error (interop/openwhisk.mjs)."""
    from .jsclients import run_node

    code = _zip({"package.json": json.dumps({"name": "z", "main": "index.js"}),
                 "index.js": "exports.main = (p) => ({ up: p.s.toUpperCase() });\n"})
    out = run_node("interop/openwhisk.mjs", {"POLYFN_URL": server.url, "POLYFN_KEY": server.key, "OW_ZIP_B64": code})
    assert out["info"] == ["polyfn"]
    assert out["invoked"] == {"msg": "hello ann"} and out["bound"] == {"msg": "bonjour you"}
    assert out["packageActions"] == ["greet"] and out["zip"] == {"up": "AB"}
    assert out["triggerActivation"] == {"name": "owjs-t", "result": {"n": 7}}
    assert out["ruleLog"]["rule"] == "polyfn/owjs-r" and out["ruleLog"]["success"] is True
    assert out["childResult"] == {"from": "trigger", "n": 7}
    assert out["ruleStatus"] == "inactive" and out["firedWhileDisabled"] == "fired"  # 204: no activation
    assert "owjs-fr" in out["lists"]["packages"] and "owjs-t" in out["lists"]["triggers"]
    assert "owjs-r:active" in out["lists"]["rules"]
    assert out["feed"]["status"] == "success"
    # the client asks for the activation and takes its result itself: the 502 carries the record
    assert out["appError"]["status"] == 502 and out["appError"]["error"]["statusCode"] == 1
    assert out["appError"]["error"]["response"] == {"status": "application error", "statusCode": 1, "success": False,
                                                    "result": {"error": "nope"}}
    assert "owjs-tools" not in out["afterCleanup"]
