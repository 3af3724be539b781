"""The console's table pages: every table of the document database (collections too), and one table's items
through a Scan or a Query on its partition key, a page at a time (htmx swaps the rows and the "next page"
link; the page's position is DynamoDB's LastEvaluatedKey, carried as JSON).

Reads go to the database core (`DbService.db`) as the admin would through the DynamoDB API, so what the page
shows is what boto3 would get. Items are shown as plain JSON (the wx.cloud shape) beside their key.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from polyfn.console.frame import Pages, namespace
from polyfn.db import docs, reads
from polyfn.db.errors import DbError, NoSuchTable

PAGE = 25


def _key_value(kind: str, text: str) -> dict[str, Any]:
    if kind == "B":
        return {"B": base64.b64encode(text.encode()).decode()}
    return {kind: text}


def _show(item: dict[str, Any]) -> str:
    return json.dumps(docs.from_item(item), ensure_ascii=False, default=str)


class TablePages:
    """`service` (DbService, or None: no database): its core answers the pages' reads."""

    def __init__(self, *, service: Any, pages: Pages):
        self.service = service
        self.pages = pages

    def database(self) -> Any:
        return self.service.db if self.service is not None else None

    async def tables_page(self, request: Request) -> Response:
        db = self.database()
        rows = []
        if db is not None:
            ns = namespace(request)
            for name in (await db.list_tables(ns, {"Limit": 100}))["TableNames"]:
                try:
                    desc = (await db.describe_table(ns, {"TableName": name}))["Table"]
                except NoSuchTable:
                    continue
                keys = [k["AttributeName"] for k in desc["KeySchema"]]
                rows.append({"name": name, "keys": keys, "count": desc["ItemCount"], "size": desc["TableSizeBytes"],
                             "collection": keys == ["_id"],
                             "indexes": len(desc.get("GlobalSecondaryIndexes", [])) +
                             len(desc.get("LocalSecondaryIndexes", []))})
        return self.pages.render(request, "tables.html", active="tables", rows=rows)

    async def _read(self, request: Request, name: str) -> dict[str, Any]:
        """The items of the page the query string asks for, or the error to show."""
        db = self.database()
        ns = namespace(request)
        t = await db.table(ns, name)
        q = request.query_params
        pk, sk = q.get("pk", ""), q.get("sk", "")
        req: dict[str, Any] = {"TableName": name, "Limit": PAGE}
        if q.get("after"):
            try:
                req["ExclusiveStartKey"] = json.loads(q["after"])
            except ValueError:
                return {"error": "the page position is not valid JSON", "items": [], "next": ""}
        try:
            if pk:
                req["KeyConditionExpression"] = "#h = :h"
                req["ExpressionAttributeNames"] = {"#h": t.key.hash}
                req["ExpressionAttributeValues"] = {":h": _key_value(t.key.hash_type, pk)}
                if sk and t.key.range is not None:  # a prefix of a string or binary, a lower bound of a number
                    req["KeyConditionExpression"] += " AND #r >= :r" if t.key.range_type == "N" \
                        else " AND begins_with(#r, :r)"
                    req["ExpressionAttributeNames"]["#r"] = t.key.range
                    req["ExpressionAttributeValues"][":r"] = _key_value(t.key.range_type or "S", sk)
                out = await reads.query(db, ns, req)
            else:
                out = await reads.scan(db, ns, req)
        except DbError as e:
            return {"error": f"{e.kind}: {e.message}", "items": [], "next": ""}
        items = [{"key": json.dumps({k: i[k] for k in t.key.names() if k in i}), "doc": _show(i)}
                 for i in out.get("Items", [])]
        last = out.get("LastEvaluatedKey")
        return {"error": "", "items": items, "next": json.dumps(last) if last else ""}

    async def table_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        if self.database() is None:
            return self.pages.not_found(request, f"table {name!r}")
        try:
            t = await self.database().table(namespace(request), name)
            page = await self._read(request, name)
        except NoSuchTable:
            return self.pages.not_found(request, f"table {name!r}")
        form = {"pk": request.query_params.get("pk", ""), "sk": request.query_params.get("sk", "")}
        tpl = "_table_items.html" if request.headers.get("hx-request") and request.query_params.get("partial") \
            else "table.html"
        return self.pages.render(request, tpl, active="tables", t=t, form=form, **page)


__all__ = ["TablePages"]
