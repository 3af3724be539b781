"""Workflows per namespace against one real node: Step Functions (boto3) with each namespace's key, `/v1/workflows`
and the `polyfn workflow` CLI, Lambda durable executions (AWS's durable SDK), and deleting a namespace with its
machines and executions. Another namespace's machine, execution or callback answers exactly what an absent one
does."""

from __future__ import annotations

import json
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from polyfn.tenancy import account_id

from .conftest import Server, error_code, wait_until
from .test_lambda_api import zip_of
from .test_lambda_durable import ROLE as DURABLE_ROLE
from .test_lambda_durable import SDK

ROLE = "arn:aws:iam::123456789012:role/sfn"
WHO = "def handler(event, context):\n    return {'who': '%s', 'n': event.get('n', 0) + 1}\n"
FLOW = {"StartAt": "Call", "States": {
    "Call": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:who", "End": True}}}
WAITS = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 600, "End": True}}}
CALLBACK = '''
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step


@durable_step
def plus(step_context, n):
    return n + 1


@durable_execution
def handler(event, context: DurableContext):
    x = context.step(plus(event["n"]), name="plus")
    answer = context.create_callback(name="approval").result()
    return {"n": x, "answer": answer}
'''


SCOPES = ("read", "invoke", "deploy", "admin")


def _key(server: Server, ns: str, scope: str = "deploy") -> tuple[str, str]:
    r = server.api.post("/v1/keys", json={"scope": scope, "namespace": ns})
    assert r.status_code == 201, r.text
    return r.json()["access_key_id"], r.json()["secret_access_key"]


def _aws(server: Server, service: str, key: tuple[str, str]) -> Any:
    return boto3.client(service, endpoint_url=server.url, region_name="us-east-1", aws_access_key_id=key[0],
                        aws_secret_access_key=key[1], config=Config(retries={"max_attempts": 1}, read_timeout=300))


@pytest.fixture(scope="module")
def teams(server: Server) -> dict[str, Any]:
    """team-a and team-b, each with a deploy key, a function `who` of its own, and the default namespace's `who`."""
    out: dict[str, Any] = {"admin": ("polyfn-admin", server.key)}
    for ns in ("team-a", "team-b"):
        assert server.api.post("/v1/namespaces", json={"name": ns}).status_code == 201
        key = out[ns] = _key(server, ns)
        http = httpx.Client(base_url=server.url, timeout=120, headers={"authorization": f"Bearer {key[0]}:{key[1]}"})
        r = http.post("/v1/functions", json={"name": "who", "files": {"handler.py": WHO % ns}})
        assert r.status_code == 201, r.text
        out[ns + "/http"] = http
    server.deploy("who", {"handler.py": WHO % "default"})
    return out


def _code(e: Any) -> str:
    return str(e.value.response["Error"]["Code"])


