"""Workflows survive the node: kill -9 of the server during a Map of 100 items and during a Wait, then a restart on
the same data dir; every execution ends with the result it has without the kill. And a function deleted while an
execution runs fails it with a clear cause."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from .conftest import Server, start_server, wait_until

ROLE = "arn:aws:iam::123456789012:role/sfn"
# 0.2 s an item, 8 at a time: the Map of 100 runs ~2.5 s, long enough to be caught in the middle on a loaded machine
SQUARE = "import time\n\ndef handler(event, context):\n    time.sleep(0.2)\n    return event['n'] * event['n']\n"
MAP = {"StartAt": "Squares", "States": {"Squares": {
    "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 8,
    "ItemSelector": {"n.$": "$$.Map.Item.Value"},
    "ItemProcessor": {"StartAt": "Square", "States": {"Square": {"Type": "Task", "Resource": "square", "End": True}}},
    "ResultSelector": {"squares.$": "$", "sum.$": "States.ArrayLength($)"}, "End": True}}}
WAIT = {"StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "SecondsPath": "$.s", "Next": "Woke"},
                                     "Woke": {"Type": "Pass", "Parameters": {"slept.$": "$.s"}, "End": True}}}


def client(server: Server) -> Any:
    return boto3.client("stepfunctions", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id="polyfn-admin", aws_secret_access_key=server.key,
                        config=Config(retries={"max_attempts": 1}, read_timeout=60))


def history_types(sfn: Any, arn: str) -> list[str]:
    out, token = [], None
    while True:
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **({"nextToken": token} if token else {}))
        out += [e["type"] for e in page["events"]]
        token = page.get("nextToken")
        if not token:
            return out


def finished(sfn: Any, arn: str, timeout: float = 120) -> dict[str, Any]:
    assert wait_until(lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING", timeout, 0.2)
    return sfn.describe_execution(executionArn=arn)


def test_kill_9_during_a_map_of_100_and_during_waits(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        server.deploy("square", {"main.py": SQUARE}, handler="main.handler", max_instances=8)
        sfn = client(server)
        map_arn = sfn.create_state_machine(name="squares", definition=json.dumps(MAP), roleArn=ROLE)["stateMachineArn"]
        wait_arn = sfn.create_state_machine(name="naps", definition=json.dumps(WAIT), roleArn=ROLE)["stateMachineArn"]
        items = {"items": list(range(100))}
        control = finished(sfn, sfn.start_execution(stateMachineArn=map_arn, name="control",
                                                    input=json.dumps(items))["executionArn"])
        assert control["status"] == "SUCCEEDED"
        expected = json.loads(control["output"])
        assert expected == {"squares": [n * n for n in range(100)], "sum": 100}

        victim = sfn.start_execution(stateMachineArn=map_arn, name="killed", input=json.dumps(items))["executionArn"]
        short = sfn.start_execution(stateMachineArn=wait_arn, name="short", input='{"s": 2}')["executionArn"]
        day = sfn.start_execution(stateMachineArn=wait_arn, name="a-day", input='{"s": 86400}')["executionArn"]
        t_short = time.time()
        assert wait_until(lambda: 10 <= history_types(sfn, victim).count("MapIterationSucceeded"), 60, 0.05)
        assert history_types(sfn, victim).count("MapIterationSucceeded") < 90  # well inside the Map
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL  # mid-Map, mid-Wait: nothing is drained
    finally:
        server.stop(signal.SIGKILL)

    server = start_server(data)  # the same node back on the same data dir
    try:
        sfn = client(server)
        done = finished(sfn, victim)
        assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == expected
        types = history_types(sfn, victim)
        assert types.count("MapIterationSucceeded") == 100 and types[-1] == "ExecutionSucceeded"
        napped = finished(sfn, short)
        assert napped["status"] == "SUCCEEDED" and json.loads(napped["output"]) == {"slept": 2}
        assert napped["stopDate"].timestamp() - t_short >= 2
        # the day-long wait is still waiting, with its timer: it survived the kill and the restart
        d = sfn.describe_execution(executionArn=day)
        assert d["status"] == "RUNNING" and history_types(sfn, day)[-1] == "WaitStateEntered"
        sfn.stop_execution(executionArn=day)
    finally:
        server.stop()


def test_a_function_deleted_mid_execution_fails_it_with_a_clear_cause(server: Server) -> None:
    server.deploy("first-step", {"main.py": "def handler(e, c):\n    return e\n"}, handler="main.handler")
    server.deploy("second-step", {"main.py": "def handler(e, c):\n    return e\n"}, handler="main.handler")
    sfn = client(server)
    arn = sfn.create_state_machine(name="two-steps", roleArn=ROLE, definition=json.dumps({"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "first-step", "Next": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 2, "Next": "B"},
        "B": {"Type": "Task", "Resource": "second-step", "End": True}}}))["stateMachineArn"]
    ex = sfn.start_execution(stateMachineArn=arn, input='{"k": 1}')["executionArn"]
    assert wait_until(lambda: "WaitStateEntered" in history_types(sfn, ex), 30)
    assert server.api.delete("/v1/functions/second-step").status_code == 200
    done = finished(sfn, ex)
    assert (done["status"], done["error"]) == ("FAILED", "Lambda.ResourceNotFoundException")
    assert "'second-step' does not exist" in done["cause"]


DURABLE_STEPS = '''
import time
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step


@durable_step
def double(step_context, n):
    time.sleep(0.05)
    return n * 2


@durable_execution
def handler(event, context: DurableContext):
    n = event["n"]
    for i in range(event["steps"]):
        n = context.step(double(n), name=f"double-{i}")
    return {"n": n}
'''


def durable_history(lam: Any, arn: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    marker = None
    while True:
        page = lam.get_durable_execution_history(DurableExecutionArn=arn, MaxItems=1000,
                                                 **({"Marker": marker} if marker else {}))
        out += page["Events"]
        marker = page.get("NextMarker")
        if not marker:
            return out


def test_kill_9_during_a_durable_function_resumes_from_its_checkpoints(tmp_path: Path) -> None:
    """A Lambda durable function (AWS's SDK, unmodified) killed with its node after some of its 40 steps: after
    the restart the function is invoked again with the operations stored incrementally before the kill, replays
    them, and ends with the result it has without the kill; no step that had succeeded runs again."""
    from .test_lambda_api import zip_of
    from .test_lambda_durable import SDK

    def lambda_client(server: Server) -> Any:
        return boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1",
                            aws_access_key_id="polyfn-admin", aws_secret_access_key=server.key,
                            config=Config(retries={"max_attempts": 1}, read_timeout=120))

    data = tmp_path / "data"
    server = start_server(data)
    try:
        lam = lambda_client(server)
        lam.create_function(FunctionName="doubler", Runtime="python3.12", Role=ROLE, Handler="lambda_function.handler",
                            Timeout=60, DurableConfig={"ExecutionTimeout": 600},
                            Code={"ZipFile": zip_of({"lambda_function.py": DURABLE_STEPS, "requirements.txt": SDK})})
        r = lam.invoke(FunctionName="doubler", InvocationType="Event", Payload=json.dumps({"n": 3, "steps": 40}))
        arn = r["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]

        def succeeded_steps() -> int:
            return sum(e["EventType"] == "StepSucceeded" for e in durable_history(lam, arn))

        assert wait_until(lambda: succeeded_steps() >= 8, 90, 0.05)
        before = succeeded_steps()
        assert before < 36  # well inside the function
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        server.stop(signal.SIGKILL)

    server = start_server(data)
    try:
        lam = lambda_client(server)
        assert wait_until(lambda: lam.get_durable_execution(DurableExecutionArn=arn)["Status"] != "RUNNING", 120, 0.2)
        done = lam.get_durable_execution(DurableExecutionArn=arn)
        assert done["Status"] == "SUCCEEDED" and json.loads(done["Result"]) == {"n": 3 * 2 ** 40}
        names = [e.get("Name") for e in durable_history(lam, arn) if e["EventType"] == "StepSucceeded"]
        assert sorted(names) == sorted(f"double-{i}" for i in range(40))  # each step succeeded exactly once
        invocations = [e for e in durable_history(lam, arn) if e["EventType"] == "InvocationCompleted"]
        assert len(invocations) >= 1  # the invocation cut by the kill ran again after the restart
    finally:
        server.stop()
