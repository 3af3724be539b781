"""Bad input to Lambda's durable-execution API (CheckpointDurableExecution and the calls beside it) against a real
node, signed as botocore signs: each request below was a 500 with a traceback in the node's log, or was stored
(an Id of 7, a Name of 5, a wait of 10**30 seconds, a Payload of 8 MB, a step after the EXECUTION succeeded) and
then handed to the SDK on its next replay (found by fuzzing, eighteenth session). Each now gets the 4xx and
error code botocore's model names (`InvalidParameterValueException` for a bad update or token,
`ResourceNotFoundException` for an unknown callback), nothing it was refused for is kept, and the execution
reads back the same after it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from .conftest import Server, wait_until
from .test_lambda_api import zip_of

# a durable function that never checkpoints by itself: the test checkpoints for its invocation, which stays running
# (for longer than the module runs: the node stops it)
CODE = "import time\n\ndef handler(event, context):\n    time.sleep(800)\n    return {'Status': 'PENDING'}\n"
P = "/2025-12-01"


class Durable:
    def __init__(self, server: Server):
        self.server = server
        self.lam = boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1",
                                aws_access_key_id="polyfn-admin", aws_secret_access_key=server.key,
                                config=Config(retries={"max_attempts": 1}))
        self.lam.create_function(FunctionName="fuzz-durable", Runtime="python3.12", Role="arn:aws:iam::1:role/d",
                                 Handler="lambda_function.handler", Timeout=900,
                                 Code={"ZipFile": zip_of({"lambda_function.py": CODE})},
                                 DurableConfig={"ExecutionTimeout": 3600, "RetentionPeriodInDays": 1})

    def start(self, name: str) -> tuple[str, str]:
        """A running execution: its ARN and a token of its current invocation (`<id>.<invocation>.<n>`)."""
        arn = self.lam.invoke(FunctionName="fuzz-durable", InvocationType="Event", DurableExecutionName=name,
                              Payload=b"{}")["DurableExecutionArn"]
        assert wait_until(lambda: any(e["EventType"] == "ExecutionStarted" for e in self.history(arn)), 30)
        return arn, arn.rsplit("/", 1)[1] + ".1.1"

    def call(self, method: str, path: str, body: bytes = b"") -> httpx.Response:
        url = self.server.url + path
        req = AWSRequest(method=method, url=url, data=body, headers={"content-type": "application/json"})
        SigV4Auth(Credentials("polyfn-admin", self.server.key), "lambda", "us-east-1").add_auth(req)
        return httpx.request(method, url, headers=dict(req.headers.items()), content=body, timeout=60)

    def checkpoint(self, arn: str, body: Any) -> httpx.Response:
        return self.call("POST", f"{P}/durable-executions/{quote(arn, safe='')}/checkpoint",
                         body if isinstance(body, bytes) else json.dumps(body).encode())

    def history(self, arn: str) -> list[dict[str, Any]]:
        return list(self.lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"])

    def reads(self, arn: str) -> tuple[str, list[dict[str, Any]], int]:
        """What a reader sees (through botocore, which parses every field by its model)."""
        status = self.lam.get_durable_execution(DurableExecutionArn=arn)["Status"]
        ops = self.lam.get_durable_execution_state(DurableExecutionArn=arn, CheckpointToken="x")["Operations"]
        return status, ops, len(self.history(arn))


@pytest.fixture(scope="module")
def durable(server: Server) -> Iterator[Durable]:
    d = Durable(server)
    yield d
    assert "Traceback" not in server.log.read_text()


def code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.headers.get("x-amzn-errortype", "")


def update(**kw: Any) -> dict[str, Any]:
    return {"Id": "op", "Type": "STEP", "Action": "START", **kw}


BAD = "InvalidParameterValueException"
CONTENT = "InvalidRequestContentException"
# (case, Updates or a whole body given as bytes ("TOKEN" is replaced by the current token), expected code)
CASES: list[tuple[str, Any, str]] = [
    ("an update that is a number", [5], BAD),
    ("an update that is null", [None], BAD),
    ("an Id that is a list", [update(Id=[1])], BAD),
    ("an Id that is a number", [update(Id=7)], BAD),
    ("an Id that is an object", [update(Id={"a": 1})], BAD),
    ("an empty Id", [update(Id="")], BAD),
    ("an Id of 100,000 characters", [update(Id="x" * 100_000)], BAD),
    ("a Type that is a list", [update(Type=["STEP"])], BAD),
    ("an Action that is an object", [update(Action={})], BAD),
    ("an unknown Type", [update(Type="NOPE")], BAD),
    ("an unknown Action", [update(Action="EXPLODE")], BAD),
    ("a Name that is a number", [update(Name=5)], BAD),
    ("a ParentId that is a list", [update(ParentId=[1])], BAD),
    ("a SubType that is an object", [update(SubType={"a": 1})], BAD),
    ("a Payload that is an object", [update(Action="SUCCEED", Payload={"a": 1})], BAD),
    ("a Payload over 6 MB", [update(Action="SUCCEED", Payload="x" * (6 * 1024 * 1024 + 1))], BAD),
    ("an Id with a dot", [update(Id="a.b")], BAD),
    ("an Id with a slash", [update(Id="../x")], BAD),
    ("a SubType of 33 characters", [update(SubType="x" * 33)], BAD),
    ("an Error that is a string", [update(Action="FAIL", Error="boom")], BAD),
    ("an Error whose ErrorType is a number", [update(Action="FAIL", Error={"ErrorType": 5})], BAD),
    ("a StackTrace that is a string", [update(Action="FAIL", Error={"StackTrace": "x"})], BAD),
    ("StepOptions that are a list", [update(Action="RETRY", StepOptions=[1])], BAD),
    ("a retry delay that is a string", [update(Action="RETRY", StepOptions={"NextAttemptDelaySeconds": "x"})], BAD),
    ("a retry delay of 10**30 s", [update(Action="RETRY", StepOptions={"NextAttemptDelaySeconds": 10**30})], BAD),
    ("a negative retry delay", [update(Action="RETRY", StepOptions={"NextAttemptDelaySeconds": -5})], BAD),
    ("a retry delay of Infinity", b'{"CheckpointToken": "TOKEN", "Updates": [{"Id": "op", "Type": "STEP", '
     b'"Action": "RETRY", "StepOptions": {"NextAttemptDelaySeconds": 1e999}}]}', BAD),
    ("a retry delay of NaN", b'{"CheckpointToken": "TOKEN", "Updates": [{"Id": "op", "Type": "STEP", '
     b'"Action": "RETRY", "StepOptions": {"NextAttemptDelaySeconds": NaN}}]}', BAD),
    ("a wait that is a string", [update(Type="WAIT", WaitOptions={"WaitSeconds": "abc"})], BAD),
    ("a wait of 10**30 s", [update(Type="WAIT", WaitOptions={"WaitSeconds": 10**30})], BAD),
    ("a negative wait", [update(Type="WAIT", WaitOptions={"WaitSeconds": -100})], BAD),
    ("a wait of 1.5 s", [update(Type="WAIT", WaitOptions={"WaitSeconds": 1.5})], BAD),
    ("a wait of true", [update(Type="WAIT", WaitOptions={"WaitSeconds": True})], BAD),
    ("WaitOptions that are a list", [update(Type="WAIT", WaitOptions=[1])], BAD),
    ("a callback timeout that is a string", [update(Type="CALLBACK", CallbackOptions={"TimeoutSeconds": "x"})], BAD),
    ("a heartbeat timeout that is a string",
     [update(Type="CALLBACK", CallbackOptions={"HeartbeatTimeoutSeconds": "x"})], BAD),
    ("a callback timeout of 10**30 s", [update(Type="CALLBACK", CallbackOptions={"TimeoutSeconds": 10**30})], BAD),
    ("a callback timeout of 10**8 s", [update(Type="CALLBACK", CallbackOptions={"TimeoutSeconds": 10**8})], BAD),
    ("a negative callback timeout", [update(Type="CALLBACK", CallbackOptions={"TimeoutSeconds": -5})], BAD),
    ("CallbackOptions that are a list", [update(Type="CALLBACK", CallbackOptions=[1])], BAD),
    ("ChainedInvokeOptions that are a list", [update(Type="CHAINED_INVOKE", ChainedInvokeOptions=[1])], BAD),
    ("a chained FunctionName that is an object",
     [update(Type="CHAINED_INVOKE", ChainedInvokeOptions={"FunctionName": {"a": 1}})], BAD),
    ("a chained invoke's Payload that is a number",
     [update(Type="CHAINED_INVOKE", ChainedInvokeOptions={"FunctionName": "f"}, Payload=5)], BAD),
    ("ContextOptions that are a list", [update(Type="CONTEXT", Action="SUCCEED", ContextOptions=[1])], BAD),
    ("a ReplayChildren that is a string",
     [update(Type="CONTEXT", Action="SUCCEED", ContextOptions={"ReplayChildren": "yes"})], BAD),
    ("the EXECUTION under another Id", [update(Id="other", Type="EXECUTION", Action="SUCCEED")], BAD),
    ("the EXECUTION started again", [update(Id="EXECUTION_ID", Type="EXECUTION")], BAD),
    ("one Id as a STEP and a WAIT in one batch", [update(Id="dup"), update(Id="dup", Type="WAIT")], BAD),
    ("a good update then a bad one", [update(Id="kept-not"), update(Id=5)], BAD),
    ("Updates that are an object", b'{"CheckpointToken": "TOKEN", "Updates": {"a": 1}}', BAD),
    ("a token that is a number", b'{"CheckpointToken": 5, "Updates": []}', BAD),
    ("a token that is a list", b'{"CheckpointToken": ["TOKEN"], "Updates": []}', BAD),
    ("no token", b'{"Updates": []}', BAD),
    ("a forged token", b'{"CheckpointToken": "' + b"0" * 32 + b'.1.1", "Updates": []}', BAD),
    ("a token of another invocation", b'{"CheckpointToken": "EXECUTION_ID.2.1", "Updates": []}', BAD),
    ("a token an earlier checkpoint consumed", b'{"CheckpointToken": "STALE_TOKEN", "Updates": []}', BAD),
    ("a token of another execution", b'{"CheckpointToken": "OTHER_TOKEN", "Updates": []}', BAD),
    ("a token with a NUL", b'{"CheckpointToken": "\\u00e9\\u0000", "Updates": []}', BAD),
    ("an Id that is not UTF-8", b'{"CheckpointToken": "TOKEN", "Updates": [{"Id": "\xff\xfe", "Type": "STEP", '
     b'"Action": "START"}]}', CONTENT),
    ("an Id with a lone surrogate", b'{"CheckpointToken": "TOKEN", "Updates": [{"Id": "\\ud800", "Type": "STEP", '
     b'"Action": "START"}]}', CONTENT),
    ("a Payload nested 100,000 deep", b'{"CheckpointToken": "TOKEN", "Updates": [{"Id": "op", "Type": "STEP", '
     b'"Action": "SUCCEED", "Payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}", CONTENT),
    ("a body that is a list", b"[1]", CONTENT),
    ("a body that is not JSON", b"\xff\xff", CONTENT),
]


@pytest.fixture(scope="module")
def running(durable: Durable) -> dict[str, str]:
    arn, first = durable.start("fuzz-1")
    _other_arn, other = durable.start("fuzz-2")
    r = durable.checkpoint(arn, {"CheckpointToken": first, "Updates": [update(Id="warm")]})
    assert r.status_code == 200, r.text  # (the invocation's first token is consumed: a stale one from now on)
    return {"arn": arn, "token": r.json()["CheckpointToken"], "stale": first, "other": other}


def then(running: dict[str, str], r: httpx.Response) -> httpx.Response:
    """A checkpoint that succeeded: its reply's token is the next one."""
    assert r.status_code == 200, r.text
    running["token"] = r.json()["CheckpointToken"]
    return r


