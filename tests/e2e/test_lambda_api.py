"""The Lambda API with the real clients: boto3 and the `aws lambda` CLI (awscli), against a real server."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .conftest import wait_until

SEED = "def lambda_handler(event, context):    message = event['message'][::-1]    return {        'message' : message    }"
# The seed's one-line sample is not valid Python as printed (its newlines were lost in the document);
# this is the same code with its line breaks restored.
SEED_CODE = (
    "def lambda_handler(event, context):\n"
    "    message = event['message'][::-1]\n"
    "    return {\n"
    "        'message' : message\n"
    "    }\n"
)
ROLE = "arn:aws:iam::123456789012:role/lambda-role"


def zip_of(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


@pytest.fixture(scope="module")
def lam(server: Any) -> Any:
    return boto3.client(
        "lambda", endpoint_url=server.url, region_name="eu-west-1", aws_access_key_id="polyfn-admin",
        aws_secret_access_key=server.key, config=Config(retries={"max_attempts": 1}, read_timeout=60),
    )


def create(lam: Any, name: str, code: str = SEED_CODE, **kw: Any) -> dict[str, Any]:
    args = {"FunctionName": name, "Runtime": "python3.12", "Role": ROLE,
            "Handler": "lambda_function.lambda_handler", "Code": {"ZipFile": zip_of({"lambda_function.py": code})}}
    args.update(kw)
    return lam.create_function(**args)


def test_seed_lambda_handler_create_invoke_delete(lam: Any) -> None:
    assert "def lambda_handler(event, context)" in SEED
    cfg = create(lam, "seed-reverse")
    assert cfg["FunctionName"] == "seed-reverse"
    assert cfg["FunctionArn"] == "arn:aws:lambda:eu-west-1:000000000000:function:seed-reverse"
    assert cfg["Runtime"] == "python3.12" and cfg["Handler"] == "lambda_function.lambda_handler"
    assert cfg["Role"] == ROLE and cfg["Timeout"] == 3 and cfg["MemorySize"] == 128
    assert cfg["CodeSize"] > 0 and cfg["Version"] == "$LATEST"
    lam.get_waiter("function_active").wait(FunctionName="seed-reverse", WaiterConfig={"Delay": 1, "MaxAttempts": 3})
    lam.get_waiter("function_active_v2").wait(FunctionName="seed-reverse", WaiterConfig={"Delay": 1, "MaxAttempts": 3})
    r = lam.invoke(FunctionName="seed-reverse", Payload=json.dumps({"message": "hello"}))
    assert r["StatusCode"] == 200
    assert "FunctionError" not in r
    assert r["ExecutedVersion"] == "$LATEST"
    assert json.loads(r["Payload"].read()) == {"message": "olleh"}
    lam.delete_function(FunctionName="seed-reverse")
    with pytest.raises(ClientError) as e:
        lam.get_function(FunctionName="seed-reverse")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_get_list_update_and_waiters(lam: Any, server: Any) -> None:
    sha = base64.b64encode(__import__("hashlib").sha256(zip_of({"lambda_function.py": SEED_CODE})).digest()).decode()
    cfg = create(lam, "lam-update", Description="first", Environment={"Variables": {"GREETING": "hi"}},
                 Tags={"team": "a"})
    assert cfg["CodeSha256"] == sha
    got = lam.get_function(FunctionName="arn:aws:lambda:eu-west-1:000000000000:function:lam-update")
    assert got["Configuration"]["Description"] == "first"
    assert got["Configuration"]["Environment"]["Variables"] == {"GREETING": "hi"}
    assert got["Tags"] == {"team": "a"}
    code = server.http.get(got["Code"]["Location"].replace(server.url, ""))
    assert code.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(code.content)).read("lambda_function.py").decode() == SEED_CODE
    assert server.http.get(got["Code"]["Location"].replace("signature=", "signature=0")).status_code == 403

    new = "import os\ndef lambda_handler(event, context):\n    return {'v': 2, 'g': os.environ.get('GREETING')}\n"
    upd = lam.update_function_code(FunctionName="lam-update", ZipFile=zip_of({"lambda_function.py": new}),
                                   RevisionId=cfg["RevisionId"])
    assert upd["RevisionId"] != cfg["RevisionId"]
    lam.get_waiter("function_updated").wait(FunctionName="lam-update", WaiterConfig={"Delay": 1, "MaxAttempts": 3})
    assert json.loads(lam.invoke(FunctionName="lam-update")["Payload"].read()) == {"v": 2, "g": "hi"}
    with pytest.raises(ClientError) as e:  # stale RevisionId
        lam.update_function_code(FunctionName="lam-update", ZipFile=zip_of({"lambda_function.py": new}),
                                 RevisionId=cfg["RevisionId"])
    assert e.value.response["Error"]["Code"] == "PreconditionFailedException"

    conf = lam.update_function_configuration(FunctionName="lam-update", Timeout=10, MemorySize=256,
                                             EphemeralStorage={"Size": 1024},
                                             Environment={"Variables": {"GREETING": "hello"}})
    assert (conf["Timeout"], conf["MemorySize"], conf["EphemeralStorage"]) == (10, 256, {"Size": 1024})
    assert server.api.get("/v1/functions/lam-update").json()["spec"]["ephemeral_storage"] == 1024  # its /tmp
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName="lam-update", EphemeralStorage={"Size": 20000})
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "EphemeralStorage.Size" in e.value.response["Error"]["Message"]
    lam.get_waiter("function_updated_v2").wait(FunctionName="lam-update", WaiterConfig={"Delay": 1, "MaxAttempts": 3})
    assert json.loads(lam.invoke(FunctionName="lam-update")["Payload"].read()) == {"v": 2, "g": "hello"}
    assert lam.get_function_configuration(FunctionName="lam-update")["CodeSha256"] != sha

    for i in range(3):
        create(lam, f"lam-page-{i}")
    names = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate(
        PaginationConfig={"PageSize": 2}) for f in page["Functions"]]
    assert {"lam-page-0", "lam-page-1", "lam-page-2", "lam-update"} <= set(names)
    assert len(names) == len(set(names))
    first = lam.list_functions(MaxItems=2)
    assert len(first["Functions"]) == 2 and "NextMarker" in first


def test_function_error_log_tail_dry_run_and_event(lam: Any, server: Any) -> None:
    code = (
        "def lambda_handler(event, context):\n"
        "    print('got', event.get('n'))\n"
        "    if event.get('fail'):\n"
        "        raise ValueError('bad input')\n"
        "    return event['n'] * 2\n"
    )
    create(lam, "lam-errors", code)
    r = lam.invoke(FunctionName="lam-errors", Payload=b'{"n": 21}', LogType="Tail")
    assert json.loads(r["Payload"].read()) == 42
    log = base64.b64decode(r["LogResult"]).decode()
    assert "got 21" in log and log.startswith("START RequestId:") and "REPORT RequestId:" in log

    r = lam.invoke(FunctionName="lam-errors", Payload=b'{"fail": true}')
    assert r["StatusCode"] == 200 and r["FunctionError"] == "Unhandled"
    err = json.loads(r["Payload"].read())
    assert err["errorType"] == "ValueError" and err["errorMessage"] == "bad input"

    assert lam.invoke(FunctionName="lam-errors", InvocationType="DryRun")["StatusCode"] == 204
    r = lam.invoke(FunctionName="lam-errors", InvocationType="Event", Payload=b'{"n": 5}')
    assert r["StatusCode"] == 202
    def event_ran() -> bool:
        acts = server.api.get("/v1/activations", params={"function": "lam-errors"}).json()["activations"]
        return any(a["result"] == "10" for a in acts)

    assert wait_until(event_ran, 20)

    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="lam-errors", Payload=b"not json")
    assert e.value.response["Error"]["Code"] == "InvalidRequestContentException"
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="lam-errors", Qualifier="7")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_timeout_is_a_function_error(lam: Any) -> None:
    create(lam, "lam-slow", "import time\ndef lambda_handler(event, context):\n    time.sleep(5)\n", Timeout=1)
    r = lam.invoke(FunctionName="lam-slow")
    assert r["FunctionError"] == "Unhandled"
    body = json.loads(r["Payload"].read())
    assert body["errorType"] == "Sandbox.Timedout" and "Task timed out after 1.00 seconds" in body["errorMessage"]


def test_bad_input(lam: Any, server: Any) -> None:
    with pytest.raises(ClientError) as e:
        create(lam, "lam-java", Runtime="java21", Handler="example.Handler::handleRequest")
    err = e.value.response["Error"]
    assert err["Code"] == "InvalidParameterValueException"
    assert "java21" in err["Message"] and "python3.12" in err["Message"]
    create(lam, "lam-dup")
    with pytest.raises(ClientError) as e:
        create(lam, "lam-dup")
    assert e.value.response["Error"]["Code"] == "ResourceConflictException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    with pytest.raises(ClientError) as e:
        create(lam, "lam-layers", Layers=["arn:aws:lambda:eu-west-1:123456789012:layer:x:1"])
    assert "Layers" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        create(lam, "lam-nohandler", Handler="lambda_function.missing")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "missing" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        lam.put_function_concurrency(FunctionName="lam-dup", ReservedConcurrentExecutions=1)
    assert e.value.response["Error"]["Code"] == "UnsupportedOperationException"


def test_names_that_polyfn_would_not_accept_are_mapped(lam: Any, server: Any) -> None:
    create(lam, "My_Function")
    assert lam.get_function(FunctionName="My_Function")["Configuration"]["FunctionName"] == "My_Function"
    assert server.api.get("/v1/functions/my-function").status_code == 200
    with pytest.raises(ClientError):  # case matters in Lambda names
        lam.get_function(FunctionName="my_function")
    r = lam.invoke(FunctionName="My_Function", Payload=b'{"message": "ab"}')
    assert json.loads(r["Payload"].read()) == {"message": "ba"}
    lam.delete_function(FunctionName="My_Function")


def test_signature_is_checked(server: Any) -> None:
    def client(key_id: str, secret: str) -> Any:
        return boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id=key_id,
                            aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))

    with pytest.raises(ClientError) as e:
        client("polyfn-admin", server.key + "x").list_functions()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as e:
        client("AKIAWHOEVER", server.key).list_functions()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
    r = server.http.get("/2015-03-31/functions/")
    assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert "x-amzn-requestid" in r.headers


def test_aws_context_object(lam: Any) -> None:
    create(lam, "lam-context", "def lambda_handler(event, context):\n"
           "    return [context.function_name, context.aws_request_id != '', context.memory_limit_in_mb]\n")
    r = lam.invoke(FunctionName="lam-context")
    assert json.loads(r["Payload"].read()) == ["lam-context", True, "128"]


def test_aws_cli(server: Any, tmp_path: Path) -> None:
    (tmp_path / "fn.zip").write_bytes(zip_of({"lambda_function.py": SEED_CODE}))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "polyfn-admin", "AWS_SECRET_ACCESS_KEY": server.key,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}

    def aws(*args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", server.url, "lambda", *args],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert r.returncode == 0, r.stderr
        return r

    out = json.loads(aws("create-function", "--function-name", "cli-reverse", "--runtime", "python3.12",
                         "--role", ROLE, "--handler", "lambda_function.lambda_handler",
                         "--zip-file", "fileb://fn.zip").stdout)
    assert out["State"] == "Active"
    aws("wait", "function-active", "--function-name", "cli-reverse")
    meta = json.loads(aws("invoke", "--function-name", "cli-reverse", "--payload", '{"message": "polyfn"}',
                          "out.json").stdout)
    assert meta["StatusCode"] == 200
    assert json.loads((tmp_path / "out.json").read_text()) == {"message": "nfylop"}
    names = json.loads(aws("list-functions").stdout)["Functions"]
    assert "cli-reverse" in [f["FunctionName"] for f in names]
    aws("delete-function", "--function-name", "cli-reverse")


def test_a_function_invokes_another_through_the_lambda_api(lam: Any, server: Any) -> None:
    create(lam, "lam-callee")
    caller = (
        "import json, os\n"
        "import boto3\n"
        "def lambda_handler(event, context):\n"
        "    client = boto3.client('lambda', region_name='us-east-1')\n"
        "    r = client.invoke(FunctionName='lam-callee', Payload=json.dumps(event))\n"
        "    denied = {}\n"
        "    for what, call in (('get', lambda: client.get_function(FunctionName='lam-callee')),\n"
        "                       ('list', lambda: client.list_functions()),\n"
        "                       ('delete', lambda: client.delete_function(FunctionName='lam-callee'))):\n"
        "        try:\n"
        "            call()\n"
        "            denied[what] = 'allowed'\n"
        "        except client.exceptions.ClientError as e:\n"
        "            denied[what] = e.response['Error']['Code']\n"
        "    return {'endpoint': os.environ['AWS_ENDPOINT_URL_LAMBDA'], 'result': json.loads(r['Payload'].read()),\n"
        "            'denied': denied}\n"
    )
    # No credentials given: the instance's own key (scope invoke, from the node's key store) signs the call.
    create(lam, "lam-caller", caller, Timeout=30, MemorySize=512)
    r = lam.invoke(FunctionName="lam-caller", Payload=b'{"message": "nested"}')
    body = json.loads(r["Payload"].read())
    assert "FunctionError" not in r, body
    # the instance's key invokes; it never reads another function's code or configuration, nor lists them
    assert body == {"endpoint": server.url, "result": {"message": "detsen"},
                    "denied": {"get": "AccessDeniedException", "list": "AccessDeniedException",
                               "delete": "AccessDeniedException"}}


def test_boto3_example_script(server: Any) -> None:
    script = Path(__file__).resolve().parents[2] / "examples" / "compat" / "lambda-boto3" / "run.py"
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "POLYFN_URL": server.url, "POLYFN_API_KEY": server.key})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "{'message': 'olleh'}"


def test_nodejs_runtime(lam: Any) -> None:
    code = "exports.handler = async (event, context) => ({message: event.message.split('').reverse().join(''), " \
           "fn: context.functionName});\n"
    cfg = lam.create_function(FunctionName="lam-node", Runtime="nodejs20.x", Role=ROLE, Handler="index.handler",
                              Code={"ZipFile": zip_of({"index.js": code})})
    assert cfg["Runtime"] == "nodejs20.x"
    r = lam.invoke(FunctionName="lam-node", Payload=b'{"message": "node"}')
    assert json.loads(r["Payload"].read()) == {"message": "edon", "fn": "lam-node"}
