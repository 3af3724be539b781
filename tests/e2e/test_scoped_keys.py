"""One key, every client: `polyfn keys create --scope S [--function F] --json` credentials used as a bearer API
key, as SigV4 credentials for boto3's `lambda` client and the `aws` CLI, and for boto3's S3 client, each
allowed exactly what its scope allows (docs/security.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .storage_helpers import s3_client
from .test_lambda_api import ROLE, SEED_CODE, create, zip_of


def make_key(server: Any, scope: str, function: str | None = None) -> dict[str, str]:
    args = ["keys", "create", "--scope", scope, "--json"] + (["--function", function] if function else [])
    key = json.loads(server.cli(*args, check=True).stdout)
    assert set(key) == {"access_key_id", "secret_access_key"}
    return key


def lambda_client(server: Any, key: dict[str, str]) -> Any:
    return boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"],
                        config=Config(retries={"max_attempts": 1}, read_timeout=60))


def refused(call: Any, code: str, status: int = 403) -> ClientError:
    with pytest.raises(ClientError) as e:
        call()
    err = e.value.response
    assert err["Error"]["Code"] == code, err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == status
    assert err["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == code
    return e.value


@pytest.fixture(scope="module")
def admin(server: Any) -> Any:
    lam = lambda_client(server, {"access_key_id": "polyfn-admin", "secret_access_key": server.key})
    create(lam, "sk-target")
    create(lam, "sk-other")
    return lam


def test_invoke_scope_invokes_but_cannot_create(server: Any, admin: Any) -> None:
    key = make_key(server, "invoke")
    lam = lambda_client(server, key)
    r = lam.invoke(FunctionName="sk-target", Payload=b'{"message": "abc"}')
    assert json.loads(r["Payload"].read()) == {"message": "cba"}
    e = refused(lambda: create(lam, "sk-denied"), "AccessDeniedException")
    assert "lambda:CreateFunction" in str(e) and "'invoke'" in str(e)
    refused(lambda: lam.delete_function(FunctionName="sk-target"), "AccessDeniedException")
    assert lam.get_function(FunctionName="sk-target")["Configuration"]["FunctionName"] == "sk-target"
    # the same pair is a bearer API key
    r2 = server.http.post("/v1/functions/sk-target/invoke", json={"message": "xy"},
                          headers={"authorization": f"Bearer {key['access_key_id']}:{key['secret_access_key']}"})
    assert r2.status_code == 200 and r2.json() == {"message": "yx"}
    assert server.http.post("/v1/functions", json={"name": "x"}, headers={
        "authorization": f"Bearer {key['access_key_id']}:{key['secret_access_key']}"}).status_code == 403


def test_read_scope_reads_only(server: Any, admin: Any) -> None:
    lam = lambda_client(server, make_key(server, "read"))
    assert "sk-target" in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    refused(lambda: lam.invoke(FunctionName="sk-target", Payload=b"{}"), "AccessDeniedException")


def test_deploy_scope_creates_and_deletes(server: Any, admin: Any) -> None:
    lam = lambda_client(server, make_key(server, "deploy"))
    assert create(lam, "sk-deployed")["FunctionName"] == "sk-deployed"
    lam.delete_function(FunctionName="sk-deployed")


def test_function_bound_key_acts_on_its_function_only(server: Any, admin: Any) -> None:
    lam = lambda_client(server, make_key(server, "deploy", "sk-target"))
    assert lam.invoke(FunctionName="sk-target", Payload=b'{"message": "ok"}')["StatusCode"] == 200
    e = refused(lambda: lam.invoke(FunctionName="sk-other", Payload=b"{}"), "AccessDeniedException")
    assert "bound to function 'sk-target'" in str(e)
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["sk-target"]
    refused(lambda: create(lam, "sk-new"), "AccessDeniedException")


def test_revoked_key_is_refused(server: Any, admin: Any) -> None:
    key = make_key(server, "invoke")
    lam = lambda_client(server, key)
    assert lam.invoke(FunctionName="sk-target", Payload=b'{"message": "a"}')["StatusCode"] == 200
    server.cli("keys", "revoke", key["access_key_id"], check=True)
    refused(lambda: lam.invoke(FunctionName="sk-target", Payload=b"{}"), "UnrecognizedClientException")
    r = server.http.post("/v1/functions/sk-target/invoke", json={},
                         headers={"authorization": f"Bearer {key['access_key_id']}:{key['secret_access_key']}"})
    assert r.status_code == 401
    listed = {k["access_key_id"]: k for k in json.loads(server.cli("keys", "list", "--json", check=True).stdout)}
    assert listed[key["access_key_id"]]["revoked_at"] and listed[key["access_key_id"]]["sigv4"] is True


def test_aws_cli_with_scoped_keys(server: Any, admin: Any, tmp_path: Path) -> None:
    (tmp_path / "fn.zip").write_bytes(zip_of({"lambda_function.py": SEED_CODE}))

    def aws(key: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": key["access_key_id"],
               "AWS_SECRET_ACCESS_KEY": key["secret_access_key"], "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
        return subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", server.url, "lambda", *args],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    invoker, deployer = make_key(server, "invoke"), make_key(server, "deploy")
    r = aws(invoker, "invoke", "--function-name", "sk-target", "--payload", '{"message": "cli"}', "out.json")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "out.json").read_text()) == {"message": "ilc"}
    create_args = ("create-function", "--function-name", "sk-cli", "--runtime", "python3.12", "--role", ROLE,
                   "--handler", "lambda_function.lambda_handler", "--zip-file", "fileb://fn.zip")
    r = aws(invoker, *create_args)
    assert r.returncode != 0 and "AccessDeniedException" in r.stderr, r.stderr
    r = aws(deployer, *create_args)
    assert r.returncode == 0, r.stderr
    assert aws(deployer, "delete-function", "--function-name", "sk-cli").returncode == 0


def test_s3_with_scoped_keys(server: Any) -> None:
    writer = s3_client(server, make_key(server, "invoke"))
    reader = s3_client(server, make_key(server, "read"))
    writer.create_bucket(Bucket="sk-bucket")
    writer.put_object(Bucket="sk-bucket", Key="a.txt", Body=b"hello")
    assert reader.get_object(Bucket="sk-bucket", Key="a.txt")["Body"].read() == b"hello"
    assert reader.head_object(Bucket="sk-bucket", Key="a.txt")["ContentLength"] == 5
    assert [o["Key"] for o in reader.list_objects_v2(Bucket="sk-bucket")["Contents"]] == ["a.txt"]
    for call in (lambda: reader.put_object(Bucket="sk-bucket", Key="b.txt", Body=b"x"),
                 lambda: reader.delete_object(Bucket="sk-bucket", Key="a.txt"),
                 lambda: reader.create_bucket(Bucket="sk-other-bucket")):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "AccessDenied"
    writer.delete_object(Bucket="sk-bucket", Key="a.txt")
    revoked = make_key(server, "invoke")
    server.cli("keys", "revoke", revoked["access_key_id"], check=True)
    with pytest.raises(ClientError) as e:
        s3_client(server, revoked).list_objects_v2(Bucket="sk-bucket")
    assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"
