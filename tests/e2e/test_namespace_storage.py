"""A namespace's stored bytes and database items against a real node: the `storage_bytes`, `db_items` and
`db_bytes` quotas answer in each face's own terms (S3: MinIO's `XMinioAdminBucketQuotaExceeded`, DynamoDB:
`LimitExceededException`), `ns describe` shows the use, the use is right after a restart, and what a namespace
stores, reads, writes and runs through workflows is metered (`GET /v1/usage`, `/metrics`, a price table)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Server, start_server, wait_until

ENV = {"POLYFN_STORAGE_SAMPLE_S": "1"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("nsuse") / "data", env=ENV)
    yield s
    s.stop()


def _ns(node: Server, name: str, **quotas: Any) -> str:
    r = node.api.post("/v1/namespaces", json={"name": name, "quotas": quotas})
    assert r.status_code == 201, r.text
    r = node.api.post("/v1/keys", json={"scope": "deploy", "namespace": name})
    assert r.status_code == 201, r.text
    return f"{r.json()['access_key_id']}:{r.json()['secret_access_key']}"


def _aws(node: Server, service: str, key: str) -> Any:
    import boto3
    from botocore.config import Config

    key_id, _, secret = key.partition(":")
    endpoint = node.api.get("/v1/storage").json()["endpoint"] if service == "s3" else node.url
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key_id,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))


def _use(node: Server, ns: str) -> dict[str, Any]:
    r = node.api.get(f"/v1/namespaces/{ns}")
    assert r.status_code == 200, r.text
    return r.json()["usage"]


def _refused(call: Any, code: str, status: int) -> str:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as e:
        call()
    err = e.value.response["Error"]
    assert err["Code"] == code and e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status, e.value.response
    return str(err["Message"])


def test_the_storage_bytes_quota_refuses_a_write_that_would_pass_it_with_minios_error(node: Server) -> None:
    s3 = _aws(node, "s3", _ns(node, "st-q", storage_bytes=1000))
    s3.create_bucket(Bucket="st-q-files")
    s3.put_object(Bucket="st-q-files", Key="a", Body=b"x" * 600)
    assert _use(node, "st-q")["storage_bytes"] == {"limit": 1000, "used": 600}
    msg = _refused(lambda: s3.put_object(Bucket="st-q-files", Key="b", Body=b"y" * 600),
                   "XMinioAdminBucketQuotaExceeded", 400)
    assert "storage_bytes" in msg and "600" in msg and "1000" in msg
    assert _refused(lambda: s3.head_object(Bucket="st-q-files", Key="b"), "404", 404)  # nothing was written
    # a multipart upload is checked when it completes
    up = s3.create_multipart_upload(Bucket="st-q-files", Key="big")["UploadId"]
    part = s3.upload_part(Bucket="st-q-files", Key="big", UploadId=up, PartNumber=1, Body=b"z" * 500)
    _refused(lambda: s3.complete_multipart_upload(
        Bucket="st-q-files", Key="big", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}), "XMinioAdminBucketQuotaExceeded", 400)
    s3.put_object(Bucket="st-q-files", Key="a", Body=b"x" * 900)  # a replacement counts only what it adds
    assert _use(node, "st-q")["storage_bytes"]["used"] == 900
    _refused(lambda: s3.copy_object(Bucket="st-q-files", Key="a2", CopySource={"Bucket": "st-q-files", "Key": "a"}),
             "XMinioAdminBucketQuotaExceeded", 400)
    s3.delete_object(Bucket="st-q-files", Key="a")
    assert _use(node, "st-q")["storage_bytes"]["used"] == 0
    s3.put_object(Bucket="st-q-files", Key="b", Body=b"y" * 600)
    # a quota lowered below the use: no write that grows it, but smaller replacements and deletes still go
    assert node.api.patch("/v1/namespaces/st-q", json={"quotas": {"storage_bytes": 100}}).status_code == 200
    _refused(lambda: s3.put_object(Bucket="st-q-files", Key="c", Body=b"1"), "XMinioAdminBucketQuotaExceeded", 400)
    s3.put_object(Bucket="st-q-files", Key="b", Body=b"y" * 50)
    assert _use(node, "st-q")["storage_bytes"] == {"limit": 100, "used": 50}


def test_versions_count_until_they_are_deleted(node: Server) -> None:
    s3 = _aws(node, "s3", _ns(node, "st-v", storage_bytes=10_000))
    s3.create_bucket(Bucket="st-v-files")
    s3.put_bucket_versioning(Bucket="st-v-files", VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket="st-v-files", Key="k", Body=b"1" * 100)["VersionId"]
    s3.put_object(Bucket="st-v-files", Key="k", Body=b"2" * 200)
    assert _use(node, "st-v")["storage_bytes"]["used"] == 300
    s3.delete_object(Bucket="st-v-files", Key="k")  # a delete marker: the versions stay
    assert _use(node, "st-v")["storage_bytes"]["used"] == 300
    s3.delete_object(Bucket="st-v-files", Key="k", VersionId=v1)
    assert _use(node, "st-v")["storage_bytes"]["used"] == 200


def test_the_database_quotas_refuse_with_dynamodbs_limit_exceeded(node: Server) -> None:
    ddb = _aws(node, "dynamodb", _ns(node, "db-q", db_items=2))
    ddb.create_table(TableName="orders", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    for i in ("1", "2"):
        ddb.put_item(TableName="orders", Item={"id": {"S": i}, "n": {"N": "1"}})
    msg = _refused(lambda: ddb.put_item(TableName="orders", Item={"id": {"S": "3"}}), "LimitExceededException", 400)
    assert "db_items" in msg and "2 used of 2" in msg
    assert ddb.get_item(TableName="orders", Key={"id": {"S": "3"}}).get("Item") is None
    ddb.put_item(TableName="orders", Item={"id": {"S": "1"}, "n": {"N": "2"}})  # a replacement adds no item
    ddb.update_item(TableName="orders", Key={"id": {"S": "2"}}, UpdateExpression="SET n = n + :one",
                    ExpressionAttributeValues={":one": {"N": "1"}})
    _refused(lambda: ddb.batch_write_item(RequestItems={"orders": [
        {"PutRequest": {"Item": {"id": {"S": "4"}}}}, {"PutRequest": {"Item": {"id": {"S": "5"}}}}]}),
        "LimitExceededException", 400)
    _refused(lambda: ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": "orders", "Item": {"id": {"S": "6"}}}}]), "LimitExceededException", 400)
    assert ddb.scan(TableName="orders")["Count"] == 2
    use = _use(node, "db-q")
    assert use["db_items"] == {"limit": 2, "used": 2} and use["db_bytes"]["used"] > 0
    ddb.delete_item(TableName="orders", Key={"id": {"S": "1"}})
    ddb.put_item(TableName="orders", Item={"id": {"S": "3"}})
    assert _use(node, "db-q")["db_items"]["used"] == 2
    size = _use(node, "db-q")["db_bytes"]["used"]
    assert node.api.patch("/v1/namespaces/db-q", json={"quotas": {"db_items": None, "db_bytes": size + 10}}
                          ).status_code == 200
    msg = _refused(lambda: ddb.put_item(TableName="orders", Item={"id": {"S": "7"}, "pad": {"S": "p" * 100}}),
                   "LimitExceededException", 400)
    assert "db_bytes" in msg


def test_use_is_metered_and_survives_a_restart(tmp_path: Path) -> None:
    node = start_server(tmp_path / "data", env=ENV)
    try:
        key = _ns(node, "meter")
        s3, ddb = _aws(node, "s3", key), _aws(node, "dynamodb", key)
        s3.create_bucket(Bucket="meter-files")
        s3.put_object(Bucket="meter-files", Key="k", Body=b"m" * 4096)
        ddb.create_table(TableName="things", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        for i in range(3):
            ddb.put_item(TableName="things", Item={"id": {"S": str(i)}})
        ddb.get_item(TableName="things", Key={"id": {"S": "0"}})
        before = _use(node, "meter")
        assert before["storage_bytes"]["used"] == 4096 and before["db_items"]["used"] == 3

        def usage() -> dict[str, Any]:
            r = node.api.get("/v1/usage", params={"by": "function", "prices": "lambda"},
                             headers={"x-polyfn-namespace": "meter"})
            assert r.status_code == 200, r.text
            return {u["function"]: u for u in r.json()["usage"]} | {"total": r.json()["total"]}

        assert wait_until(lambda: usage().get("(storage)", {}).get("storage_byte_s", 0) >= 4096, timeout=15)
        u = usage()
        assert u["(database)"]["db_writes"] == 3 and u["(database)"]["db_reads"] == 1
        assert u["total"]["gb_months"] > 0 and u["total"]["cost"] > 0
        metrics = node.api.get("/metrics", params={"namespace": "meter"}).text
        assert 'polyfn_db_writes_total{function="(database)"} 3' in metrics
        assert 'polyfn_storage_byte_seconds_total{function="(storage)"}' in metrics
    finally:
        node.stop()
    node = start_server(tmp_path / "data", env=ENV)
    try:
        after = _use(node, "meter")
        assert after["storage_bytes"]["used"] == 4096 and after["db_items"] == before["db_items"]
        assert after["db_bytes"] == before["db_bytes"]
    finally:
        node.stop()


def test_workflow_transitions_are_metered(node: Server) -> None:
    import json

    definition = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "End": True}}}
    sfn = _aws(node, "stepfunctions", f"polyfn-admin:{node.key}")
    arn = sfn.create_state_machine(name="metered", definition=json.dumps(definition),
                                   roleArn="arn:aws:iam::000000000000:role/x")["stateMachineArn"]
    ex = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    assert wait_until(lambda: sfn.describe_execution(executionArn=ex)["status"] == "SUCCEEDED", timeout=20)

    def transitions() -> int:
        rows = node.api.get("/v1/usage", params={"by": "function"}).json()["usage"]
        return sum(r["transitions"] for r in rows if r["function"] == "(workflows)")

    assert wait_until(lambda: transitions() >= 2, timeout=10)
    time.sleep(0.2)
    assert transitions() == 2
