"""Differential tests: the same operation sequences against polyfn and against moto's server (`moto[server]`),
in the same test, results compared after dropping what legitimately differs (request ids, capacity, times).

Where moto is known to differ from DynamoDB, the sequence says so and polyfn follows DynamoDB's documentation:
* `MOTO_KEEPS_NUMBER_TEXT`: DynamoDB normalises numbers ("1.50" → "1.5"); moto returns them as sent.
* `MOTO_500_ON_RESERVED`: a reserved word used as a bare attribute name (`size = :v`) is a ValidationException
  ("Attribute name is a reserved keyword"); moto answers HTTP 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .conftest import Server, free_port

TABLE = {"BillingMode": "PAY_PER_REQUEST",
         "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "N"}],
         "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]}


def item(pk: str, sk: int, **attrs: Any) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}, **attrs}


def key(pk: str, sk: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


# (name, [(operation, parameters)]): each step's outcome (result or error code) is compared
SEQUENCES: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = [
    ("put-get-update-delete", [
        ("put_item", {"Item": item("a", 1, n={"N": "5"}, s={"S": "x"})}),
        ("get_item", {"Key": key("a", 1)}),
        ("update_item", {"Key": key("a", 1), "UpdateExpression": "SET n = n + :d, l = list_append(if_not_exists(l, "
                         ":e), :v) REMOVE s", "ExpressionAttributeValues": {":d": {"N": "2"}, ":e": {"L": []},
                                                                            ":v": {"L": [{"S": "q"}]}},
                         "ReturnValues": "ALL_NEW"}),
        ("update_item", {"Key": key("a", 1), "UpdateExpression": "ADD tags :t", "ExpressionAttributeValues": {
            ":t": {"SS": ["b"]}}, "ReturnValues": "UPDATED_NEW"}),
        ("delete_item", {"Key": key("a", 1), "ReturnValues": "ALL_OLD"}),
        ("get_item", {"Key": key("a", 1)}),
    ]),
    ("conditions", [
        ("put_item", {"Item": item("c", 1, v={"N": "1"})}),
        ("put_item", {"Item": item("c", 1), "ConditionExpression": "attribute_not_exists(pk)"}),
        ("update_item", {"Key": key("c", 1), "UpdateExpression": "SET v = :n", "ConditionExpression": "v = :o",
                         "ExpressionAttributeValues": {":n": {"N": "2"}, ":o": {"N": "1"}}}),
        ("update_item", {"Key": key("c", 1), "UpdateExpression": "SET v = :n", "ConditionExpression": "v = :o",
                         "ExpressionAttributeValues": {":n": {"N": "3"}, ":o": {"N": "1"}}}),
        ("delete_item", {"Key": key("c", 1), "ConditionExpression": "v > :x",
                         "ExpressionAttributeValues": {":x": {"N": "5"}}}),
        ("get_item", {"Key": key("c", 1)}),
    ]),
    ("query-and-pages", [
        *[("put_item", {"Item": item("q", i, odd={"BOOL": i % 2 == 1})}) for i in range(12)],
        ("query", {"KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b", "ExpressionAttributeValues": {
            ":p": {"S": "q"}, ":a": {"N": "2"}, ":b": {"N": "9"}}, "ScanIndexForward": False}),
        ("query", {"KeyConditionExpression": "pk = :p", "FilterExpression": "odd = :t", "Limit": 5,
                   "ExpressionAttributeValues": {":p": {"S": "q"}, ":t": {"BOOL": True}}}),
        ("query", {"KeyConditionExpression": "pk = :p", "Select": "COUNT",
                   "ExpressionAttributeValues": {":p": {"S": "q"}}}),
    ]),
    ("validation-errors", [
        ("get_item", {"Key": {"pk": {"S": "x"}}}),
        ("put_item", {"Item": {"pk": {"S": "x"}}}),
        ("update_item", {"Key": key("x", 1), "UpdateExpression": "SET a = :v"}),
        ("query", {"KeyConditionExpression": "sk = :s", "ExpressionAttributeValues": {":s": {"N": "1"}}}),
    ]),
    ("transactions", [
        ("put_item", {"Item": item("t", 1, bal={"N": "10"})}),
        ("transact_write_items", {"TransactItems": [
            {"Update": {"TableName": "@", "Key": key("t", 1), "UpdateExpression": "SET bal = bal - :x",
                        "ConditionExpression": "bal >= :x", "ExpressionAttributeValues": {":x": {"N": "20"}}}},
            {"Put": {"TableName": "@", "Item": item("t", 2)}}]}),
        ("get_item", {"Key": key("t", 2)}),
        ("transact_write_items", {"TransactItems": [
            {"Update": {"TableName": "@", "Key": key("t", 1), "UpdateExpression": "SET bal = bal - :x",
                        "ConditionExpression": "bal >= :x", "ExpressionAttributeValues": {":x": {"N": "4"}}}},
            {"Put": {"TableName": "@", "Item": item("t", 2)}}]}),
        ("transact_get_items", {"TransactItems": [{"Get": {"TableName": "@", "Key": key("t", 1)}},
                                                  {"Get": {"TableName": "@", "Key": key("t", 2)}}]}),
    ]),
]


def _table_param(op: str, params: dict[str, Any], table: str) -> dict[str, Any]:
    if op.startswith("transact_"):
        out = []
        for a in params["TransactItems"]:
            ((kind, spec),) = a.items()
            out.append({kind: {**spec, "TableName": table}})
        return {**params, "TransactItems": out}
    return {"TableName": table, **params}


def outcome(client: Any, op: str, params: dict[str, Any]) -> Any:
    try:
        res = getattr(client, op)(**params)
    except ClientError as e:
        out = {"error": e.response["Error"]["Code"]}
        if "CancellationReasons" in e.response:
            out["reasons"] = [r["Code"] for r in e.response["CancellationReasons"]]
        return out
    res.pop("ResponseMetadata", None)
    res.pop("ConsumedCapacity", None)
    if not res.get("ItemCollectionMetrics", True):  # moto sends it empty when it was not asked for
        res.pop("ItemCollectionMetrics")
    return res


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    yield f"http://127.0.0.1:{port}"
    srv.stop()


def clients(server: Server, moto_url: str) -> tuple[Any, Any]:
    cfg = Config(retries={"max_attempts": 1})
    ours = boto3.client("dynamodb", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id="polyfn-admin", aws_secret_access_key=server.key, config=cfg)
    theirs = boto3.client("dynamodb", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing", config=cfg)
    return ours, theirs


@pytest.mark.parametrize(("name", "steps"), SEQUENCES, ids=[s[0] for s in SEQUENCES])
def test_same_outcomes_as_moto(server: Server, moto_url: str, name: str, steps: list[tuple[str, Any]]) -> None:
    ours, theirs = clients(server, moto_url)
    table = f"diff-{name}"
    for c in (ours, theirs):
        c.create_table(TableName=table, **TABLE)
    for i, (op, params) in enumerate(steps):
        p = _table_param(op, params, table)
        a, b = outcome(ours, op, p), outcome(theirs, op, p)
        assert a == b, f"step {i} ({op}) differs:\n polyfn: {a}\n moto:   {b}"


def test_numbers_follow_dynamodb_not_moto(server: Server, moto_url: str) -> None:
    """MOTO_KEEPS_NUMBER_TEXT: DynamoDB stores and returns "1.50" as "1.5" (numbers are normalised)."""
    ours, theirs = clients(server, moto_url)
    for c in (ours, theirs):
        c.create_table(TableName="diff-numbers", **TABLE)
        c.put_item(TableName="diff-numbers", Item=item("n", 1, v={"N": "1.50"}))
    assert ours.get_item(TableName="diff-numbers", Key=key("n", 1))["Item"]["v"] == {"N": "1.5"}
    assert theirs.get_item(TableName="diff-numbers", Key=key("n", 1))["Item"]["v"] == {"N": "1.50"}


def test_reserved_words_follow_dynamodb_not_moto(server: Server, moto_url: str) -> None:
    """MOTO_500_ON_RESERVED."""
    ours, theirs = clients(server, moto_url)
    params = {"TableName": "diff-reserved", "Item": item("r", 1, **{"size": {"S": "y"}}),
              "ConditionExpression": "size = :v", "ExpressionAttributeValues": {":v": {"S": "y"}}}
    for c in (ours, theirs):
        c.create_table(TableName="diff-reserved", **TABLE)
    with pytest.raises(ClientError) as e:
        ours.put_item(**params)
    assert e.value.response["Error"] == {
        "Code": "ValidationException",
        "Message": "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: size"}
    assert outcome(theirs, "put_item", params) == {"error": "500"}
