"""Lambda durable functions with AWS's own SDK, unmodified: a handler decorated with `@durable_execution`
(aws-durable-execution-sdk-python from PyPI, shipped in the function's requirements.txt) deployed through the
Lambda API with DurableConfig, invoked with boto3; polyfn runs the checkpoint/replay control plane, resumes it
after a wait and after a callback answered with SendDurableExecutionCallbackSuccess."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .. import needs
from .conftest import wait_until
from .test_lambda_api import zip_of

ROLE = "arn:aws:iam::123456789012:role/durable"
SDK = "aws-durable-execution-sdk-python==3.0.0\n"
ORDER = '''
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration


@durable_step
def add(step_context, a, b):
    return a + b


@durable_execution
def handler(event, context: DurableContext):
    x = context.step(add(event["n"], 1), name="first")
    context.wait(Duration.from_seconds(1), name="pause")
    approval = context.create_callback(name="approval")
    answer = approval.result()
    y = context.step(add(x, 10), name="second")
    return {"n": y, "answer": answer}
'''
STEPS = '''
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration


@durable_step
def double(step_context, n):
    return n * 2


@durable_execution
def handler(event, context: DurableContext):
    n = event["n"]
    for i in range(event.get("steps", 3)):
        n = context.step(double(n), name=f"double-{i}")
    context.wait(Duration.from_seconds(1))
    return {"n": n}
'''


@pytest.fixture(scope="module")
def lam(server: Any) -> Any:
    return boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="polyfn-admin",
                        aws_secret_access_key=server.key,
                        config=Config(retries={"max_attempts": 1}, read_timeout=300))


def create(lam: Any, name: str, code: str) -> dict[str, Any]:
    return lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="lambda_function.handler",
                               Timeout=30, Code={"ZipFile": zip_of({"lambda_function.py": code, "requirements.txt": SDK})},
                               DurableConfig={"ExecutionTimeout": 600, "RetentionPeriodInDays": 1})


def test_steps_wait_and_callback_with_the_python_sdk(lam: Any) -> None:
    cfg = create(lam, "durable-order", ORDER)
    assert cfg["DurableConfig"]["ExecutionTimeout"] == 600
    out = lam.invoke(FunctionName="durable-order", InvocationType="Event", DurableExecutionName="order-1",
                     Payload=json.dumps({"n": 1}))
    assert out["StatusCode"] == 202
    arn = out["DurableExecutionArn"]
    assert "/durable-execution/order-1/" in arn

    def callback_id() -> str | None:
        for e in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]:
            if e["EventType"] == "CallbackStarted":
                return str(e["CallbackStartedDetails"]["CallbackId"])
        return None

    assert wait_until(lambda: callback_id() is not None, 180, 0.2), lam.get_durable_execution(DurableExecutionArn=arn)
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"
    lam.send_durable_execution_callback_heartbeat(CallbackId=callback_id())
    lam.send_durable_execution_callback_success(CallbackId=callback_id(), Result=b"approved")  # passed through as text
    assert wait_until(lambda: lam.get_durable_execution(DurableExecutionArn=arn)["Status"] != "RUNNING", 120, 0.2)
    done = lam.get_durable_execution(DurableExecutionArn=arn)
    assert done["Status"] == "SUCCEEDED", done
    assert json.loads(done["Result"]) == {"n": 12, "answer": "approved"}
    types = [e["EventType"] for e in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    assert types.count("StepSucceeded") == 2 and "WaitSucceeded" in types and "CallbackSucceeded" in types
    assert types.count("InvocationCompleted") >= 3  # first run, after the wait, after the callback
    listed = lam.list_durable_executions_by_function(FunctionName="durable-order")["DurableExecutions"]
    assert [(e["DurableExecutionName"], e["Status"]) for e in listed] == [("order-1", "SUCCEEDED")]
    with pytest.raises(ClientError) as e:
        lam.send_durable_execution_callback_success(CallbackId=callback_id(), Result=b'"again"')
    assert e.value.response["Error"]["Code"] in ("CallbackTimeoutException", "ResourceNotFoundException")
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="durable-order", InvocationType="Event", DurableExecutionName="order-1", Payload="{}")
    assert e.value.response["Error"]["Code"] == "DurableExecutionAlreadyStartedException"


def test_a_synchronous_invoke_returns_the_result_after_replays(lam: Any) -> None:
    create(lam, "durable-steps", STEPS)
    out = lam.invoke(FunctionName="durable-steps", Payload=json.dumps({"n": 3, "steps": 4}))
    assert "FunctionError" not in out, out["Payload"].read()
    assert json.loads(out["Payload"].read()) == {"n": 48}
    arn = out["DurableExecutionArn"]
    state = lam.get_durable_execution_state(DurableExecutionArn=arn, CheckpointToken="x")["Operations"]
    steps = [op for op in state if op["Type"] == "STEP"]
    assert [op["Name"] for op in steps] == ["double-0", "double-1", "double-2", "double-3"]
    assert all(op["Status"] == "SUCCEEDED" for op in steps)


def test_checkpoints_with_a_stale_token_are_refused(lam: Any) -> None:
    create(lam, "durable-stale", STEPS)
    out = lam.invoke(FunctionName="durable-stale", Payload=json.dumps({"n": 1, "steps": 1}))
    arn = out["DurableExecutionArn"]
    with pytest.raises(ClientError) as e:
        lam.checkpoint_durable_execution(DurableExecutionArn=arn, CheckpointToken="nope", Updates=[])
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    # (the checkpoint route is served in front of the API's router: the same refusals as every other route)
    with pytest.raises(ClientError) as e:
        lam.checkpoint_durable_execution(DurableExecutionArn=arn.rsplit("/", 1)[0] + "/" + "0" * 32,
                                         CheckpointToken="nope", Updates=[])
    assert (e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]) == \
        ("ResourceNotFoundException", 404)
    signed_badly = boto3.client("lambda", endpoint_url=lam.meta.endpoint_url, region_name="us-east-1",
                                aws_access_key_id="polyfn-admin", aws_secret_access_key="wrong",
                                config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as e:
        signed_badly.checkpoint_durable_execution(DurableExecutionArn=arn, CheckpointToken="nope", Updates=[])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


NODE_ORDER = """
const { withDurableExecution } = require("@aws/durable-execution-sdk-js");