def _done(sfn: Any, arn: str) -> dict[str, Any]:
    assert wait_until(lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING", 60, 0.1)
    return sfn.describe_execution(executionArn=arn)  # type: ignore[no-any-return]


def test_step_functions_per_namespace(server: Server, teams: dict[str, Any]) -> None:
    a, b, admin = (_aws(server, "stepfunctions", teams[k]) for k in ("team-a", "team-b", "admin"))
    arns = {}
    for ns, sfn in (("team-a", a), ("team-b", b), ("default", admin)):  # one machine name in three namespaces
        arn = sfn.create_state_machine(name="flow", definition=json.dumps(FLOW), roleArn=ROLE)["stateMachineArn"]
        assert arn == f"arn:aws:states:us-east-1:{account_id(ns)}:stateMachine:flow"
        arns[ns] = arn
        ex = sfn.start_execution(stateMachineArn=arn, name="run-1", input='{"n": 1}')
        assert ex["executionArn"] == f"arn:aws:states:us-east-1:{account_id(ns)}:execution:flow:run-1"
        done = _done(sfn, ex["executionArn"])
        # the Task's function is the machine's own namespace's `who`
        assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"who": ns, "n": 2}, done
        assert [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]] == [arn]
    assert len(set(arns.values())) == 3 and arns["default"].split(":")[4] == "000000000000"
    # team-b's key: team-a's machine and execution are what absent ones are
    ex_a = arns["team-a"].replace(":stateMachine:", ":execution:") + ":run-1"
    for call, absent in (
            (lambda: b.describe_state_machine(stateMachineArn=arns["team-a"]), "StateMachineDoesNotExist"),
            (lambda: b.describe_state_machine(stateMachineArn=arns["team-a"] + "-nosuch"), "StateMachineDoesNotExist"),
            (lambda: b.start_execution(stateMachineArn=arns["team-a"]), "StateMachineDoesNotExist"),
            (lambda: b.delete_state_machine(stateMachineArn=arns["team-a"]) and
             b.describe_state_machine(stateMachineArn=arns["team-a"]), "StateMachineDoesNotExist"),
            (lambda: b.list_executions(stateMachineArn=arns["team-a"]), "StateMachineDoesNotExist"),
            (lambda: b.describe_execution(executionArn=ex_a), "ExecutionDoesNotExist"),
            (lambda: b.describe_execution(executionArn=ex_a + "-nosuch"), "ExecutionDoesNotExist"),
            (lambda: b.get_execution_history(executionArn=ex_a), "ExecutionDoesNotExist"),
            (lambda: b.stop_execution(executionArn=ex_a), "ExecutionDoesNotExist"),
            (lambda: b.list_tags_for_resource(resourceArn=arns["team-a"]), "ResourceNotFound")):
        with pytest.raises(ClientError) as e:
            call()
        assert _code(e) == absent
    for scope in SCOPES:  # every kind of team-b's keys
        other = _aws(server, "stepfunctions", _key(server, "team-b", scope))
        with pytest.raises(ClientError) as e:
            other.describe_execution(executionArn=ex_a)
        assert _code(e) == "ExecutionDoesNotExist", scope
    assert a.describe_state_machine(stateMachineArn=arns["team-a"])["name"] == "flow"  # (still there)
    assert a.describe_execution(executionArn=ex_a)["status"] == "SUCCEEDED"
    # the admin key works in default, and in a namespace whose account an ARN names
    assert admin.describe_execution(executionArn=ex_a)["status"] == "SUCCEEDED"
    # a machine of default cannot reach another namespace's function through its held name
    admin.create_state_machine(name="reach", roleArn=ROLE, definition=json.dumps(
        {"StartAt": "C", "States": {"C": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                                          "Parameters": {"FunctionName": "team-a~who"}, "End": True}}}))
    run = admin.start_execution(stateMachineArn=arns["default"].replace(":flow", ":reach"), input="{}")
    failed = _done(admin, run["executionArn"])
    assert (failed["status"], failed["error"]) == ("FAILED", "Lambda.ResourceNotFoundException"), failed


def test_v1_workflows_and_cli_per_namespace(server: Server, teams: dict[str, Any]) -> None:
    a, b = teams["team-a/http"], teams["team-b/http"]
    r = a.post("/v1/workflows", json={"name": "seq", "kind": "sequence", "definition": ["who", "who"]})
    assert r.status_code == 201, r.text
    assert r.json()["arn"] == f"arn:aws:states:us-east-1:{account_id('team-a')}:stateMachine:seq"
    r = a.post("/v1/workflows/seq/executions?wait=true", json={"input": {"n": 1}})
    assert r.status_code == 201 and r.json()["output"] == {"who": "team-a", "n": 3}, r.text
    ex_id = r.json()["id"]
    # team-b: absent, as a workflow or execution that does not exist
    assert [w["name"] for w in b.get("/v1/workflows").json()["workflows"]] == ["flow"]  # (its own, of the test above)
    for path, code in (("/v1/workflows/seq", "workflow_not_found"), ("/v1/workflows/nosuch", "workflow_not_found"),
                       (f"/v1/executions/{ex_id}", "execution_not_found"),
                       (f"/v1/executions/{ex_id}/history", "execution_not_found"),
                       ("/v1/executions/nosuch", "execution_not_found")):
        r = b.get(path)
        assert r.status_code == 404 and error_code(r) == code, (path, r.text)
    r = b.post(f"/v1/executions/{ex_id}/stop", json={})
    assert r.status_code == 404 and error_code(r) == "execution_not_found"
    r = b.post("/v1/workflows/seq/executions", json={})
    assert r.status_code == 404 and error_code(r) == "workflow_not_found"
    r = b.delete("/v1/workflows/seq")
    assert r.status_code == 404 and error_code(r) == "workflow_not_found"
    assert b.get("/v1/workflows/seq/executions").json()["executions"] == []
    for scope in SCOPES:  # every kind of team-b's keys
        kb = _key(server, "team-b", scope)
        r = httpx.get(f"{server.url}/v1/workflows/seq", headers={"authorization": f"Bearer {kb[0]}:{kb[1]}"})
        assert r.status_code == 404 and error_code(r) == "workflow_not_found", (scope, r.text)
    assert a.get(f"/v1/executions/{ex_id}").json()["status"] == "SUCCEEDED"
    # the CLI: the admin key names the namespace (--namespace); the default namespace has no `seq`
    out = server.cli("--namespace", "team-a", "workflow", "list", "--json", check=True).stdout
    assert [w["name"] for w in json.loads(out)] == ["flow", "seq"]
    out = server.cli("--namespace", "team-a", "workflow", "start", "seq", "-d", '{"n": 5}', "--wait", "--json",
                     check=True).stdout
    assert json.loads(out)["output"] == {"who": "team-a", "n": 7}
    assert "seq" not in server.cli("workflow", "list", check=True).stdout


