"""The Step Functions API with the real clients (boto3 `stepfunctions`, the `aws stepfunctions` CLI) against a real
server whose Tasks run real polyfn functions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .conftest import wait_until

ROLE = "arn:aws:iam::123456789012:role/sfn"
ADD = "def handler(event, context):\n    return {'n': event['n'] + event.get('by', 1)}\n"
FAILS = ("class OutOfStock(Exception):\n    pass\n\n"
         "def handler(event, context):\n    raise OutOfStock(f\"no {event['item']} left\")\n")


@pytest.fixture(scope="module")
def sfn(server: Any) -> Any:
    server.deploy("add-one", {"main.py": ADD}, handler="main.handler")
    server.deploy("out-of-stock", {"main.py": FAILS}, handler="main.handler")
    return boto3.client("stepfunctions", endpoint_url=server.url, region_name="eu-west-1",
                        aws_access_key_id="polyfn-admin", aws_secret_access_key=server.key,
                        # StartSyncExecution's endpoint is `sync-<host>`: with an IP address, tell botocore not to prefix
                        config=Config(retries={"max_attempts": 1}, read_timeout=120, inject_host_prefix=False))


def machine(sfn: Any, name: str, definition: dict[str, Any], **kw: Any) -> str:
    return sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE, **kw)["stateMachineArn"]


def finished(sfn: Any, arn: str, timeout: float = 60) -> dict[str, Any]:
    assert wait_until(lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING", timeout, 0.1)
    return sfn.describe_execution(executionArn=arn)


def code(e: ClientError) -> str:
    return e.response["Error"]["Code"]


def test_create_start_describe_history(sfn: Any) -> None:
    arn = machine(sfn, "add-twice", {"StartAt": "One", "States": {
        "One": {"Type": "Task", "Resource": "arn:aws:lambda:eu-west-1:000000000000:function:add-one", "Next": "Two"},
        "Two": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "add-one", "Payload": {"n.$": "$.n", "by": 10}},
                "OutputPath": "$.Payload", "End": True}}})
    assert arn.endswith(":stateMachine:add-twice")
    d = sfn.describe_state_machine(stateMachineArn=arn)
    assert (d["name"], d["type"], d["status"], d["roleArn"]) == ("add-twice", "STANDARD", "ACTIVE", ROLE)
    ex = sfn.start_execution(stateMachineArn=arn, name="run-1", input='{"n": 1}')
    assert ex["executionArn"].endswith(":execution:add-twice:run-1")
    done = finished(sfn, ex["executionArn"])
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"n": 12}
    assert done["stopDate"] >= done["startDate"]
    events = sfn.get_execution_history(executionArn=ex["executionArn"])["events"]
    types = [e["type"] for e in events]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    assert "LambdaFunctionSucceeded" in types and "TaskSucceeded" in types
    sched = next(e for e in events if e["type"] == "TaskScheduled")["taskScheduledEventDetails"]
    assert sched["resourceType"] == "lambda" and json.loads(sched["parameters"])["Payload"] == {"n": 2, "by": 10}
    page = sfn.get_execution_history(executionArn=ex["executionArn"], maxResults=3, reverseOrder=True)
    assert page["events"][0]["type"] == "ExecutionSucceeded" and page["nextToken"]
    rest = sfn.get_execution_history(executionArn=ex["executionArn"], maxResults=100, reverseOrder=True,
                                     nextToken=page["nextToken"])["events"]
    assert [e["id"] for e in page["events"] + rest] == list(range(len(events), 0, -1))
    listed = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert [e["name"] for e in listed] == ["run-1"] and listed[0]["status"] == "SUCCEEDED"
    assert any(m["name"] == "add-twice" for m in sfn.list_state_machines()["stateMachines"])
    again = sfn.describe_state_machine_for_execution(executionArn=ex["executionArn"])
    assert json.loads(again["definition"])["StartAt"] == "One"


def test_start_execution_is_idempotent_by_name(sfn: Any) -> None:
    arn = machine(sfn, "slow", {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 30, "End": True}}})
    a = sfn.start_execution(stateMachineArn=arn, name="once", input='{"x": 1}')
    b = sfn.start_execution(stateMachineArn=arn, name="once", input='{"x": 1}')
    assert a["executionArn"] == b["executionArn"] and a["startDate"] == b["startDate"]
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn=arn, name="once", input='{"x": 2}')
    assert code(e.value) == "ExecutionAlreadyExists"
    stopped = sfn.stop_execution(executionArn=a["executionArn"], error="Cancelled", cause="test")
    assert stopped["stopDate"]
    d = sfn.describe_execution(executionArn=a["executionArn"])
    assert (d["status"], d["error"], d["cause"]) == ("ABORTED", "Cancelled", "test")


def test_function_errors_retry_catch_and_fail(sfn: Any) -> None:
    arn = machine(sfn, "order", {"StartAt": "Reserve", "States": {
        "Reserve": {"Type": "Task", "Resource": "out-of-stock", "Next": "Done",
                    "Retry": [{"ErrorEquals": ["OutOfStock"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                    "Catch": [{"ErrorEquals": ["OutOfStock"], "ResultPath": "$.error", "Next": "Sorry"}]},
        "Sorry": {"Type": "Fail", "Error": "Order.Failed", "Cause": "nothing left"},
        "Done": {"Type": "Succeed"}}})
    done = finished(sfn, sfn.start_execution(stateMachineArn=arn, input='{"item": "tea"}')["executionArn"])
    assert (done["status"], done["error"], done["cause"]) == ("FAILED", "Order.Failed", "nothing left")
    events = sfn.get_execution_history(executionArn=done["executionArn"])["events"]
    failed = [e["lambdaFunctionFailedEventDetails"] for e in events if e["type"] == "LambdaFunctionFailed"]
    assert len(failed) == 2 and failed[0]["error"] == "OutOfStock"
    assert json.loads(failed[0]["cause"])["errorMessage"] == "no tea left"


def test_wait_for_task_token_with_send_task_success(sfn: Any, server: Any) -> None:
    server.deploy("notify", {"main.py": (
        "import json, os\n"
        "def handler(event, context):\n"
        "    with open('/tmp/polyfn-sfn-token-' + event['id'], 'w') as f:\n"
        "        f.write(event['token'])\n"
        "    return 'sent'\n")}, handler="main.handler", annotations={})
    arn = machine(sfn, "approval", {"StartAt": "Ask", "States": {"Ask": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "notify", "Payload": {"token.$": "$$.Task.Token", "id.$": "$$.Execution.Name"}},
        "HeartbeatSeconds": 60, "End": True}}})
    name = f"ask-{os.getpid()}-{time.time_ns()}"
    ex = sfn.start_execution(stateMachineArn=arn, name=name)
    path = f"/tmp/polyfn-sfn-token-{name}"
    assert wait_until(lambda: os.path.exists(path), 30)
    token = open(path).read()
    os.unlink(path)
    assert wait_until(lambda: "TaskSubmitted" in [e["type"] for e in sfn.get_execution_history(
        executionArn=ex["executionArn"])["events"]], 10)
    sfn.send_task_heartbeat(taskToken=token)
    sfn.send_task_success(taskToken=token, output='{"approved": true}')
    assert json.loads(finished(sfn, ex["executionArn"])["output"]) == {"approved": True}
    for call, c in [(lambda: sfn.send_task_success(taskToken=token, output="{}"), "TaskTimedOut"),
                    (lambda: sfn.send_task_failure(taskToken="nonsense"), "InvalidToken"),
                    (lambda: sfn.send_task_heartbeat(taskToken=token[:-3] + "abc"), "TaskTimedOut")]:
        with pytest.raises(ClientError) as e:
            call()
        assert code(e.value) == c


HOST_FS = True  # the notify function hands its token to the test through the host's /tmp


def test_start_sync_execution_of_an_express_machine(sfn: Any) -> None:
    arn = machine(sfn, "express-add", {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "add-one", "End": True}}},
                  type="EXPRESS")
    out = sfn.start_sync_execution(stateMachineArn=arn, input='{"n": 41}')
    assert out["status"] == "SUCCEEDED" and json.loads(out["output"]) == {"n": 42}
    std = machine(sfn, "standard-add", {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    with pytest.raises(ClientError) as e:
        sfn.start_sync_execution(stateMachineArn=std, input="{}")
    assert code(e.value) == "StateMachineTypeNotSupported"


@pytest.mark.parametrize(("definition", "where"), [
    ({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}, "/States/A/Next"),
    ({"StartAt": "A", "States": {"A": {"Type": "Task", "End": True}}}, "/States/A/Resource"),
    ({"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "$[", "End": True}}}, "/States/A/InputPath"),
    ({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsNull": True, "Next": "E"}]},
                                 "E": {"Type": "Succeed"}}}, "/States/C/Default"),
])
def test_invalid_definitions_name_the_state_and_field(sfn: Any, definition: dict[str, Any], where: str) -> None:
    with pytest.raises(ClientError) as e:
        sfn.create_state_machine(name="bad", definition=json.dumps(definition), roleArn=ROLE)
    assert code(e.value) == "InvalidDefinition" and e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert where in e.value.response["Error"]["Message"]
    v = sfn.validate_state_machine_definition(definition=json.dumps(definition))
    assert v["result"] == "FAIL" and any(d["location"] == where for d in v["diagnostics"])


def test_errors_the_clients_expect(sfn: Any, server: Any) -> None:
    for call, c in [
        (lambda: sfn.describe_state_machine(stateMachineArn="arn:aws:states:eu-west-1:000000000000:stateMachine:none"),
         "StateMachineDoesNotExist"),
        (lambda: sfn.describe_execution(executionArn="arn:aws:states:eu-west-1:000000000000:execution:none:x"),
         "ExecutionDoesNotExist"),
        (lambda: sfn.describe_execution(executionArn="not-an-arn"), "InvalidArn"),
        (lambda: sfn.start_execution(stateMachineArn="arn:aws:states:eu-west-1:000000000000:stateMachine:none"),
         "StateMachineDoesNotExist"),
        (lambda: sfn.create_state_machine(name="has space", definition="{}", roleArn=ROLE), "InvalidName"),
    ]:
        with pytest.raises(ClientError) as e:
            call()
        assert code(e.value) == c
    arn = machine(sfn, "pass-one", {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn=arn, input="{not json")
    assert code(e.value) == "InvalidExecutionInput"
    bad = boto3.client("stepfunctions", endpoint_url=server.url, region_name="eu-west-1",
                       aws_access_key_id="polyfn-admin", aws_secret_access_key="wrong",
                       config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as e:
        bad.list_state_machines()
    assert code(e.value) == "InvalidSignatureException"


def test_read_key_may_describe_but_not_start(sfn: Any, server: Any) -> None:
    r = server.api.post("/v1/keys", json={"scope": "read"})
    assert r.status_code in (200, 201), r.text
    k = r.json()
    reader = boto3.client("stepfunctions", endpoint_url=server.url, region_name="eu-west-1",
                          aws_access_key_id=k["access_key_id"], aws_secret_access_key=k["secret_access_key"],
                          config=Config(retries={"max_attempts": 1}))
    arn = machine(sfn, "guarded", {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    assert reader.describe_state_machine(stateMachineArn=arn)["name"] == "guarded"
    with pytest.raises(ClientError) as e:
        reader.start_execution(stateMachineArn=arn)
    assert code(e.value) == "AccessDeniedException"


def test_update_and_delete_and_tags(sfn: Any) -> None:
    arn = machine(sfn, "changing", {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 1, "End": True}}},
                  tags=[{"key": "team", "value": "x"}])
    up = sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 2, "End": True}}}))
    assert up["revisionId"] == sfn.describe_state_machine(stateMachineArn=arn)["revisionId"]
    sfn.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "test"}])
    assert sorted(t["key"] for t in sfn.list_tags_for_resource(resourceArn=arn)["tags"]) == ["env", "team"]
    ex = sfn.start_execution(stateMachineArn=arn)
    assert json.loads(finished(sfn, ex["executionArn"])["output"]) == 2
    sfn.delete_state_machine(stateMachineArn=arn)
    with pytest.raises(ClientError) as e:
        sfn.describe_state_machine(stateMachineArn=arn)
    assert code(e.value) == "StateMachineDoesNotExist"
    assert sfn.describe_execution(executionArn=ex["executionArn"])["status"] == "SUCCEEDED"  # history outlives it


def test_aws_cli(server: Any, sfn: Any, tmp_path: Any) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "polyfn-admin", "AWS_SECRET_ACCESS_KEY": server.key,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}

    def aws(*args: str) -> Any:
        r = subprocess.run([sys.executable, "-m", "awscli", "stepfunctions", "--endpoint-url", server.url, *args,
                            "--output", "json"], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else None

    (tmp_path / "def.json").write_text(json.dumps({"StartAt": "Add", "States": {
        "Add": {"Type": "Task", "Resource": "add-one", "End": True}}}))
    arn = aws("create-state-machine", "--name", "cli-add", "--definition", f"file://{tmp_path / 'def.json'}",
              "--role-arn", ROLE)["stateMachineArn"]
    ex = aws("start-execution", "--state-machine-arn", arn, "--input", '{"n": 6}')["executionArn"]
    assert wait_until(lambda: aws("describe-execution", "--execution-arn", ex)["status"] == "SUCCEEDED", 60, 0.2)
    assert json.loads(aws("describe-execution", "--execution-arn", ex)["output"]) == {"n": 7}
    assert aws("get-execution-history", "--execution-arn", ex)["events"][-1]["type"] == "ExecutionSucceeded"
    assert [m["name"] for m in aws("list-state-machines")["stateMachines"]].count("cli-add") == 1