exports.handler = withDurableExecution(async (event, context) => {
  const a = await context.step("first", async () => event.n + 1);
  await context.wait({ seconds: 1 });
  const b = await context.runInChildContext("pair", async (child) => {
    const x = await child.step("x", async () => a * 2);
    return await child.step("y", async () => x + 1);
  });
  return { n: b };
});
"""


def test_the_javascript_sdk(lam: Any) -> None:
    needs.tool("node")
    needs.tool("npm")
    package = json.dumps({"name": "durable-js", "version": "1.0.0",
                          "dependencies": {"@aws/durable-execution-sdk-js": "2.4.0"}})
    lam.create_function(FunctionName="durable-js", Runtime="nodejs20.x", Role=ROLE, Handler="index.handler", Timeout=30,
                        Code={"ZipFile": zip_of({"index.js": NODE_ORDER, "package.json": package})},
                        DurableConfig={"ExecutionTimeout": 600})
    out = lam.invoke(FunctionName="durable-js", Payload=json.dumps({"n": 4}))
    assert "FunctionError" not in out, out["Payload"].read()
    assert json.loads(out["Payload"].read()) == {"n": 11}
    types = [e["EventType"] for e in lam.get_durable_execution_history(DurableExecutionArn=out["DurableExecutionArn"])["Events"]]
    assert "WaitSucceeded" in types and "ContextSucceeded" in types and types[-1] == "ExecutionSucceeded"
