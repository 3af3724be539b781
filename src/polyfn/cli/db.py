"""`polyfn db …`: the node's tables through its DynamoDB API (items in DynamoDB JSON), table grants for functions,
and JSON Lines export/import for backups."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from polyfn.cli.config import State
from polyfn.cli.errors import CliError
from polyfn.cli.output import out, write_json
from polyfn.sdk.db import DbClient, DbError

db_app = typer.Typer(help="The document database: tables, items, grants, export and import.", no_args_is_help=True)


def _client(ctx: typer.Context) -> DbClient:
    state: State = ctx.obj
    target = state.target
    if not target.api_key:
        raise CliError("no API key: the database commands need the admin key (see `polyfn doctor`)")
    return DbClient(target.url, target.api_key)


def _call(ctx: typer.Context, op: str, req: dict[str, Any]) -> dict[str, Any]:
    try:
        return _client(ctx).call(op, req)
    except DbError as e:
        raise CliError(f"{op} failed: {e.kind}: {e.message}") from None


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise CliError(f"{what} is not JSON ({e}); e.g. '{{\"id\": {{\"S\": \"a\"}}}}'") from None


def _scan_all(ctx: typer.Context, table: str) -> Any:
    start = None
    while True:
        page = _call(ctx, "Scan", {"TableName": table, **({"ExclusiveStartKey": start} if start else {})})
        yield from page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return


@db_app.command("tables")
def tables(ctx: typer.Context) -> None:
    """List the tables."""
    for name in _call(ctx, "ListTables", {})["TableNames"]:
        out().print(name)


@db_app.command("scan")
def scan(ctx: typer.Context, table: Annotated[str, typer.Argument(show_default=False)],
         limit: Annotated[int, typer.Option(help="Items to print at most.", envvar="POLYFN_DB_LIMIT")] = 100) -> None:
    """Print a table's items (DynamoDB JSON, one per line)."""
    for i, item in enumerate(_scan_all(ctx, table)):
        if i >= limit:
            break
        print(json.dumps(item))


@db_app.command("get")
def get(ctx: typer.Context, table: Annotated[str, typer.Argument(show_default=False)],
        key: Annotated[str, typer.Argument(metavar="KEY_JSON", show_default=False)]) -> None:
    """Print one item, e.g. `polyfn db get orders '{"id": {"S": "a"}}'`."""
    got = _call(ctx, "GetItem", {"TableName": table, "Key": _json(key, "KEY_JSON")})
    if "Item" not in got:
        raise CliError(f"no item with that key in table {table!r}")
    write_json(got["Item"])


@db_app.command("put")
def put(ctx: typer.Context, table: Annotated[str, typer.Argument(show_default=False)],
        item: Annotated[str, typer.Argument(metavar="ITEM_JSON", show_default=False)]) -> None:
    """Write one item (DynamoDB JSON)."""
    _call(ctx, "PutItem", {"TableName": table, "Item": _json(item, "ITEM_JSON")})
    out().print("ok")


@db_app.command("query")
def query(ctx: typer.Context, table: Annotated[str, typer.Argument(show_default=False)],
          condition: Annotated[str, typer.Argument(metavar="KEY_CONDITION", show_default=False)],
          values: Annotated[str, typer.Option("--values", metavar="JSON", envvar="POLYFN_DB_VALUES",
                                              help="ExpressionAttributeValues.", show_default="none")] = "",
          index: Annotated[str | None, typer.Option(help="Query this index.", envvar="POLYFN_DB_INDEX",
                                                     show_default="none")] = None) -> None:
    """Query by key, e.g. `polyfn db query orders 'pk = :p' --values '{":p": {"S": "u1"}}'`."""
    req: dict[str, Any] = {"TableName": table, "KeyConditionExpression": condition}
    if values:
        req["ExpressionAttributeValues"] = _json(values, "--values")
    if index:
        req["IndexName"] = index
    for item in _call(ctx, "Query", req)["Items"]:
        print(json.dumps(item))


@db_app.command("export")
def export(ctx: typer.Context, table: Annotated[str, typer.Argument(show_default=False)]) -> None:
    """Write the table's definition, then every item, as JSON Lines to stdout (`> backup.jsonl`)."""
    desc = _call(ctx, "DescribeTable", {"TableName": table})["Table"]
    keep = ("TableName", "AttributeDefinitions", "KeySchema", "StreamSpecification")
    spec = {k: desc[k] for k in keep if k in desc}
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if desc.get(kind):
            spec[kind] = [{k: ix[k] for k in ("IndexName", "KeySchema", "Projection")} for ix in desc[kind]]
    print(json.dumps({"table": spec}))
    for item in _scan_all(ctx, table):
        print(json.dumps({"item": item}))


@db_app.command("import")
def import_(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="A file from `polyfn db export` ('-': "
                                                                         "stdin).", show_default=False)],
            table: Annotated[str | None, typer.Option(help="Import under this name.", envvar="POLYFN_DB_TABLE",
                                                      show_default="the exported name")] = None) -> None:
    """Create the exported table (unless it exists) and write its items back."""
    lines = (sys.stdin if str(file) == "-" else file.open()).read().splitlines()
    name, n, batch = table, 0, []
    for line in lines:
        rec = _json(line, "a line of the export")
        if "table" in rec:
            spec = {**rec["table"], "BillingMode": "PAY_PER_REQUEST"}
            name = name or spec["TableName"]
            spec["TableName"] = name
            if name not in _call(ctx, "ListTables", {"Limit": 100})["TableNames"]:
                _call(ctx, "CreateTable", spec)
        elif "item" in rec:
            batch.append({"PutRequest": {"Item": rec["item"]}})
            if len(batch) == 25:
                n += _flush(ctx, str(name), batch)
    n += _flush(ctx, str(name), batch)
    out().print(f"imported {n} items into {name}")


def _flush(ctx: typer.Context, table: str, batch: list[dict[str, Any]]) -> int:
    n = len(batch)
    while batch:
        left = _call(ctx, "BatchWriteItem", {"RequestItems": {table: batch}})["UnprocessedItems"]
        batch[:] = left.get(table, [])
    return n


@db_app.command("grant")
def grant(ctx: typer.Context, function: Annotated[str, typer.Argument(show_default=False)],
          table: Annotated[str, typer.Argument(show_default=False)],
          access: Annotated[str, typer.Option(help="read or write.", envvar="POLYFN_DB_ACCESS")] = "write") -> None:
    """Let FUNCTION's own key (its instances' credentials) reach TABLE."""
    state: State = ctx.obj
    r = state.client()._http.put(f"/v1/db/grants/{function}/{table}", json={"access": access})
    if r.status_code != 200:
        raise CliError(f"grant failed: {r.text}")
    out().print(f"{function} may {'read and write' if access == 'write' else 'read'} {table}")


@db_app.command("create-collection")
def create_collection(ctx: typer.Context, name: Annotated[str, typer.Argument(show_default=False)]) -> None:
    """Create a wx.cloud collection NAME (a table keyed by `_id` that records its changes, for watch)."""
    state: State = ctx.obj
    r = state.client()._http.post("/wx/database/database.createCollection", json={"collection": name})
    answer = r.json() if r.content else {}
    if r.status_code != 200:
        raise CliError(f"create-collection failed: {answer.get('errMsg') or r.text}")
    out().print(f"collection {name} created")