def test_durable_executions_per_namespace(server: Server, teams: dict[str, Any]) -> None:
    la, lb = _aws(server, "lambda", teams["team-a"]), _aws(server, "lambda", teams["team-b"])
    la.create_function(FunctionName="approve", Runtime="python3.12", Role=DURABLE_ROLE,
                       Handler="lambda_function.handler", Timeout=30,
                       Code={"ZipFile": zip_of({"lambda_function.py": CALLBACK, "requirements.txt": SDK})},
                       DurableConfig={"ExecutionTimeout": 600, "RetentionPeriodInDays": 1})
    out = la.invoke(FunctionName="approve", InvocationType="Event", DurableExecutionName="one",
                    Payload=json.dumps({"n": 1}))
    arn = out["DurableExecutionArn"]
    assert ":function:approve:" in arn and "~" not in arn

    def callback_id() -> str | None:
        for e in la.get_durable_execution_history(DurableExecutionArn=arn)["Events"]:
            if e["EventType"] == "CallbackStarted":
                return str(e["CallbackStartedDetails"]["CallbackId"])
        return None

    assert wait_until(lambda: callback_id() is not None, 180, 0.2), la.get_durable_execution(DurableExecutionArn=arn)
    cb = callback_id()
    nosuch = arn.rsplit("/", 1)[0] + "/" + "0" * 32
    # team-b's key: the execution and its callback are what unknown ones are
    for call in (lambda: lb.get_durable_execution(DurableExecutionArn=arn),
                 lambda: lb.get_durable_execution(DurableExecutionArn=nosuch),
                 lambda: lb.get_durable_execution_history(DurableExecutionArn=arn),
                 lambda: lb.stop_durable_execution(DurableExecutionArn=arn),
                 lambda: lb.send_durable_execution_callback_success(CallbackId=cb, Result=b"hijacked"),
                 lambda: lb.send_durable_execution_callback_success(CallbackId="0" * 32 + ".x", Result=b"x"),
                 lambda: lb.send_durable_execution_callback_heartbeat(CallbackId=cb)):
        with pytest.raises(ClientError) as e:
            call()
        assert _code(e) == "ResourceNotFoundException"
    for scope in SCOPES:  # every kind of team-b's keys
        with pytest.raises(ClientError) as e:
            _aws(server, "lambda", _key(server, "team-b", scope)).get_durable_execution(DurableExecutionArn=arn)
        assert _code(e) == "ResourceNotFoundException", scope
    assert lb.list_durable_executions_by_function(FunctionName="approve")["DurableExecutions"] == []
    listed = la.list_durable_executions_by_function(FunctionName="approve")["DurableExecutions"]
    assert [(x["DurableExecutionName"], x["Status"]) for x in listed] == [("one", "RUNNING")]
    # the function's ARN answers the same; another account's ARN of the same name lists nothing of team-a's
    assert la.list_durable_executions_by_function(FunctionName=listed[0]["FunctionArn"])["DurableExecutions"] == listed
    for other in ("team-b", "default"):
        foreign = f"arn:aws:lambda:us-east-1:{account_id(other)}:function:approve"
        assert la.list_durable_executions_by_function(FunctionName=foreign)["DurableExecutions"] == [], other
    la.send_durable_execution_callback_success(CallbackId=cb, Result=b"approved")
    assert wait_until(lambda: la.get_durable_execution(DurableExecutionArn=arn)["Status"] != "RUNNING", 120, 0.2)
    done = la.get_durable_execution(DurableExecutionArn=arn)
    assert done["Status"] == "SUCCEEDED" and json.loads(done["Result"]) == {"n": 2, "answer": "approved"}, done


