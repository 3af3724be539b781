"""The database core on both engines (SQLite file, PostgreSQL): tables, items, queries, scans, indexes,
batches and transactions, with DynamoDB's request model and errors."""

from __future__ import annotations

import asyncio
import base64
from decimal import Decimal
from typing import Any

import pytest

from polyfn.db import multi, reads
from polyfn.db.core import Database
from polyfn.db.errors import (
    ConditionFailed,
    IdempotentMismatch,
    InUse,
    Invalid,
    NoSuchTable,
    TransactionCanceled,
)

NS = "default"


def S(x: str) -> dict[str, str]:
    return {"S": x}


def N(x: Any) -> dict[str, str]:
    return {"N": str(x)}


async def make(db: Database, name: str, sk: str | None = "N", **extra: Any) -> None:
    attrs = [{"AttributeName": "pk", "AttributeType": "S"}]
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    if sk:
        attrs.append({"AttributeName": "sk", "AttributeType": sk})
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
    attrs += extra.pop("attrs", [])
    await db.create_table(NS, {"TableName": name, "AttributeDefinitions": attrs, "KeySchema": keys,
                               "BillingMode": "PAY_PER_REQUEST", **extra})


async def test_tables_lifecycle(db: Database) -> None:
    await make(db, "alpha")
    await make(db, "beta", None)
    with pytest.raises(InUse, match="Table already exists: alpha"):
        await make(db, "alpha")
    assert (await db.list_tables(NS, {}))["TableNames"] == ["alpha", "beta"]
    page = await db.list_tables(NS, {"Limit": 1})
    assert page == {"TableNames": ["alpha"], "LastEvaluatedTableName": "alpha"}
    desc = (await db.describe_table(NS, {"TableName": "alpha"}))["Table"]
    assert desc["KeySchema"][1] == {"AttributeName": "sk", "KeyType": "RANGE"} and desc["ItemCount"] == 0
    assert (await db.delete_table(NS, {"TableName": "alpha"}))["TableDescription"]["TableStatus"] == "DELETING"
    with pytest.raises(NoSuchTable):
        await db.describe_table(NS, {"TableName": "alpha"})
    with pytest.raises(Invalid, match="Number of attributes in KeySchema does not exactly match"):
        await db.create_table(NS, {"TableName": "gamma", "BillingMode": "PAY_PER_REQUEST",
                                   "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                                            {"AttributeName": "x", "AttributeType": "S"}],
                                   "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]})


async def test_items_conditions_and_return_values(db: Database) -> None:
    await make(db, "items")
    key = {"pk": S("a"), "sk": N(1)}
    await db.put_item(NS, {"TableName": "items", "Item": {**key, "v": N("1.50"), "b": {"B": "AAE="}}})
    got = await db.get_item(NS, {"TableName": "items", "Key": {"pk": S("a"), "sk": N("1.0")}})
    assert got["Item"]["v"] == N("1.5")
    with pytest.raises(ConditionFailed) as e:
        await db.put_item(NS, {"TableName": "items", "Item": key, "ConditionExpression": "attribute_not_exists(pk)",
                               "ReturnValuesOnConditionCheckFailure": "ALL_OLD"})
    assert e.value.item is not None and e.value.item["v"] == N("1.5")
    out = await db.update_item(NS, {"TableName": "items", "Key": key, "UpdateExpression": "SET v = v + :d",
                                    "ConditionExpression": "v < :lim",
                                    "ExpressionAttributeValues": {":d": N(1), ":lim": N(10)},
                                    "ReturnValues": "UPDATED_NEW"})
    assert out["Attributes"] == {"v": N("2.5")}
    with pytest.raises(Invalid, match="The provided key element does not match the schema"):
        await db.get_item(NS, {"TableName": "items", "Key": {"pk": S("a")}})
    with pytest.raises(Invalid, match="Type mismatch for key sk expected: N actual: S"):
        await db.put_item(NS, {"TableName": "items", "Item": {"pk": S("a"), "sk": S("x")}})
    with pytest.raises(Invalid, match="Item size has exceeded the maximum allowed size"):
        await db.put_item(NS, {"TableName": "items", "Item": {**key, "big": S("x" * 410_000)}})
    old = await db.delete_item(NS, {"TableName": "items", "Key": key, "ReturnValues": "ALL_OLD"})
    assert old["Attributes"]["v"] == N("2.5")
    assert await db.get_item(NS, {"TableName": "items", "Key": key}) == {}


async def test_a_put_replaces_the_item_whether_or_not_it_reads_the_old_one(db: Database) -> None:
    """A plain put (no condition, no index, no stream, old item not asked for) writes without reading first;
    the others read it. Both replace the whole item, and ALL_OLD still answers the item replaced."""
    await make(db, "plain")
    key = {"pk": S("a"), "sk": N(1)}
    for v in ("1", "2"):
        assert await db.put_item(NS, {"TableName": "plain", "Item": {**key, "v": N(v), **({"x": S("gone")} if v == "1" else {})}}) == {}
    assert (await db.get_item(NS, {"TableName": "plain", "Key": key}))["Item"] == {**key, "v": N(2)}
    out = await db.put_item(NS, {"TableName": "plain", "Item": {**key, "v": N(3)}, "ReturnValues": "ALL_OLD"})
    assert out["Attributes"] == {**key, "v": N(2)}
    await make(db, "indexed", attrs=[{"AttributeName": "g", "AttributeType": "S"}], GlobalSecondaryIndexes=[{
        "IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "ALL"}}])
    for g in ("one", "two"):
        await db.put_item(NS, {"TableName": "indexed", "Item": {**key, "g": S(g)}})
    for g, n in (("one", 0), ("two", 1)):  # the replaced item's index row went with it
        q = await reads.query(db, NS, {"TableName": "indexed", "IndexName": "by-g", "KeyConditionExpression": "g = :g",
                                       "ExpressionAttributeValues": {":g": S(g)}})
        assert q["Count"] == n


async def test_query_orders_numbers_strings_and_binaries(db: Database) -> None:
    await make(db, "nums")
    await make(db, "strs", "S")
    await make(db, "bins", "B")
    ns = ["-100", "-1.5", "-1", "0", "0.001", "1", "1.5", "2", "10", "100", "1E+20"]
    strs = ["", "A", "Z", "a", "ab", "b", "é"][1:]
    bins = [b"\x00", b"\x00\x01", b"\x01", b"\xff"]
    for i, n in enumerate(reversed(ns)):
        await db.put_item(NS, {"TableName": "nums", "Item": {"pk": S("p"), "sk": N(n), "i": N(i)}})
    for s in reversed(strs):
        await db.put_item(NS, {"TableName": "strs", "Item": {"pk": S("p"), "sk": S(s)}})
    for b in reversed(bins):
        await db.put_item(NS, {"TableName": "bins", "Item": {"pk": S("p"), "sk": {"B": base64.b64encode(b).decode()}}})
    q = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": S("p")}}
    got = await reads.query(db, NS, {"TableName": "nums", **q})
    assert [Decimal(i["sk"]["N"]) for i in got["Items"]] == [Decimal(n) for n in ns]
    back = await reads.query(db, NS, {"TableName": "nums", **q, "ScanIndexForward": False})
    assert [i["sk"] for i in back["Items"]] == [i["sk"] for i in reversed(got["Items"])]
    assert [i["sk"]["S"] for i in (await reads.query(db, NS, {"TableName": "strs", **q}))["Items"]] == strs
    got_b = (await reads.query(db, NS, {"TableName": "bins", **q}))["Items"]
    assert [base64.b64decode(i["sk"]["B"]) for i in got_b] == bins
    between = await reads.query(db, NS, {"TableName": "nums", "KeyConditionExpression": "pk = :p AND sk BETWEEN :a "
                                         "AND :b", "ExpressionAttributeValues": {":p": S("p"), ":a": N(-1),
                                                                                 ":b": N("1.5")}})
    assert [i["sk"]["N"] for i in between["Items"]] == ["-1", "0", "0.001", "1", "1.5"]
    prefix = await reads.query(db, NS, {"TableName": "strs", "KeyConditionExpression": "pk = :p AND "
                                        "begins_with(sk, :x)", "ExpressionAttributeValues": {":p": S("p"),
                                                                                            ":x": S("a")}})
    assert [i["sk"]["S"] for i in prefix["Items"]] == ["a", "ab"]


async def test_query_pages_limits_and_filters(db: Database) -> None:
    await make(db, "pages")
    for i in range(25):
        await db.put_item(NS, {"TableName": "pages", "Item": {"pk": S("p"), "sk": N(i), "odd": {"BOOL": i % 2 == 1}}})
    base = {"TableName": "pages", "KeyConditionExpression": "pk = :p", "FilterExpression": "odd = :t",
            "ExpressionAttributeValues": {":p": S("p"), ":t": {"BOOL": True}}, "Limit": 10}
    seen, start, pages = [], None, 0
    while True:
        req = {**base, **({"ExclusiveStartKey": start} if start else {})}
        page = await reads.query(db, NS, req)
        pages += 1
        assert page["ScannedCount"] <= 10
        seen += [int(i["sk"]["N"]) for i in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if start is None:
            break
    assert seen == list(range(1, 25, 2)) and pages == 3
    with pytest.raises(Invalid, match="Filter Expression can only contain non-primary key attributes"):
        await reads.query(db, NS, {**base, "FilterExpression": "sk > :t", "ExpressionAttributeValues": {
            ":p": S("p"), ":t": N(1)}})
    with pytest.raises(Invalid, match="Query condition missed key schema element: pk"):
        await reads.query(db, NS, {"TableName": "pages", "KeyConditionExpression": "sk = :s",
                                   "ExpressionAttributeValues": {":s": N(1)}})
    with pytest.raises(Invalid, match="Invalid operator used in KeyConditionExpression: OR"):
        await reads.query(db, NS, {"TableName": "pages", "KeyConditionExpression": "pk = :p OR sk = :s",
                                   "ExpressionAttributeValues": {":p": S("p"), ":s": N(1)}})


async def test_one_megabyte_pages(db: Database) -> None:
    await make(db, "bulk")
    blob = "x" * 100_000
    for i in range(15):
        await db.put_item(NS, {"TableName": "bulk", "Item": {"pk": S("p"), "sk": N(i), "blob": S(blob)}})
    page = await reads.query(db, NS, {"TableName": "bulk", "KeyConditionExpression": "pk = :p",
                                      "ExpressionAttributeValues": {":p": S("p")}, "Select": "COUNT"})
    assert 10 <= page["Count"] < 15 and "LastEvaluatedKey" in page and "Items" not in page


async def test_parallel_scan_segments_cover_every_item_once(db: Database) -> None:
    await make(db, "scanned", None)
    await asyncio.gather(*(db.put_item(NS, {"TableName": "scanned", "Item": {"pk": S(f"k{i}")}}) for i in range(60)))
    seen: list[str] = []
    for seg in range(4):
        start = None
        while True:
            page = await reads.scan(db, NS, {"TableName": "scanned", "Segment": seg, "TotalSegments": 4, "Limit": 7,
                                             **({"ExclusiveStartKey": start} if start else {})})
            seen += [i["pk"]["S"] for i in page["Items"]]
            start = page.get("LastEvaluatedKey")
            if start is None:
                break
    assert sorted(seen) == sorted(f"k{i}" for i in range(60))
    with pytest.raises(Invalid, match="Segment: 4 is not less than TotalSegments: 4"):
        await reads.scan(db, NS, {"TableName": "scanned", "Segment": 4, "TotalSegments": 4})


async def test_secondary_indexes(db: Database) -> None:
    await make(db, "people", "S", attrs=[{"AttributeName": "city", "AttributeType": "S"},
                                         {"AttributeName": "age", "AttributeType": "N"}],
               GlobalSecondaryIndexes=[{"IndexName": "by-city", "KeySchema": [
                   {"AttributeName": "city", "KeyType": "HASH"}, {"AttributeName": "age", "KeyType": "RANGE"}],
                   "Projection": {"ProjectionType": "KEYS_ONLY"}}],
               LocalSecondaryIndexes=[{"IndexName": "by-age", "KeySchema": [
                   {"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "age", "KeyType": "RANGE"}],
                   "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["nick"]}}])
    people = [("org", "ann", "Oslo", 40), ("org", "bob", "Oslo", 30), ("org", "cy", "Rome", 35), ("org", "dee", None, 1)]
    for pk, sk, city, age in people:
        item = {"pk": S(pk), "sk": S(sk), "age": N(age), "nick": S(sk.upper()), "secret": S("s")}
        if city:
            item["city"] = S(city)
        await db.put_item(NS, {"TableName": "people", "Item": item})
    got = await reads.query(db, NS, {"TableName": "people", "IndexName": "by-city", "KeyConditionExpression":
                                     "city = :c", "ExpressionAttributeValues": {":c": S("Oslo")}})
    assert [i["sk"]["S"] for i in got["Items"]] == ["bob", "ann"]
    assert set(got["Items"][0]) == {"pk", "sk", "city", "age"}
    lsi = await reads.query(db, NS, {"TableName": "people", "IndexName": "by-age", "KeyConditionExpression":
                                     "pk = :p AND age > :a", "ExpressionAttributeValues": {":p": S("org"),
                                                                                           ":a": N(5)}})
    assert [i["sk"]["S"] for i in lsi["Items"]] == ["bob", "cy", "ann"]
    assert set(lsi["Items"][0]) == {"pk", "sk", "age", "nick"}
    scan = await reads.scan(db, NS, {"TableName": "people", "IndexName": "by-city"})
    assert scan["Count"] == 3  # sparse: dee has no city
    await db.update_item(NS, {"TableName": "people", "Key": {"pk": S("org"), "sk": S("bob")},
                              "UpdateExpression": "SET city = :c", "ExpressionAttributeValues": {":c": S("Rome")}})
    rome = await reads.query(db, NS, {"TableName": "people", "IndexName": "by-city", "KeyConditionExpression":
                                      "city = :c", "ExpressionAttributeValues": {":c": S("Rome")}})
    assert [i["sk"]["S"] for i in rome["Items"]] == ["bob", "cy"]
    with pytest.raises(Invalid, match="Type mismatch for Index Key city"):
        await db.put_item(NS, {"TableName": "people", "Item": {"pk": S("x"), "sk": S("y"), "city": N(1)}})
    with pytest.raises(Invalid, match="Consistent reads are not supported on global secondary indexes"):
        await reads.query(db, NS, {"TableName": "people", "IndexName": "by-city", "ConsistentRead": True,
                                   "KeyConditionExpression": "city = :c", "ExpressionAttributeValues": {
                                       ":c": S("Rome")}})


async def test_batches(db: Database) -> None:
    await make(db, "batch", None)
    puts = [{"PutRequest": {"Item": {"pk": S(f"b{i}"), "n": N(i)}}} for i in range(25)]
    assert await multi.batch_write(db, NS, {"RequestItems": {"batch": puts}}) == {"UnprocessedItems": {}}
    with pytest.raises(Invalid, match="Too many items requested for the BatchWriteItem call"):
        await multi.batch_write(db, NS, {"RequestItems": {"batch": [*puts, puts[0]]}})
    with pytest.raises(Invalid, match="Provided list of item keys contains duplicates"):
        await multi.batch_write(db, NS, {"RequestItems": {"batch": [puts[0], puts[0]]}})
    got = await multi.batch_get(db, NS, {"RequestItems": {"batch": {"Keys": [{"pk": S("b1")}, {"pk": S("b7")},
                                                                             {"pk": S("zz")}],
                                                                    "ProjectionExpression": "n"}}})
    assert sorted(i["n"]["N"] for i in got["Responses"]["batch"]) == ["1", "7"] and got["UnprocessedKeys"] == {}
    await multi.batch_write(db, NS, {"RequestItems": {"batch": [{"DeleteRequest": {"Key": {"pk": S("b1")}}}]}})
    assert await db.get_item(NS, {"TableName": "batch", "Key": {"pk": S("b1")}}) == {}


async def test_transactions_are_all_or_nothing(db: Database) -> None:
    await make(db, "acct", None)
    for who, bal in (("a", 100), ("b", 0)):
        await db.put_item(NS, {"TableName": "acct", "Item": {"pk": S(who), "bal": N(bal)}})

    def transfer(amount: int) -> dict[str, Any]:
        return {"TransactItems": [
            {"Update": {"TableName": "acct", "Key": {"pk": S("a")}, "UpdateExpression": "SET bal = bal - :x",
                        "ConditionExpression": "bal >= :x", "ExpressionAttributeValues": {":x": N(amount)},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
            {"Update": {"TableName": "acct", "Key": {"pk": S("b")}, "UpdateExpression": "SET bal = bal + :x",
                        "ExpressionAttributeValues": {":x": N(amount)}}}]}

    await multi.transact_write(db, NS, transfer(60))
    with pytest.raises(TransactionCanceled) as e:
        await multi.transact_write(db, NS, transfer(60))
    assert [r.code for r in e.value.reasons] == ["ConditionalCheckFailed", "None"]
    assert e.value.reasons[0].item == {"pk": S("a"), "bal": N(40)}
    got = await multi.transact_get(db, NS, {"TransactItems": [{"Get": {"TableName": "acct", "Key": {"pk": S(w)}}}
                                                              for w in "ab"]})
    assert [r["Item"]["bal"]["N"] for r in got["Responses"]] == ["40", "60"]
    # idempotence: the same token and request succeed again without applying twice
    req = {**transfer(10), "ClientRequestToken": "tok-1"}
    await multi.transact_write(db, NS, req)
    await multi.transact_write(db, NS, req)
    got = await multi.transact_get(db, NS, {"TransactItems": [{"Get": {"TableName": "acct", "Key": {"pk": S("a")}}}]})
    assert got["Responses"][0]["Item"]["bal"] == N(30)
    with pytest.raises(IdempotentMismatch):
        await multi.transact_write(db, NS, {**transfer(5), "ClientRequestToken": "tok-1"})
    with pytest.raises(Invalid, match="multiple operations on one item"):
        await multi.transact_write(db, NS, {"TransactItems": transfer(1)["TransactItems"] * 2})


async def test_concurrent_conditional_counters(db: Database) -> None:
    """Many writers racing on one item: every increment lands once (conditions see committed state)."""
    await make(db, "ctr", None)
    await db.put_item(NS, {"TableName": "ctr", "Item": {"pk": S("c"), "n": N(0)}})

    async def bump() -> None:
        await db.update_item(NS, {"TableName": "ctr", "Key": {"pk": S("c")}, "UpdateExpression": "ADD n :one",
                                  "ExpressionAttributeValues": {":one": N(1)}})

    await asyncio.gather(*(bump() for _ in range(50)))
    assert (await db.get_item(NS, {"TableName": "ctr", "Key": {"pk": S("c")}}))["Item"]["n"] == N(50)


@pytest.mark.parametrize("alone", [False, True], ids=["grouped", "alone"])
async def test_small_writes_and_a_tables_deletion_interleave(db: Database, db_url: str, alone: bool,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Item writes (committed on the event loop's thread, a turn's worth together — or each at once, when the
    node says its request is alone in flight) racing a table's deletion and re-creation (on the writer's
    thread) and WAL checkpoints: every acknowledged write is there, a refused one (its condition failed) is
    not, and none of a batch is lost for another's failure."""
    from polyfn.db import storage

    if alone and not db_url.startswith("sqlite"):
        pytest.skip("the group commit is SQLite's")
    db.storage.alone = (lambda: True) if alone else None
    monkeypatch.setattr(storage, "CHECKPOINT_EVERY", 3)
    await make(db, "keep", None)
    await make(db, "gone", None)
    for i in range(200):
        await db.put_item(NS, {"TableName": "gone", "Item": {"pk": S(f"g{i}")}})

    async def put(i: int) -> str:
        try:
            await db.put_item(NS, {"TableName": "keep", "Item": {"pk": S(f"k{i % 60}"), "i": N(i)},
                                   "ConditionExpression": "attribute_not_exists(pk)"})
        except ConditionFailed:
            return "refused"
        return "ok"

    async def drop() -> None:
        await db.delete_table(NS, {"TableName": "gone"})
        await make(db, "gone", None)

    outcomes = await asyncio.gather(*(put(i) for i in range(120)), drop())
    assert outcomes[:120].count("ok") == 60 and outcomes[:120].count("refused") == 60
    got = await reads.scan(db, NS, {"TableName": "keep"})
    assert sorted(x["pk"]["S"] for x in got["Items"]) == sorted(f"k{i}" for i in range(60))
    assert (await reads.scan(db, NS, {"TableName": "gone"}))["Count"] == 0


async def test_the_wal_starts_over_while_writes_keep_coming(db: Database, db_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes one after the other (each its own commit, as a starved node sees them): the checkpoints keep
    the WAL file small. A checkpoint beside a writer that kept committing never caught up, and the WAL grew by
    every commit's pages (tens of MB in a benchmark run)."""
    if not db_url.startswith("sqlite"):
        pytest.skip("the WAL is SQLite's")
    from pathlib import Path

    from polyfn.db import storage

    monkeypatch.setattr(storage, "CHECKPOINT_EVERY", 16)
    await make(db, "wal", None)
    wal = Path(db_url.split(":///", 1)[1]).with_name("tables.db-wal")
    for i in range(1500):
        await db.put_item(NS, {"TableName": "wal", "Item": {"pk": S(f"k{i}"), "v": S("x" * 100)}})
    assert wal.stat().st_size < 1_000_000
    assert (await reads.scan(db, NS, {"TableName": "wal", "Select": "COUNT"}))["Count"] == 1500


async def test_the_writers_driver_connection_is_pinned_while_it_is_open(tmp_path: Any) -> None:
    """The single-item statements reach the SQLite writer's DB-API connection without asking SQLAlchemy for it
    each time (`storage.driver_of`, ~1 µs saved per statement); the pin goes when the storage closes."""
    from polyfn.db import storage

    d = await Database.open(str(tmp_path / "tables.db"))
    st = d.storage
    assert isinstance(st, storage.SqliteStorage) and st._wconn is not None
    wconn = st._wconn
    assert storage._PINNED[id(wconn)] == (wconn, st._raw)
    assert storage.driver_of(wconn) is st._raw is wconn.connection.driver_connection
    await make(d, "pin", None)
    await d.put_item(NS, {"TableName": "pin", "Item": {"pk": S("a"), "v": N(1)}})
    await d.update_item(NS, {"TableName": "pin", "Key": {"pk": S("a")}, "UpdateExpression": "SET v = v + :one",
                             "ConditionExpression": "attribute_exists(pk)",
                             "ExpressionAttributeValues": {":one": N(1)}})
    assert (await d.get_item(NS, {"TableName": "pin", "Key": {"pk": S("a")}}))["Item"]["v"] == N(2)
    await d.close()
    assert id(wconn) not in storage._PINNED


async def test_the_namespace_item_quota_holds_for_concurrent_writers_of_several_tables(db: Database,
                                                                                         db_url: str) -> None:
    """40 puts at once into four tables of a namespace with `db_items=10`, through two database cores on
    PostgreSQL (two nodes of a cluster): exactly 10 are taken. Writers of different tables do not queue on one
    table's counter row, so on PostgreSQL each growing write re-reads the use under the namespace's lock."""
    from polyfn.db.errors import QuotaExceeded
    from polyfn.tenancy import Quotas

    second = await Database.open(db_url) if db_url.startswith("postgresql") else db  # (its tables' URL is the store's)
    try:
        for d in (db, second):
            d.quotas = lambda ns: Quotas(db_items=10)
        for t in range(4):
            await make(db, f"quota{t}", None)

        async def put(i: int) -> bool:
            try:
                await (db, second)[i % 2].put_item(NS, {"TableName": f"quota{i % 4}", "Item": {"pk": S(f"k{i}")}})
            except QuotaExceeded:
                return False
            return True

        taken = await asyncio.gather(*(put(i) for i in range(40)))
        held = 0
        for t in range(4):
            held += len((await reads.scan(db, NS, {"TableName": f"quota{t}"}))["Items"])
        assert (sum(taken), held) == (10, 10)
    finally:
        if second is not db:
            await second.close()


def test_the_dynamodb_faces_header_names_and_values_decode_as_each_alone() -> None:
    """`_header_dict` (the names and the values decoded in one go) gives what decoding each pair gives: Latin-1,
    empty values, the last of a repeated name (the face joins those itself), a value with a line feed in it."""
    from polyfn.db.dynamodb_api import _header_dict

    for raw in ([], [(b"a", b"")], [(b"x-amz-date", b"20261207T000000Z"), (b"user-agent", b"caf\xe9 /1"), (b"e", b"")],
                [(b"a", b"1"), (b"a", b"2")], [(b"a", b"x\ny"), (b"b", b"z")], [(b"a", b"\n"), (b"b", b"")]):
        assert _header_dict(raw) == {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}


async def test_a_write_alone_commits_at_once_inside_its_callers_step(tmp_path: Any) -> None:
    """`Storage.alone` (the node: no other request in flight) makes a small write commit inside `write` itself,
    its outcome settled before the caller awaits it and the row visible to another connection at once; without
    it, the turn's writes wait for the loop's next turn and commit together. A failed write alone undoes only
    itself; while the writer thread holds the connection, a write alone joins the thread's batch."""
    import sqlite3
    import threading

    from polyfn.db import storage

    d = await Database.open(str(tmp_path / "tables.db"))
    st = d.storage
    assert isinstance(st, storage.SqliteStorage)
    other = sqlite3.connect(str(tmp_path / "tables.db"))

    def insert(key: str) -> Any:
        return lambda c: c.exec_driver_sql(f"INSERT INTO db_meta (key, value) VALUES ('{key}', 'v')")

    def seen() -> set[str]:
        return {r[0] for r in other.execute("SELECT key FROM db_meta WHERE value = 'v'")}

    try:
        commits = st._commits
        a, b = st.write(insert("a"), small=True), st.write(insert("b"), small=True)  # (alone not said: grouped)
        assert not a.done() and not b.done() and seen() == set()
        await asyncio.gather(a, b)
        assert seen() == {"a", "b"} and st._commits == commits + 1

        st.alone = lambda: True
        c = st.write(insert("c"), small=True)
        assert c.done() and seen() == {"a", "b", "c"} and st._commits == commits + 2
        await c
        dup = st.write(insert("c"), small=True)  # (its key taken: refused, alone, undone alone)
        assert dup.done()
        with pytest.raises(Exception, match="UNIQUE"):
            await dup
        await st.write(insert("d"), small=True)
        assert seen() == {"a", "b", "c", "d"}

        held, release = threading.Event(), threading.Event()

        def big(conn: Any) -> None:  # (a write of unbounded size: on the writer thread, holding the connection)
            held.set()
            release.wait(10)
            insert("e")(conn)

        e = asyncio.ensure_future(st.write(big))
        await asyncio.to_thread(held.wait, 10)
        f = st.write(insert("f"), small=True)
        assert not f.done()  # (queued for the thread: it holds the connection)
        release.set()
        await asyncio.gather(e, f)
        assert seen() == {"a", "b", "c", "d", "e", "f"}
    finally:
        other.close()
        await d.close()
