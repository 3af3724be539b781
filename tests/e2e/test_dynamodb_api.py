"""The DynamoDB face of a real `polyfn serve`, through boto3's client and resource and the `aws` CLI."""

from __future__ import annotations

import json
import os
import subprocess
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.config import Config
from botocore.exceptions import ClientError

from .conftest import Server


def creds(server: Server, akid: str = "polyfn-admin", secret: str | None = None) -> dict[str, Any]:
    return {"endpoint_url": server.url, "region_name": "us-east-1", "aws_access_key_id": akid,
            "aws_secret_access_key": secret or server.key,
            "config": Config(retries={"max_attempts": 1})}


@pytest.fixture(scope="module")
def ddb(server: Server) -> Any:
    return boto3.client("dynamodb", **creds(server))


def code(e: pytest.ExceptionInfo[ClientError]) -> str:
    return str(e.value.response["Error"]["Code"])


def test_client_tables_items_and_errors(ddb: Any) -> None:
    ddb.create_table(TableName="orders", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "N"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}])
    ddb.get_waiter("table_exists").wait(TableName="orders")
    assert "orders" in ddb.list_tables()["TableNames"]
    for i in range(5):
        ddb.put_item(TableName="orders", Item={"pk": {"S": "u1"}, "sk": {"N": str(i)}, "total": {"N": f"{i}.50"}})
    got = ddb.get_item(TableName="orders", Key={"pk": {"S": "u1"}, "sk": {"N": "3"}})
    assert got["Item"]["total"] == {"N": "3.5"}
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName="orders", Item={"pk": {"S": "u1"}, "sk": {"N": "3"}},
                     ConditionExpression="attribute_not_exists(pk)", ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert code(e) == "ConditionalCheckFailedException"
    assert e.value.response["Item"]["total"] == {"N": "3.5"}
    page = ddb.query(TableName="orders", KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
                     ExpressionAttributeValues={":p": {"S": "u1"}, ":a": {"N": "1"}, ":b": {"N": "3"}},
                     ScanIndexForward=False)
    assert [i["sk"]["N"] for i in page["Items"]] == ["3", "2", "1"]
    paginator = ddb.get_paginator("scan")
    assert sum(p["Count"] for p in paginator.paginate(TableName="orders", PaginationConfig={"PageSize": 2})) == 5
    with pytest.raises(ClientError) as e:
        ddb.get_item(TableName="nope", Key={"pk": {"S": "x"}})
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName="orders", Key={"pk": {"S": "u1"}, "sk": {"N": "1"}}, UpdateExpression="SET a =")
    assert code(e) == "ValidationException" and "Syntax error" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        ddb.transact_write_items(TransactItems=[
            {"ConditionCheck": {"TableName": "orders", "Key": {"pk": {"S": "u1"}, "sk": {"N": "1"}},
                                "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Put": {"TableName": "orders", "Item": {"pk": {"S": "u2"}, "sk": {"N": "1"}}}}])
    assert code(e) == "TransactionCanceledException"
    assert [r["Code"] for r in e.value.response["CancellationReasons"]] == ["ConditionalCheckFailed", "None"]
    assert "Item" not in ddb.get_item(TableName="orders", Key={"pk": {"S": "u2"}, "sk": {"N": "1"}})
    out = ddb.execute_statement(Statement='SELECT * FROM "orders" WHERE pk = ? AND sk >= ?',
                                Parameters=[{"S": "u1"}, {"N": "3"}])
    assert sorted(i["sk"]["N"] for i in out["Items"]) == ["3", "4"]
    ddb.execute_statement(Statement="INSERT INTO \"orders\" VALUE {'pk': 'u9', 'sk': 1, 'tags': <<'a', 'b'>>}")
    with pytest.raises(ClientError) as e:
        ddb.execute_statement(Statement="INSERT INTO \"orders\" VALUE {'pk': 'u9', 'sk': 1}")
    assert code(e) == "DuplicateItemException"
    ddb.execute_statement(Statement="UPDATE \"orders\" SET note = 'hi' WHERE pk = 'u9' AND sk = 1")
    assert ddb.get_item(TableName="orders", Key={"pk": {"S": "u9"}, "sk": {"N": "1"}})["Item"]["note"] == {"S": "hi"}
    ddb.execute_statement(Statement="DELETE FROM \"orders\" WHERE pk = 'u9' AND sk = 1")


def test_resource_with_python_types(server: Server) -> None:
    res = boto3.resource("dynamodb", **creds(server))
    table = res.create_table(TableName="notes", BillingMode="PAY_PER_REQUEST",
                             AttributeDefinitions=[{"AttributeName": "user", "AttributeType": "S"},
                                                   {"AttributeName": "at", "AttributeType": "S"}],
                             KeySchema=[{"AttributeName": "user", "KeyType": "HASH"},
                                        {"AttributeName": "at", "KeyType": "RANGE"}])
    table.wait_until_exists()
    with table.batch_writer() as batch:
        for i in range(30):
            batch.put_item(Item={"user": "ann", "at": f"2024-01-{i + 1:02d}", "score": Decimal(i) / 4,
                                 "tags": {"x", "y"}, "meta": {"ok": True, "n": None, "list": [1, "two"]}})
    got = table.query(KeyConditionExpression=Key("user").eq("ann") & Key("at").begins_with("2024-01-1"),
                      FilterExpression=Attr("score").gte(Decimal("3")))
    assert [i["at"] for i in got["Items"]] == [f"2024-01-1{d}" for d in range(3, 10)]
    item = table.get_item(Key={"user": "ann", "at": "2024-01-05"})["Item"]
    assert item["score"] == Decimal("1") and item["tags"] == {"x", "y"} and item["meta"]["list"] == [1, "two"]
    table.update_item(Key={"user": "ann", "at": "2024-01-05"}, UpdateExpression="ADD visits :one",
                      ExpressionAttributeValues={":one": 1})
    assert table.get_item(Key={"user": "ann", "at": "2024-01-05"})["Item"]["visits"] == 1
    table.delete()


def test_aws_cli(server: Server, tmp_path: Any) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "polyfn-admin", "AWS_SECRET_ACCESS_KEY": server.key,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}

    def aws(*args: str) -> dict[str, Any]:
        r = subprocess.run(["aws", "dynamodb", *args, "--endpoint-url", server.url, "--output", "json"],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else {}

    aws("create-table", "--table-name", "cli-table", "--billing-mode", "PAY_PER_REQUEST",
        "--attribute-definitions", "AttributeName=id,AttributeType=S", "--key-schema", "AttributeName=id,KeyType=HASH")
    aws("put-item", "--table-name", "cli-table", "--item", '{"id": {"S": "one"}, "n": {"N": "7"}}')
    assert aws("get-item", "--table-name", "cli-table", "--key", '{"id": {"S": "one"}}')["Item"]["n"] == {"N": "7"}
    assert "cli-table" in aws("list-tables")["TableNames"]
    aws("update-time-to-live", "--table-name", "cli-table", "--time-to-live-specification",
        "Enabled=true,AttributeName=expires")
    assert aws("describe-time-to-live", "--table-name", "cli-table")["TimeToLiveDescription"]["AttributeName"] == \
        "expires"


def test_scoped_keys(server: Server, ddb: Any) -> None:
    ddb.create_table(TableName="secrets-tab", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    r = server.api.post("/v1/keys", json={"scope": "read"})
    assert r.status_code in (200, 201), r.text
    k = r.json()
    reader = boto3.client("dynamodb", **creds(server, k["access_key_id"], k["secret_access_key"]))
    assert reader.get_item(TableName="secrets-tab", Key={"id": {"S": "x"}}).get("Item") is None
    with pytest.raises(ClientError) as e:
        reader.put_item(TableName="secrets-tab", Item={"id": {"S": "x"}})
    assert code(e) == "AccessDeniedException"
    bad = boto3.client("dynamodb", **creds(server, k["access_key_id"], "wrong-secret"))
    with pytest.raises(ClientError) as e:
        bad.list_tables()
    assert code(e) == "InvalidSignatureException"
    # a key this node does not know: the key store is reloaded, then the key is refused (twice: the same answer)
    unknown = boto3.client("dynamodb", **creds(server, "PFAKNOTAKEY0000000", "any-secret"))
    for _ in range(2):
        with pytest.raises(ClientError) as e:
            unknown.list_tables()
        assert code(e) == "UnrecognizedClientException"


FN = '''
import os

def handler(event, context):
    import boto3
    from botocore.exceptions import ClientError
    ddb = boto3.client("dynamodb")  # endpoint and credentials come from the instance's environment
    out = {"endpoint": os.environ.get("AWS_ENDPOINT_URL_DYNAMODB", "")}
    try:
        ddb.put_item(TableName=event["table"], Item={"id": {"S": "from-fn"}})
        out["put"] = "ok"
    except ClientError as e:
        out["put"] = e.response["Error"]["Code"]
    return out
'''


def test_function_reaches_only_granted_tables(server: Server, ddb: Any) -> None:
    for name in ("fn-granted", "fn-other"):
        ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    server.deploy("ddb-writer", {"handler.py": FN}, handler="handler.handler", flavor="aws")
    r = server.api.put("/v1/db/grants/ddb-writer/fn-granted", json={"access": "write"})
    assert r.status_code == 200, r.text

    def call(table: str) -> dict[str, Any]:
        r = server.api.post("/v1/functions/ddb-writer/invoke", json={"table": table})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    first = call("fn-granted")
    if first.get("put") is None:
        pytest.fail(f"the function could not use boto3: {first}")
    assert first == {"endpoint": server.url, "put": "ok"}
    assert ddb.get_item(TableName="fn-granted", Key={"id": {"S": "from-fn"}})["Item"]
    assert call("fn-other")["put"] == "AccessDeniedException"
    assert server.api.get("/v1/db/grants").json()["grants"] == [
        {"function": "ddb-writer", "table": "fn-granted", "access": "write"}]


def test_cli_tables_items_export_import(server: Server, ddb: Any, tmp_path: Any) -> None:
    ddb.create_table(TableName="cli-backup", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    server.cli("db", "put", "cli-backup", '{"id": {"S": "k1"}, "n": {"N": "3"}}', check=True)
    for i in range(30):
        ddb.put_item(TableName="cli-backup", Item={"id": {"S": f"x{i}"}})
    assert "cli-backup" in server.cli("db", "tables", check=True).stdout.split()
    assert json.loads(server.cli("db", "get", "cli-backup", '{"id": {"S": "k1"}}', check=True).stdout)["n"] == \
        {"N": "3"}
    got = server.cli("db", "query", "cli-backup", "id = :k", "--values", '{":k": {"S": "k1"}}', check=True)
    assert json.loads(got.stdout)["id"] == {"S": "k1"}
    dump = server.cli("db", "export", "cli-backup", check=True).stdout
    (tmp_path / "backup.jsonl").write_text(dump)
    assert len(dump.splitlines()) == 32
    r = server.cli("db", "import", str(tmp_path / "backup.jsonl"), "--table", "cli-restored", check=True)
    assert "imported 31 items" in r.stdout
    assert ddb.describe_table(TableName="cli-restored")["Table"]["ItemCount"] == 31
    bad = server.cli("db", "get", "nope-table", '{"id": {"S": "k1"}}')
    assert bad.returncode != 0 and "ResourceNotFoundException" in bad.stderr


def test_raw_http_keep_alive_pipelining_and_close(server: Server, ddb: Any) -> None:
    """The face answered straight from the node's HTTP protocol (gateway/direct.py) and, for a request pipelined
    behind a pending answer, through ASGI: the same answers, with the checksum and a request id each, in order,
    on one keep-alive connection; `Connection: close` and HTTP/1.0 end it."""
    import socket
    import zlib

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    ddb.create_table(TableName="rawhttp", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    ddb.put_item(TableName="rawhttp", Item={"pk": {"S": "a"}, "n": {"N": "7"}})

    def request(op: str, body: dict[str, Any], version: str = "1.1", close: bool = False) -> bytes:
        data = json.dumps(body).encode()
        req = AWSRequest(method="POST", url=f"{server.url}/", data=data,
                         headers={"X-Amz-Target": f"DynamoDB_20120810.{op}",
                                  "Content-Type": "application/x-amz-json-1.0"})
        SigV4Auth(Credentials("polyfn-admin", server.key), "dynamodb", "us-east-1").add_auth(req)
        head = "".join(f"{k}: {v}\r\n" for k, v in req.headers.items() if k.lower() not in ("host", "content-length"))
        return (f"POST / HTTP/{version}\r\nHost: 127.0.0.1:{server.port}\r\n{head}Content-Length: {len(data)}\r\n"
                + ("Connection: close\r\n" if close else "") + "\r\n").encode() + data

    def answers(sock: socket.socket, n: int) -> list[tuple[int, dict[str, str], Any]]:
        buf, out = b"", []
        while len(out) < n:
            while b"\r\n\r\n" not in buf:
                buf += sock.recv(65536) or b"!"
                assert not buf.endswith(b"!"), buf
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            headers = {k.lower(): v for k, v in (ln.split(": ", 1) for ln in lines[1:])}
            while len(buf) < int(headers["content-length"]):
                buf += sock.recv(65536)
            body, buf = buf[:int(headers["content-length"])], buf[int(headers["content-length"]):]
            assert headers["x-amz-crc32"] == str(zlib.crc32(body))
            out.append((int(lines[0].split()[1]), headers, json.loads(body)))
        return out

    get = {"TableName": "rawhttp", "Key": {"pk": {"S": "a"}}}
    item = {"Item": {"pk": {"S": "a"}, "n": {"N": "7"}}}
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request("GetItem", get))
        [first] = answers(sock, 1)
        # three at once: the first answered directly, the two read behind it through ASGI, in order
        sock.sendall(request("GetItem", get) + request("GetItem", {**get, "TableName": "nope"})
                     + request("PutItem", {"TableName": "rawhttp", "Item": {"pk": {"S": "b"}}}))
        rest = answers(sock, 3)
        assert [(s, b) for s, _, b in [first, *rest]] == [
            (200, item), (200, item),
            (400, {"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
                   "message": "Requested resource not found: Table: nope not found"}), (200, {})]
        assert len({h["x-amzn-requestid"] for _, h, _ in [first, *rest]}) == 4
        assert all(h["content-type"] == "application/x-amz-json-1.0" for _, h, _ in [first, *rest])
        sock.sendall(request("GetItem", get, close=True))
        [(status, headers, body)] = answers(sock, 1)
        assert (status, headers.get("connection"), body) == (200, "close", item)
        assert sock.recv(100) == b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request("GetItem", {**get, "Key": {"pk": {"S": "b"}}}, version="1.0"))
        [(status, headers, body)] = answers(sock, 1)
        assert (status, headers.get("connection"), body) == (200, "close", {"Item": {"pk": {"S": "b"}}})
        assert sock.recv(100) == b""
