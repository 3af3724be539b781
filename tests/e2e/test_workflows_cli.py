"""polyfn's own face of workflows: `/v1/workflows`, the `polyfn workflow` CLI, cron schedules, and OpenWhisk
sequences and conductor actions through the OpenWhisk API (requests shaped as `wsk` sends them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import wait_until

DOUBLE = "def handler(event, context):\n    return {'n': event['n'] * 2}\n"
INC = "def handler(event, context):\n    return {'n': event['n'] + 1}\n"
CONDUCTOR = (  # an OpenWhisk Python action: main(params)
    "def main(event):\n"
    "    if event['n'] > 20:\n"
    "        return {'params': {'n': event['n'], 'rounds': event.get('rounds', 0)}}\n"
    "    return {'action': '/_/wf-double', 'params': {'n': event['n']}, 'state': {'rounds': event.get('rounds', 0) + 1}}\n"
)
ASL = {"StartAt": "Double", "States": {
    "Double": {"Type": "Task", "Resource": "wf-double", "Next": "Check"},
    "Check": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 100, "Next": "Big"}],
              "Default": "Small"},
    "Big": {"Type": "Pass", "Result": "big", "ResultPath": "$.size", "End": True},
    "Small": {"Type": "Pass", "Result": "small", "ResultPath": "$.size", "End": True}}}


@pytest.fixture(scope="module")
def fns(server: Any) -> Any:
    server.deploy("wf-double", {"main.py": DOUBLE}, handler="main.handler")
    server.deploy("wf-inc", {"main.py": INC}, handler="main.handler")
    return server


def test_cli_create_start_watch_history_stop(fns: Any, tmp_path: Path) -> None:
    server = fns
    (tmp_path / "sizes.asl.json").write_text(json.dumps(ASL))
    r = server.cli("workflow", "create", "sizes", str(tmp_path / "sizes.asl.json"), check=True)
    assert "workflow sizes revision 1" in r.stdout
    r = server.cli("workflow", "start", "sizes", "-d", '{"n": 70}', "--wait", check=True)
    assert json.loads(r.stdout) == {"n": 140, "size": "big"}
    ex = json.loads(server.cli("workflow", "start", "sizes", "-d", '{"n": 3}', "--json", check=True).stdout)
    r = server.cli("workflow", "watch", ex["id"], check=True)
    assert "ExecutionSucceeded" in r.stdout and '"size": "small"' in r.stdout
    r = server.cli("workflow", "history", ex["id"], check=True)
    assert "ChoiceStateExited" in r.stdout and "LambdaFunctionSucceeded" in r.stdout
    assert "sizes" in server.cli("workflow", "list", check=True).stdout
    d = json.loads(server.cli("workflow", "describe", "sizes", "--json", check=True).stdout)
    assert {n["name"] for n in d["graph"]["nodes"]} == {"Double", "Check", "Big", "Small"}
    assert {(e["from"].rsplit("/", 1)[-1], e["to"].rsplit("/", 1)[-1]) for e in d["graph"]["edges"]} == {
        ("Double", "Check"), ("Check", "Big"), ("Check", "Small")}
    assert len(d["executions"]) == 2


def test_cli_errors_and_stop(fns: Any, tmp_path: Path) -> None:
    server = fns
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Gone"}}}))
    r = server.cli("workflow", "create", "broken", str(bad))
    assert r.returncode != 0 and "/States/A/Next" in (r.stderr + r.stdout)
    (tmp_path / "nap.json").write_text(json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600,
                                                                                     "End": True}}}))
    server.cli("workflow", "create", "nap", str(tmp_path / "nap.json"), check=True)
    ex = json.loads(server.cli("workflow", "start", "nap", "--json", check=True).stdout)
    r = server.cli("workflow", "stop", ex["id"], "--error", "Cancelled", check=True)
    assert "ABORTED" in r.stdout
    r = server.cli("workflow", "watch", ex["id"])
    assert r.returncode == 1 and "ABORTED" in r.stdout
    r = server.cli("workflow", "start", "nope")
    assert r.returncode != 0 and "workflow_not_found" in r.stderr


def test_a_sequence_from_the_cli_and_an_http_start(fns: Any) -> None:
    server = fns
    server.cli("workflow", "create", "inc-double", "--sequence", "wf-inc,wf-double", check=True)
    r = server.api.post("/v1/workflows/inc-double/executions", params={"wait": "true"}, json={"input": {"n": 4}})
    assert r.status_code == 201 and r.json()["output"] == {"n": 10}
    r = server.api.post("/v1/workflows/inc-double/executions", json={"input": {"n": 1}, "name": "twice"})
    again = server.api.post("/v1/workflows/inc-double/executions", json={"input": {"n": 2}, "name": "twice"})
    assert r.status_code == 201 and again.status_code == 409 and again.json()["error"]["code"] == "execution_exists"
    r = server.api.put("/v1/workflows/bad-seq", json={"kind": "sequence", "definition": ["Not A Function"]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_definition"


def test_cron_schedule_starts_executions(fns: Any) -> None:
    server = fns
    r = server.api.put("/v1/workflows/ticker", json={"definition": {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "wf-inc", "End": True}}}, "schedules": [{"cron": "* * * * * */1",
                                                                                   "input": {"n": 41}}]})
    assert r.status_code == 200, r.text
    assert r.json()["schedules"] == [{"cron": "* * * * * */1", "timezone": "UTC", "input": {"n": 41}}]

    def done() -> list[dict[str, Any]]:
        return [e for e in server.api.get("/v1/workflows/ticker/executions").json()["executions"]
                if e["status"] == "SUCCEEDED"]

    assert wait_until(lambda: len(done()) >= 2, 30, 0.2)
    assert all(e["output"] == {"n": 42} and e["name"].startswith("cron-0-") for e in done())
    server.api.put("/v1/workflows/ticker", json={"definition": {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "wf-inc", "End": True}}}, "schedules": []})
    r = server.api.put("/v1/workflows/ticker", json={"definition": {"StartAt": "T", "States": {
        "T": {"Type": "Pass", "End": True}}}, "schedules": [{"cron": "every minute"}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_schedule"


@pytest.fixture(scope="module")
def wsk(fns: Any) -> httpx.Client:
    return httpx.Client(base_url=fns.url + "/api/v1/namespaces/_", auth=("polyfn-admin", fns.key), timeout=60)


def test_openwhisk_sequence(wsk: httpx.Client) -> None:
    r = wsk.put("/actions/incdouble", params={"overwrite": "false"},
                json={"namespace": "_", "name": "incdouble",
                      "exec": {"kind": "sequence", "components": ["/_/wf-inc", "/_/wf-double"]}})
    assert r.status_code == 200, r.text
    action = wsk.get("/actions/incdouble").json()
    assert action["exec"] == {"kind": "sequence", "components": ["/_/wf-inc", "/_/wf-double"]}
    assert "incdouble" in [a["name"] for a in wsk.get("/actions").json()]
    r = wsk.post("/actions/incdouble", params={"blocking": "true", "result": "true"}, json={"n": 5})
    assert r.status_code == 200 and r.json() == {"n": 12}
    rec = wsk.post("/actions/incdouble", params={"blocking": "true"}, json={"n": 1}).json()
    assert rec["response"]["success"] is True and rec["response"]["result"] == {"n": 4}
    assert wsk.post("/actions/incdouble", json={"n": 1}).status_code == 202
    r = wsk.put("/actions/broken", json={"exec": {"kind": "sequence", "components": ["/_/missing"]}})
    assert r.status_code == 400 and "does not exist" in r.json()["error"]
    assert wsk.delete("/actions/incdouble").status_code == 200
    assert wsk.get("/actions/incdouble").status_code == 404


def test_openwhisk_conductor_action(wsk: httpx.Client) -> None:
    r = wsk.put("/actions/conduct", json={
        "exec": {"kind": "python:3", "code": CONDUCTOR},
        "annotations": [{"key": "conductor", "value": True}]})
    assert r.status_code == 200, r.text
    r = wsk.post("/actions/conduct", params={"blocking": "true", "result": "true"}, json={"n": 3})
    assert r.status_code == 200 and r.json() == {"n": 24, "rounds": 3}


def test_console_draws_the_graph_with_the_execution_path(fns: Any) -> None:
    import re

    server = fns
    server.api.put("/v1/workflows/drawn", json={"definition": {"StartAt": "Double", "States": {
        "Double": {"Type": "Task", "Resource": "wf-double", "Next": "Check"},
        "Check": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 5, "Next": "Bad"}],
                  "Default": "Fine"},
        "Bad": {"Type": "Fail", "Error": "TooBig"},
        "Fine": {"Type": "Succeed"}}}})
    ok = server.api.post("/v1/workflows/drawn/executions", params={"wait": "true"}, json={"input": {"n": 1}}).json()
    bad = server.api.post("/v1/workflows/drawn/executions", params={"wait": "true"}, json={"input": {"n": 9}}).json()
    assert (ok["status"], bad["status"]) == ("SUCCEEDED", "FAILED")
    c = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    assert c.post("/console/login", data={"key": server.key}).status_code == 303

    def outcomes(path: str) -> dict[str, str]:
        r = c.get(path)
        assert r.status_code == 200, r.text
        return dict(re.findall(r'data-state="([^"]+)" data-outcome="([^"]+)"', r.text))

    assert outcomes(f"/console/executions/{ok['id']}") == {"Double": "succeeded", "Check": "succeeded",
                                                           "Fine": "succeeded", "Bad": "unvisited"}
    assert outcomes(f"/console/executions/{bad['id']}") == {"Double": "succeeded", "Check": "succeeded",
                                                            "Bad": "failed", "Fine": "unvisited"}
    page = c.get(f"/console/executions/{bad['id']}").text
    assert "FailStateEntered" in page and "TooBig" in page and 'class="wf-edge taken"' in page
    listing = c.get("/console/workflows/drawn").text
    assert ok["id"] in listing and bad["id"] in listing
    assert "drawn" in c.get("/console/workflows").text
    assert c.get("/console/executions/nope").status_code == 404


def test_executions_in_metrics_stats_and_top(fns: Any) -> None:
    server = fns
    server.api.put("/v1/workflows/counted", json={"definition": {"StartAt": "P", "States": {"P": {"Type": "Pass",
                                                                                                  "End": True}}}})
    for _ in range(3):
        assert server.api.post("/v1/workflows/counted/executions", params={"wait": "true"}).json()["status"] == "SUCCEEDED"
    text = server.api.get("/metrics").text
    assert 'polyfn_workflow_executions_total{status="SUCCEEDED",workflow="counted"} 3.0' in text
    assert "polyfn_workflow_events_total" in text and "# TYPE polyfn_workflow_executions_running gauge" in text
    rows = {r["name"]: r for r in server.api.get("/v1/stats").json()["workflows"]}
    assert rows["counted"]["succeeded"] == 3 and rows["counted"]["running"] == 0
    r = server.cli("top", "--once", check=True)
    assert "workflow" in r.stdout and "counted" in r.stdout
