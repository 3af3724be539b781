"""Table change triggers on a real server: a Lambda-style function gets DynamoDB Streams batches (INSERT, MODIFY,
REMOVE in order, images per the view type), TTL expiry arrives as REMOVE marked as a TTL deletion, and a
`batchItemFailures` answer has the batch retried from that record on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from .conftest import Server, start_server, wait_until

RECORDER = '''
import json, os, time

def handler(event, context):
    path = os.path.join("/tmp", "polyfn-streams-" + os.environ["TEST_TAG"] + ".jsonl")
    fail = []
    with open(path, "a") as f:
        for r in event["Records"]:
            d = r["dynamodb"]
            if d.get("NewImage", {}).get("fail") == {"BOOL": True} and not os.path.exists(path + ".failed"):
                open(path + ".failed", "w").close()
                fail.append({"itemIdentifier": d["SequenceNumber"]})
                break
            f.write(json.dumps({"name": r["eventName"], "keys": d["Keys"], "new": d.get("NewImage"),
                                "old": d.get("OldImage"), "seq": d["SequenceNumber"],
                                "ttl": r.get("userIdentity", {}).get("principalId")}) + "\\n")
    return {"batchItemFailures": fail}
'''


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Server]:
    s = start_server(tmp_path / "data", env={"POLYFN_DB_SWEEP_INTERVAL": "0.3"}, host_fs=True)
    yield s
    s.stop()


def test_changes_reach_the_function_in_order(node: Server, tmp_path: Path) -> None:
    tag = tmp_path.name
    log = Path("/tmp") / f"polyfn-streams-{tag}.jsonl"
    ddb = boto3.client("dynamodb", endpoint_url=node.url, region_name="us-east-1", aws_access_key_id="polyfn-admin",
                       aws_secret_access_key=node.key, config=Config(retries={"max_attempts": 1}))
    ddb.create_table(TableName="watched", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    ddb.update_time_to_live(TableName="watched", TimeToLiveSpecification={"Enabled": True,
                                                                          "AttributeName": "expires"})
    node.deploy("recorder", {"handler.py": RECORDER}, handler="handler.handler", flavor="aws",
                env={"TEST_TAG": tag})
    r = node.cli("trigger", "add", "recorder", "dynamodb", "--table", "watched", "-o", "batch_size=10")
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: any(t["health"]["state"] == "connected" for t in node.api.get(
        "/v1/triggers").json()["triggers"]), 20)
    try:
        ddb.put_item(TableName="watched", Item={"id": {"S": "a"}, "v": {"N": "1"}})
        ddb.update_item(TableName="watched", Key={"id": {"S": "a"}}, UpdateExpression="SET v = :v",
                        ExpressionAttributeValues={":v": {"N": "2"}})
        ddb.put_item(TableName="watched", Item={"id": {"S": "b"}, "fail": {"BOOL": True}})  # fails once
        ddb.delete_item(TableName="watched", Key={"id": {"S": "a"}})
        ddb.put_item(TableName="watched", Item={"id": {"S": "old"}, "expires": {"N": "1"}})  # long expired

        def records() -> list[dict[str, Any]]:
            return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

        assert wait_until(lambda: len(records()) >= 6, 30), records()
        got = records()
        on_a = [(r["name"], r["new"], r["old"]) for r in got if r["keys"] == {"id": {"S": "a"}}]
        assert on_a == [("INSERT", {"id": {"S": "a"}, "v": {"N": "1"}}, None),
                        ("MODIFY", {"id": {"S": "a"}, "v": {"N": "2"}}, {"id": {"S": "a"}, "v": {"N": "1"}}),
                        ("REMOVE", None, {"id": {"S": "a"}, "v": {"N": "2"}})]
        assert [r["name"] for r in got if r["keys"] == {"id": {"S": "b"}}] == ["INSERT"]  # retried, delivered once
        seqs = [int(r["seq"]) for r in got]
        assert seqs == sorted(seqs)
        ttl = [r for r in got if r["keys"] == {"id": {"S": "old"}}]
        assert [(r["name"], r["ttl"]) for r in ttl] == [("INSERT", None), ("REMOVE", "dynamodb.amazonaws.com")]
        assert "Item" not in ddb.get_item(TableName="watched", Key={"id": {"S": "old"}})
    finally:
        for p in (log, Path(str(log) + ".failed")):
            p.unlink(missing_ok=True)