@pytest.mark.parametrize("body, expected", [pytest.param(b, e, id=c) for c, b, e in CASES])
def test_a_malformed_checkpoint_is_refused_and_nothing_is_kept(durable: Durable, running: dict[str, str], body: Any,
                                                               expected: str) -> None:
    arn, token = running["arn"], running["token"]
    before = durable.reads(arn)
    if isinstance(body, bytes):
        body = body.replace(b"OTHER_TOKEN", running["other"].encode()) \
            .replace(b"STALE_TOKEN", running["stale"].encode()).replace(b"TOKEN", token.encode()) \
            .replace(b"EXECUTION_ID", token.split(".")[0].encode())
    else:
        body = {"CheckpointToken": token, "Updates": json.loads(json.dumps(body).replace(
            "EXECUTION_ID", token.split(".")[0]))}
    r = durable.checkpoint(arn, body)
    assert code(r) == (400, expected), r.text[:300]
    assert durable.reads(arn) == before  # (status, every operation, the history: as they were)


def test_good_updates_beside_the_refused_ones_still_checkpoint(durable: Durable, running: dict[str, str]) -> None:
    arn, token = running["arn"], running["token"]
    r = durable.checkpoint(arn, {"CheckpointToken": token, "Updates": [
        update(Id="s1", Name="", Payload=None), update(Id="w1", Type="WAIT", WaitOptions={"WaitSeconds": 600}),
        update(Id="s1", Action="RETRY", StepOptions={"NextAttemptDelaySeconds": 300.0}, Error={"ErrorType": "E"}),
        update(Id="c1", Type="CALLBACK", CallbackOptions={"TimeoutSeconds": 99_999_999})]})
    then(running, r)
    ops = {o["Id"]: o for o in durable.reads(arn)[1]}
    assert ops["s1"]["Status"] == "PENDING" and ops["w1"]["Status"] == "STARTED" and ops["c1"]["Status"] == "STARTED"


