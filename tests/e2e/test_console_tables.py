"""The console's table pages over HTTP: tables and collections listed, a table's items by Scan and by Query
on its partition key, paging, escaping, and the session requirement."""

from __future__ import annotations

import re
from urllib.parse import unquote

import boto3
import httpx
import pytest

from .conftest import Server


@pytest.fixture(scope="module")
def client(server: Server) -> httpx.Client:
    ddb = boto3.client("dynamodb", endpoint_url=server.url, region_name="us-east-1",
                       aws_access_key_id="polyfn-admin", aws_secret_access_key=server.key)
    ddb.create_table(TableName="console-orders", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "N"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    for i in range(30):
        ddb.put_item(TableName="console-orders", Item={"pk": {"S": "u1" if i < 27 else "u2"}, "sk": {"N": str(i)},
                                                       "note": {"S": "<script>alert(1)</script>" if i == 0 else f"n{i}"}})
    server.api.post("/wx/database/database.createCollection", json={"collection": "console-todos"})
    server.api.post("/wx/database/collection.add", json={"collection": "console-todos",
                                                          "data": {"_id": "t1", "title": "buy milk"}})
    c = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    assert c.post("/console/login", data={"key": server.key}).status_code == 303
    return c


def test_tables_page_lists_tables_and_collections(client: httpx.Client, server: Server) -> None:
    r = client.get("/console/tables")
    assert r.status_code == 200
    rows = {m[0]: m[1] for m in re.findall(r'href="/console/tables/([^"]+)">[^<]+</a></td>\s*<td>([^<]*)</td>', r.text)}
    assert rows == {"console-orders": "pk, sk", "console-todos": "_id"}
    assert "collection" in r.text and 'aria-current="page">Tables' in r.text
    anon = httpx.Client(base_url=server.url, follow_redirects=False)
    assert anon.get("/console/tables/console-orders").status_code == 303


def test_scan_query_and_pages(client: httpx.Client) -> None:
    r = client.get("/console/tables/console-orders")
    assert r.status_code == 200
    assert r.text.count("<tr><td><code>") == 25
    assert "&lt;script&gt;" in r.text and "<script>alert" not in r.text
    after = re.search(r'id="next-page" href="[^"]*after=([^"]+)"', r.text)
    assert after is not None
    r = client.get("/console/tables/console-orders", params={"after": unquote(after.group(1).replace("&amp;", "&"))},
                   headers={"hx-request": "true"})
    assert r.text.count("<tr><td><code>") == 5  # 30 items, 25 on the first page
    r = client.get("/console/tables/console-orders", params={"pk": "u2", "partial": "1"}, headers={"hx-request": "true"})
    assert "<html" not in r.text and r.text.count("<tr><td><code>") == 3 and 'id="next-page"' not in r.text
    r = client.get("/console/tables/console-orders", params={"pk": "u1", "sk": "24", "partial": "1"},
                   headers={"hx-request": "true"})
    assert r.text.count("<tr><td><code>") == 3  # a numeric sort key: 24, 25, 26
    r = client.get("/console/tables/console-todos")
    assert "buy milk" in r.text
    r = client.get("/console/tables/console-orders", params={"after": "{not json"})
    assert "not valid JSON" in r.text
    r = client.get("/console/tables/console-orders", params={"after": '{"pk": {"S": "x"}}'})
    assert 'id="table-error"' in r.text and "ValidationException" in r.text
    assert client.get("/console/tables/no-such-table").status_code == 404
