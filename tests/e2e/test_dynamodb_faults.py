"""kill -9 of a real `polyfn serve` during a burst of TransactWriteItems: after a restart every transaction is
all or nothing (embedded SQLite file and PostgreSQL)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .conftest import start_server

WRITERS = 4


def client(url: str, key: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="polyfn-admin",
                        aws_secret_access_key=key, config=Config(retries={"max_attempts": 1}, connect_timeout=2,
                                                                  read_timeout=5))


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_kill_during_transactions_keeps_each_all_or_nothing(engine: str, tmp_path: Path,
                                                            request: pytest.FixtureRequest) -> None:
    env = {"POLYFN_DATABASE_URL": request.getfixturevalue("pg_url")} if engine == "postgresql" else {}
    server = start_server(tmp_path / "data", env=env)
    try:
        ddb = client(server.url, server.key)
        ddb.create_table(TableName="ledger", BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
        ddb.put_item(TableName="ledger", Item={"id": {"S": "count"}, "n": {"N": "0"}})
        acked: list[int] = []
        stop = threading.Event()

        def writer(w: int) -> None:
            c = client(server.url, server.key)
            i = 0
            while not stop.is_set():
                tx = w * 1_000_000 + i
                i += 1
                try:  # each transaction: two new items and the counter, together
                    c.transact_write_items(TransactItems=[
                        {"Put": {"TableName": "ledger", "Item": {"id": {"S": f"a-{tx}"}}}},
                        {"Put": {"TableName": "ledger", "Item": {"id": {"S": f"b-{tx}"}, "pad": {"S": "x" * 2000}}}},
                        {"Update": {"TableName": "ledger", "Key": {"id": {"S": "count"}},
                                    "UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {
                                        ":one": {"N": "1"}}}}])
                    acked.append(tx)
                except (ClientError, BotoCoreError):
                    if stop.is_set():
                        return
                    time.sleep(0.01)

        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(WRITERS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.proc.send_signal(signal.SIGKILL)  # mid-burst: requests in flight, commits half done
        server.proc.wait()
        stop.set()
        for t in threads:
            t.join(10)
        assert len(acked) >= 150, "the burst never got going"
    finally:
        server.stop(signal.SIGKILL)

    again = start_server(tmp_path / "data", env=env)
    try:
        c = client(again.url, again.key)
        ids: set[str] = set()
        count = None
        for page in c.get_paginator("scan").paginate(TableName="ledger"):
            for item in page["Items"]:
                if item["id"]["S"] == "count":
                    count = int(item["n"]["N"])
                else:
                    ids.add(item["id"]["S"])
        a = {i[2:] for i in ids if i.startswith("a-")}
        b = {i[2:] for i in ids if i.startswith("b-")}
        assert a == b, f"half-applied transactions: {sorted(a ^ b)[:5]}"
        assert count == len(a), f"counter {count} but {len(a)} transactions applied"
        assert {str(t) for t in acked} <= a, "an acknowledged transaction was lost"
    finally:
        again.stop()


def test_puts_one_at_a_time_are_acknowledged_only_once_committed(tmp_path: Path) -> None:
    """One client, one request in flight at a time (the node commits each write at once, inside its request's
    step, and writes its answer at once): kill -9 right after an answer, and every acknowledged put is there
    after a restart; a refused conditional put on the way is answered as such and changes nothing."""
    server = start_server(tmp_path / "data")
    try:
        ddb = client(server.url, server.key)
        ddb.create_table(TableName="one", BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
        for i in range(60):
            ddb.put_item(TableName="one", Item={"id": {"S": f"k{i}"}, "n": {"N": str(i)}})
            if i == 30:
                with pytest.raises(ClientError, match="ConditionalCheckFailed"):
                    ddb.put_item(TableName="one", Item={"id": {"S": "k0"}, "n": {"N": "-1"}},
                                 ConditionExpression="attribute_not_exists(id)")
        server.proc.send_signal(signal.SIGKILL)  # at once after the last answer
        server.proc.wait()
    finally:
        server.stop(signal.SIGKILL)

    again = start_server(tmp_path / "data")
    try:
        c = client(again.url, again.key)
        items = [i for p in c.get_paginator("scan").paginate(TableName="one") for i in p["Items"]]
        assert sorted((x["id"]["S"], int(x["n"]["N"])) for x in items) == sorted((f"k{i}", i) for i in range(60))
    finally:
        again.stop()