def test_callback_answers_with_a_bad_error_or_an_unknown_id(durable: Durable, running: dict[str, str]) -> None:
    arn, token = running["arn"], running["token"]
    r = then(running, durable.checkpoint(arn, {"CheckpointToken": token, "Updates": [update(Id="cb", Type="CALLBACK")]}))
    callback_id = r.json()["NewExecutionState"]["Operations"][0]["CallbackDetails"]["CallbackId"]
    before = durable.reads(arn)
    for body in (b'{"ErrorType": 5}', b'{"ErrorMessage": {"a": 1}}', b'{"StackTrace": "x"}', b"[1]"):
        r = durable.call("POST", f"{P}/durable-execution-callbacks/{callback_id}/fail", body)
        assert code(r)[0] == 400 and code(r)[1] in (BAD, CONTENT), r.text
        assert durable.reads(arn) == before
    execution_id = token.split(".")[0]
    for unknown in (f"{execution_id}.nope.0", f"{execution_id}.x", "0" * 32 + ".cb.1"):
        r = durable.call("POST", f"{P}/durable-execution-callbacks/{unknown}/succeed", b'"x"')
        assert code(r) == (404, "ResourceNotFoundException"), (unknown, r.text)
    r = durable.call("POST", f"{P}/durable-execution-callbacks/{callback_id}/fail", b'{"ErrorType": "No"}')
    assert r.status_code == 200, r.text
    assert {o["Id"]: o for o in durable.reads(arn)[1]}["cb"]["Status"] == "FAILED"