CONTEXT_PY = """
import os
def handler(event, context):
    return {"name": context.function_name, "arn": context.invoked_function_arn, "group": context.log_group_name,
            "env": os.environ["AWS_LAMBDA_FUNCTION_NAME"]}
"""
CONTEXT_JS = """
exports.handler = async (event, context) => ({ name: context.functionName, arn: context.invokedFunctionArn,
  group: context.logGroupName });
"""


def test_a_namespaced_lambda_function_sees_its_own_name_and_account(server: Server, teams: dict[str, Any]) -> None:
    """A function of team-a is held as `team-a~ctx`; its Lambda context shows `ctx` in team-a's account id (as the
    Lambda API's ARNs for it do), in the Python and the Node.js runtime."""
    la = _aws(server, "lambda", teams["team-a"])
    for name, runtime, files in (("ctx-py", "python3.12", {"lambda_function.py": CONTEXT_PY}),
                                 ("ctx-js", "nodejs20.x", {"index.js": CONTEXT_JS})):
        handler = "lambda_function.handler" if runtime.startswith("python") else "index.handler"
        cfg = la.create_function(FunctionName=name, Runtime=runtime, Role=DURABLE_ROLE, Handler=handler,
                                 Code={"ZipFile": zip_of(files)})
        out = json.loads(la.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
        assert out["arn"] == cfg["FunctionArn"] == f"arn:aws:lambda:us-east-1:{account_id('team-a')}:function:{name}"
        assert out["name"] == name and out["group"] == f"/aws/lambda/{name}", out
        if "env" in out:
            assert out["env"] == name


def test_deleting_a_namespace_removes_its_workflows(server: Server, teams: dict[str, Any]) -> None:
    # another namespace's machine of the same name (made here: under xdist the module's other tests may run on
    # another worker's node)
    a = _aws(server, "stepfunctions", teams["team-a"])
    if "flow" not in [m["name"] for m in a.list_state_machines()["stateMachines"]]:
        a.create_state_machine(name="flow", definition=json.dumps(WAITS), roleArn=ROLE)
    team_a = sorted(m["name"] for m in a.list_state_machines()["stateMachines"])
    assert server.api.post("/v1/namespaces", json={"name": "team-c"}).status_code == 201
    key = _key(server, "team-c")
    wsk = httpx.Client(base_url=server.url + "/api/v1/namespaces/_", auth=key, timeout=60)
    for path in ("/packages/tools", "/triggers/t"):
        assert wsk.put(path, json={}).status_code == 200
    sfn = _aws(server, "stepfunctions", key)
    arn = sfn.create_state_machine(name="flow", definition=json.dumps(WAITS), roleArn=ROLE)["stateMachineArn"]
    run = sfn.start_execution(stateMachineArn=arn, name="long")["executionArn"]
    r = server.api.delete("/v1/namespaces/team-c")
    assert r.status_code == 409 and error_code(r) == "namespace_busy", r.text
    assert "1 workflow execution" in r.json()["error"]["message"]
    assert sfn.describe_execution(executionArn=run)["status"] == "RUNNING"
    r = server.api.delete("/v1/namespaces/team-c", params={"force": "true"})
    assert r.status_code == 200, r.text
    assert (r.json()["workflows_deleted"], r.json()["executions_deleted"]) == (1, 1)
    assert r.json()["openwhisk_entities_deleted"] == 2
    # made again, the namespace starts empty; other namespaces' machines of the same name are untouched
    assert server.api.post("/v1/namespaces", json={"name": "team-c"}).status_code == 201
    key = _key(server, "team-c")
    sfn = _aws(server, "stepfunctions", key)
    assert sfn.list_state_machines()["stateMachines"] == []
    wsk = httpx.Client(base_url=server.url + "/api/v1/namespaces/_", auth=key, timeout=60)
    assert wsk.get("/packages").json() == [] and wsk.get("/triggers/t").status_code == 404
    with pytest.raises(ClientError) as e:
        sfn.describe_execution(executionArn=run)
    assert _code(e) == "ExecutionDoesNotExist"
    assert sorted(m["name"] for m in a.list_state_machines()["stateMachines"]) == team_a


ECHO = "def main(args):\n    return {k: v for k, v in args.items() if k != '__ow_headers'}\n"


def _wsk(server: Server, key: tuple[str, str]) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api/v1/namespaces/_", auth=key, timeout=60)


def test_openwhisk_packages_triggers_rules_and_sequences_per_namespace(server: Server, teams: dict[str, Any]) -> None:
    wa, wb, wd = (_wsk(server, teams[k]) for k in ("team-a", "team-b", "admin"))
    for w, who in ((wa, "a"), (wb, "b")):  # the same names in two namespaces: two of each
        assert w.put("/packages/tools", json={"parameters": [{"key": "who", "value": who}]}).status_code == 200
        assert w.put("/actions/tools/echo", json={"exec": {"kind": "python:3", "code": ECHO}}).status_code == 200
        r = w.post("/actions/tools/echo", params={"blocking": "true", "result": "true"}, json={"x": 1})
        assert r.json() == {"who": who, "x": 1}, r.text
        assert w.put("/triggers/t", json={"parameters": [{"key": "from", "value": who}]}).status_code == 200
    assert wa.put("/actions/ev-echo", json={"exec": {"kind": "python:3", "code": ECHO}}).status_code == 200
    r = wa.put("/rules/r", json={"trigger": "/_/t", "action": "/_/ev-echo"})
    assert r.status_code == 200 and r.json()["trigger"] == {"path": "team-a", "name": "t"}, r.text
    assert wa.get("/packages/tools").json()["namespace"] == "team-a"
    # team-b: team-a's rule and action are absent; its own trigger `t` has no rule
    assert wb.get("/rules/r").status_code == 404 and wb.delete("/rules/r").status_code == 404
    assert wb.post("/rules/r", json={"status": "inactive"}).status_code == 404
    r = wb.put("/rules/r", json={"trigger": "/_/t", "action": "/_/ev-echo"})
    assert r.status_code == 400 and "ev-echo" in r.json()["error"]
    assert wb.get("/rules").json() == [] and [t["name"] for t in wb.get("/triggers").json()] == ["t"]
    assert wb.post("/triggers/t", json={}).status_code == 204  # (its own trigger: no rule)
    assert [p["name"] for p in wd.get("/packages").json()] == [] and wd.get("/triggers").json() == []
    # firing team-a's trigger runs team-a's action; its activations are team-a's only
    r = wa.post("/triggers/t", json={"n": 1})
    assert r.status_code == 202, r.text
    aid = r.json()["activationId"]
    assert wait_until(lambda: wa.get(f"/activations/{aid}").status_code == 200, 30)
    trig = wa.get(f"/activations/{aid}").json()
    assert (trig["name"], trig["namespace"]) == ("t", "team-a")
    child = json.loads(trig["logs"][0])["activationId"]
    assert wait_until(lambda: wa.get(f"/activations/{child}").status_code == 200, 60)
    assert wa.get(f"/activations/{child}").json()["response"]["result"] == {"from": "a", "n": 1}
    assert wb.get(f"/activations/{aid}").status_code == 404
    assert [a["activationId"] for a in wa.get("/activations", params={"name": "t"}).json()] == [aid]
    # a sequence: of team-a's actions, invisible to team-b
    r = wa.put("/actions/twice", json={"exec": {"kind": "sequence", "components": ["/_/ev-echo", "/_/tools/echo"]}})
    assert r.status_code == 200 and r.json()["namespace"] == "team-a", r.text
    r = wa.post("/actions/twice", params={"blocking": "true", "result": "true"}, json={"x": 2})
    assert r.json() == {"x": 2}, r.text  # (ev-echo is team-a's only; a component gets no package parameters)
    assert wb.get("/actions/twice").status_code == 404
    assert wb.post("/actions/twice", params={"blocking": "true"}, json={}).status_code == 404
    assert "twice" not in {a["name"] for a in wd.get("/actions").json()}
    # component paths name their namespace as OpenWhisk's do: team-a's own by name works; another namespace's
    # action is refused 403 (OpenWhisk's answer to a component the caller is not entitled to) whether it exists
    # or not — before, `/team-a/tools/echo` from team-b resolved to team-b's own tools/echo
    r = wa.put("/actions/thrice", json={"exec": {"kind": "sequence", "components": ["/team-a/ev-echo",
                                                                                   "/team-a/tools/echo"]}})
    assert r.status_code == 200, r.text
    assert wa.post("/actions/thrice", params={"blocking": "true", "result": "true"}, json={"x": 3}).json() == {"x": 3}
    for w, ref in ((wb, "/team-a/tools/echo"), (wb, "/team-a/nosuch"), (wb, "/team-z/tools/echo"),
                   (wd, "/team-a/ev-echo"), (wa, "/polyfn/who"), (wa, "/guest/who")):
        r = w.put("/actions/theirs", json={"exec": {"kind": "sequence", "components": [ref]}})
        shown = ref.lstrip("/").replace("guest/", "polyfn/")
        assert r.status_code == 403 and r.json()["error"] == ("The supplied authentication is not authorized to "
                                                             f"access '{shown}'."), (ref, r.text)
    assert wb.get("/actions/theirs").status_code == 404
    # the alarm feed: a cron trigger of team-a's (its id held in team-a), firing team-a's trigger
    system = httpx.Client(base_url=server.url + "/api/v1/namespaces/whisk.system", auth=teams["team-a"], timeout=60)
    params = {"lifecycleEvent": "CREATE", "triggerName": "/_/t", "cron": "* * * * * *",
              "trigger_payload": {"hello": "alarm"}}
    assert system.post("/actions/alarms/alarm", params={"blocking": "true"}, json=params).status_code == 200
    mine = teams["team-a/http"].get("/v1/triggers").json()["triggers"]
    assert [t["function"] for t in mine] == ["openwhisk:t"] and "~" not in mine[0]["id"]
    assert "openwhisk:t" not in {t["function"] for t in teams["team-b/http"].get("/v1/triggers").json()["triggers"]}
    assert wait_until(lambda: len(wa.get("/activations", params={"name": "t"}).json()) >= 2, 30)
    params["lifecycleEvent"] = "DELETE"
    assert system.post("/actions/alarms/alarm", params={"blocking": "true"}, json=params).status_code == 200
    assert teams["team-a/http"].get("/v1/triggers").json()["triggers"] == []


BOOM = "def handler(event, context):\n    raise ValueError('boom')\n"


def test_trigger_ids_and_dead_letters_per_namespace(server: Server, teams: dict[str, Any]) -> None:
    a, b = teams["team-a/http"], teams["team-b/http"]
    # the same trigger id in two namespaces (and default): three triggers
    for c in (a, b, server.api):
        r = c.post("/v1/functions/who/triggers", json={"kind": "cron", "id": "nightly",
                                                        "config": {"schedule": "0 3 * * *"}})
        assert r.status_code == 201 and (r.json()["id"], r.json()["function"]) == ("nightly", "who"), r.text
    r = a.post("/v1/functions/who/triggers", json={"kind": "cron", "id": "nightly", "config": {"schedule": "0 4 * * *"}})
    assert r.status_code == 409 and error_code(r) == "trigger_exists"
    r = a.post("/v1/functions/who/triggers", json={"kind": "cron", "id": "team-b~x", "config": {"schedule": "0 4 * * *"}})
    assert r.status_code == 400
    assert a.delete("/v1/triggers/nightly").json() == {"deleted": "nightly"}
    for path in ("/v1/triggers/nightly", "/v1/triggers/team-b~nightly"):
        r = a.get(path)
        assert r.status_code == 404 and error_code(r) == "trigger_not_found", (path, r.text)
    assert b.get("/v1/triggers/nightly").json()["config"]["schedule"] == "0 3 * * *"
    assert server.api.get("/v1/triggers/nightly").status_code == 200
    assert b.delete("/v1/functions/who/triggers/nightly").status_code == 200
    assert server.api.delete("/v1/triggers/nightly").status_code == 200
    # a dead letter of team-a: listed, shown, replayed and deleted by team-a only
    r = a.post("/v1/functions", json={"name": "boom", "files": {"handler.py": BOOM}, "retry_attempts": 1})
    assert r.status_code == 201, r.text
    aid = a.post("/v1/functions/boom/invoke", params={"mode": "async"}, json={}).json()["activation_id"]
    assert wait_until(lambda: [d["id"] for d in a.get("/v1/dlq").json()["dead_letters"]] == [aid], 60)
    assert a.get("/v1/dlq").json()["dead_letters"][0]["function"] == "boom"
    assert a.get("/v1/queue").json() == {"namespace": "team-a", "queued": 0, "dead_letters": 1}
    assert b.get("/v1/queue").json() == {"namespace": "team-b", "queued": 0, "dead_letters": 0}
    assert b.get("/v1/dlq").json()["dead_letters"] == [] and server.api.get("/v1/dlq").json()["dead_letters"] == []
    for call in (lambda: b.get(f"/v1/dlq/{aid}"), lambda: b.post(f"/v1/dlq/{aid}/replay"),
                 lambda: b.delete(f"/v1/dlq/{aid}"), lambda: b.get("/v1/dlq/nosuch")):
        r = call()
        assert r.status_code == 404 and error_code(r) == "dead_letter_not_found", r.text
    assert "dead_letters" in server.api.get("/v1/queue").json()  # the admin key: the whole node's queue
    assert a.get(f"/v1/dlq/{aid}").json()["id"] == aid
    assert a.delete(f"/v1/dlq/{aid}").json() == {"deleted": aid}


def test_topics_log_streams_and_events_per_namespace(server: Server, teams: dict[str, Any]) -> None:
    a, b = teams["team-a/http"], teams["team-b/http"]
    server.deploy("only-default", {"handler.py": WHO % "d"})
    for c in (a, b):  # each namespace subscribes its `who` to a topic, a log stream and an event type
        for kind, config in (("topic", {"topic": "orders"}), ("log", {"stream": "audit"}),
                             ("events", {"type": "com.example.order"})):
            r = c.post("/v1/functions/who/triggers", json={"kind": kind, "config": config})
            assert r.status_code == 201, r.text
    r = a.post("/v1/topics/orders/messages", content=b"{}")
    assert r.status_code == 201 and r.json()["subscribers"] == 1, r.text  # team-a's only, not team-b's
    assert server.api.post("/v1/topics/orders/messages", content=b"{}").json()["subscribers"] == 0  # default's
    r = b.post("/v1/logs/audit", json=["one line"])
    assert r.status_code == 202 and r.json()["subscribers"] == 1, r.text
    event = {"specversion": "1.0", "type": "com.example.order", "source": "/shop", "id": "e-1", "data": {}}
    r = a.post("/v1/events", json=event, headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 202, r.text
    [delivery] = r.json()["events"][0]["deliveries"]
    assert delivery["function"] == "who" and "~" not in delivery["trigger"]
    # following a function's logs: a function of the trigger's own namespace only
    r = b.post("/v1/functions/who/triggers", json={"kind": "log", "config": {"stream": "fn:only-default"}})
    assert r.status_code == 404 and error_code(r) == "function_not_found", r.text


PLACED = ("def handler(event, context):\n"
          "    return {'specversion': '1.0', 'type': 'com.example.shipped', 'source': '/ns-orders', 'data': {}}\n")


def test_a_reply_event_reaches_its_own_namespace_only(server: Server, teams: dict[str, Any]) -> None:
    """A function invoked by an `events` trigger replies with a CloudEvent: it is routed to the `events` triggers
    of the function's own namespace, never to another namespace's subscribers of the same type."""
    a, b = teams["team-a/http"], teams["team-b/http"]
    for c in (a, b, server.api):
        assert c.post("/v1/functions", json={"name": "placed", "files": {"handler.py": PLACED}}).status_code == 201
        assert c.post("/v1/functions", json={"name": "shipped", "files": {"handler.py": WHO % "x"}}).status_code == 201
        for fn, typ in (("placed", "com.example.placed"), ("shipped", "com.example.shipped")):
            r = c.post(f"/v1/functions/{fn}/triggers", json={"kind": "events", "config": {"type": typ}})
            assert r.status_code == 201, r.text
    event = {"specversion": "1.0", "type": "com.example.placed", "source": "/shop", "id": "p-1", "data": {}}
    r = a.post("/v1/events", json=event, headers={"content-type": "application/cloudevents+json"})
    assert [d["function"] for d in r.json()["events"][0]["deliveries"]] == ["placed"], r.text

    def shipped(c: httpx.Client) -> list[dict[str, Any]]:
        return c.get("/v1/activations", params={"function": "shipped"}).json()["activations"]

    assert wait_until(lambda: len(shipped(a)) == 1, 60), a.get("/v1/activations").json()
    # the reply was routed once, in one pass over the triggers: had it reached another namespace's `shipped`,
    # that delivery would be queued or done by now
    assert shipped(b) == [] and shipped(server.api) == [] and b.get("/v1/queue").json()["queued"] == 0
    node = server.api.get("/v1/queue").json()  # (the admin key: the whole node's queue)
    assert node["pending"] == node["running"] == 0, node
