"""Temporary storage credentials end to end: a function (boto3's `sts.assume_role`, unmodified) hands a signed-in
user credentials limited to their own prefix; the real `ali-oss` npm client uploads with them; everything
outside the prefix, without the session token or with a forged key id is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from .conftest import Server, start_server
from .jsclients import run_node

GRANT = """
import json
import os

import boto3


def handler(event, context):
    uid = context.identity.cognito_identity_id  # the signed-in app user (polyfn.apps)
    if uid is None:
        raise PermissionError("sign in first")
    prefix = f"users/{uid}/"
    policy = {"Version": "1", "Statement": [{"Effect": "Allow", "Action": ["oss:PutObject"],
                                              "Resource": [f"acs:oss:*:*:photos/{prefix}*"]}]}
    creds = boto3.client("sts").assume_role(RoleArn="acs:ram::1:role/uploader", RoleSessionName=uid,
                                            Policy=json.dumps(policy), DurationSeconds=900)["Credentials"]
    return {"AccessKeyId": creds["AccessKeyId"], "AccessKeySecret": creds["SecretAccessKey"],
            "SecurityToken": creds["SessionToken"], "Expiration": creds["Expiration"].isoformat(),
            "bucket": "photos", "prefix": prefix, "endpoint": os.environ["AWS_ENDPOINT_URL_S3"]}
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-sts"))
    s.api.post("/v1/apps", json={"id": "oss-app"}).raise_for_status()
    s.deploy("oss-grant", {"handler.py": GRANT}, flavor="aws", handler="handler.handler", auth="app")
    yield s
    s.stop()


def admin_s3(node: Server) -> object:
    key = node.api.post("/v1/keys", json={"scope": "admin"}).json()
    url = json.loads((node.data_dir / "server.json").read_text())["storage_url"]
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key["access_key_id"],
                        aws_secret_access_key=key["secret_access_key"])


def test_ali_oss_uploads_with_credentials_a_function_handed_out(node: Server) -> None:
    s3 = admin_s3(node)
    s3.create_bucket(Bucket="photos")
    out = run_node("interop/alioss.mjs", {"POLYFN_URL": node.url, "POLYFN_APP": "oss-app"})
    assert out["mine"] == {"ok": True, "status": 200}
    assert out["outside"]["ok"] is False and out["outside"]["code"] == "AccessDenied"
    assert out["read"]["ok"] is False and out["read"]["status"] == 403  # the policy allowed PutObject only
    assert out["noToken"]["ok"] is False and out["noToken"]["status"] == 403
    assert out["forged"]["ok"] is False and out["forged"]["code"] == "InvalidAccessKeyId"
    body = s3.get_object(Bucket="photos", Key=out["prefix"] + "hello.txt")["Body"].read()
    assert body == b"hello from ali-oss"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="photos").get("Contents", [])]
    assert keys == [out["prefix"] + "hello.txt"]


def test_assume_role_refuses_what_it_cannot_limit(node: Server) -> None:
    key = node.api.post("/v1/keys", json={"scope": "invoke"}).json()
    sts = boto3.client("sts", endpoint_url=node.url, region_name="us-east-1", aws_access_key_id=key["access_key_id"],
                       aws_secret_access_key=key["secret_access_key"])
    for policy in ('{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::*"}]}',
                   '{"Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "arn:aws:s3:::b/p*"}]}',
                   "not json"):
        with pytest.raises(sts.exceptions.MalformedPolicyDocumentException):
            sts.assume_role(RoleArn="arn:aws:iam::0:role/x", RoleSessionName="s1", Policy=policy)
    ok = sts.assume_role(RoleArn="arn:aws:iam::0:role/x", RoleSessionName="s1", DurationSeconds=900,
                         Policy='{"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", '
                                '"Resource": "arn:aws:s3:::photos/shared/*"}]}')["Credentials"]
    assert ok["AccessKeyId"].startswith("PFTS")
    # read-only credentials cannot write, even inside their prefix
    url = json.loads((node.data_dir / "server.json").read_text())["storage_url"]
    temp = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ok["AccessKeyId"],
                        aws_secret_access_key=ok["SecretAccessKey"], aws_session_token=ok["SessionToken"])
    with pytest.raises(temp.exceptions.ClientError) as e:
        temp.put_object(Bucket="photos", Key="shared/x.txt", Body=b"x")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    # revoking the key that asked ends the credentials it handed out
    node.api.delete(f"/v1/keys/{key['access_key_id']}").raise_for_status()
    with pytest.raises(temp.exceptions.ClientError) as e:
        temp.get_object(Bucket="photos", Key="shared/x.txt")
    assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"