@pytest.mark.parametrize("query", ["Marker=-5", "Marker=99999999999999999999999", "MaxItems=-1x",
                                   "MaxItems=99999999999999999999999"])
@pytest.mark.parametrize("what", ["state", "history"])
def test_a_page_marker_out_of_range(durable: Durable, running: dict[str, str], what: str, query: str) -> None:
    r = durable.call("GET", f"{P}/durable-executions/{quote(running['arn'], safe='')}/{what}?{query}")
    assert code(r) == (400, BAD), r.text


def test_nothing_is_checkpointed_after_the_execution_succeeded_and_a_bad_stop(durable: Durable) -> None:
    arn, token = durable.start("fuzz-3")
    execution_id = token.split(".")[0]
    r = durable.call("POST", f"{P}/durable-executions/{quote(arn, safe='')}/stop", b'{"ErrorType": [1]}')
    assert code(r) == (400, BAD), r.text
    assert durable.reads(arn)[0] == "RUNNING"
    r = durable.checkpoint(arn, {"CheckpointToken": token, "Updates": [
        update(Id=execution_id, Type="EXECUTION", Action="SUCCEED", Payload="1"), update(Id="late")]})
    assert code(r) == (400, BAD), r.text  # (a step after the EXECUTION's end, in the same batch)
    r = durable.checkpoint(arn, {"CheckpointToken": token, "Updates": [
        update(Id=execution_id, Type="EXECUTION", Action="SUCCEED", Payload="1")]})
    assert r.status_code == 200, r.text
    before = durable.reads(arn)
    r = durable.checkpoint(arn, {"CheckpointToken": r.json()["CheckpointToken"], "Updates": [update(Id="late")]})
    assert code(r) == (400, BAD), r.text
    assert durable.reads(arn) == before
    assert [o["Id"] for o in before[1]] == [execution_id]
    assert "the durable execution has ended" in r.text


@pytest.mark.parametrize("name", ["a/b", "..", "a b", "x" * 65, "a.b"])
def test_an_execution_name_aws_refuses(durable: Durable, name: str) -> None:
    url = durable.server.url + "/2015-03-31/functions/fuzz-durable/invocations"
    req = AWSRequest(method="POST", url=url, data=b"{}", headers={"x-amz-invocation-type": "Event",
                                                                  "x-amz-durable-execution-name": name})
    SigV4Auth(Credentials("polyfn-admin", durable.server.key), "lambda", "us-east-1").add_auth(req)
    r = httpx.post(url, headers=dict(req.headers.items()),
                   content=b"{}", timeout=60)
    assert code(r) == (400, BAD), r.text
    names = [e["DurableExecutionName"] for e in
             durable.lam.list_durable_executions_by_function(FunctionName="fuzz-durable")["DurableExecutions"]]
    assert name not in names


def test_a_callback_result_over_1_mb(durable: Durable, running: dict[str, str]) -> None:
    arn = running["arn"]
    r = then(running, durable.checkpoint(arn, {"CheckpointToken": running["token"],
                                               "Updates": [update(Id="big", Type="CALLBACK")]}))
    callback_id = r.json()["NewExecutionState"]["Operations"][0]["CallbackDetails"]["CallbackId"]
    r = durable.call("POST", f"{P}/durable-execution-callbacks/{callback_id}/succeed", b"x" * (1024 * 1024 + 1))
    assert code(r) == (400, BAD), r.text[:300]
    assert {o["Id"]: o for o in durable.reads(arn)[1]}["big"]["Status"] == "STARTED"
    r = durable.call("POST", f"{P}/durable-execution-callbacks/{callback_id}/succeed", b"x" * (1024 * 1024))
    assert r.status_code == 200, r.text[:300]
