"""Several items at once: BatchGetItem, BatchWriteItem, TransactGetItems, TransactWriteItems.

A batch runs in one storage transaction: when the storage is too busy to take it (SQLite's lock held by
another process past the busy timeout, a PostgreSQL lock or connection failure), BatchWriteItem answers with
every request in `UnprocessedItems` and BatchGetItem with every key in `UnprocessedKeys`, as DynamoDB does
under throttling, so the clients' retry loops apply. A transaction checks every condition first and applies
every write, or none (`TransactionCanceledException` with a reason per action); a ClientRequestToken makes
a retried TransactWriteItems succeed without applying it twice for 10 minutes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from polyfn.db import evaluate, rows, values, writes
from polyfn.db.core import Database, write_units
from polyfn.db.errors import (
    ConditionFailed,
    DbError,
    IdempotentMismatch,
    Invalid,
    Reason,
    TransactionCanceled,
)
from polyfn.db.expr import Names
from polyfn.db.storage import db_tokens

MAX_BATCH_GET = 100
MAX_BATCH_WRITE = 25
MAX_TRANSACT = 100
TOKEN_TTL = 600.0
BATCH_GET_BYTES = 16 * 1024 * 1024
DUPLICATES = "Provided list of item keys contains duplicates"


def _request_items(req: dict[str, Any]) -> dict[str, Any]:
    items = req.get("RequestItems")
    if not isinstance(items, dict) or not items:
        raise Invalid("1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: "
                      "Member must have length greater than or equal to 1")
    return items


async def batch_get(db: Database, ns: str, req: dict[str, Any]) -> dict[str, Any]:
    plan = []
    total = 0
    for name, spec in _request_items(req).items():
        t = await db.table(ns, name)
        keys = spec.get("Keys") if isinstance(spec, dict) else None
        if not isinstance(keys, list) or not keys:
            raise Invalid("1 validation error detected: Value null at 'requestItems.keys' failed to satisfy "
                          "constraint: Member must have length greater than or equal to 1")
        total += len(keys)
        if total > MAX_BATCH_GET:
            raise Invalid("Too many items requested for the BatchGetItem call")
        names = Names(spec.get("ExpressionAttributeNames"), None, spec.get("ProjectionExpression") is not None)
        proj = writes.projection_of(spec, names)
        names.check_unused()
        parsed = [rows.request_key(t, k) for k in keys]
        if len({p[0] for p in parsed}) != len(parsed):
            raise Invalid(DUPLICATES)
        plan.append((name, t, spec, proj, parsed))

    def fn(c: Connection) -> tuple[dict[str, list[Any]], dict[str, Any]]:
        out: dict[str, list[Any]] = {}
        left: dict[str, Any] = {}
        size = 0
        for name, t, spec, proj, parsed in plan:
            got = out.setdefault(name, [])
            for i, (k, _key) in enumerate(parsed):
                if size >= BATCH_GET_BYTES:
                    rest = {**{f: v for f, v in spec.items() if f != "Keys"}, "Keys": [p[1] for p in parsed[i:]]}
                    left[name] = rest
                    break
                item = rows.fetch(c, t.id, k)
                if item is not None:
                    size += values.item_size(item)
                    got.append(evaluate.project(item, proj) if proj is not None else item)
        return out, left

    try:
        found, left = await db.storage.read(fn)
    except OperationalError:
        return {"Responses": {}, "UnprocessedKeys": {n: spec for n, _, spec, _, _ in plan}}
    return {"Responses": found, "UnprocessedKeys": left}


async def batch_write(db: Database, ns: str, req: dict[str, Any]) -> dict[str, Any]:
    items = _request_items(req)
    ws: list[writes.Write] = []
    for name, reqs in items.items():
        t = await db.table(ns, name)
        if not isinstance(reqs, list) or not reqs:
            raise Invalid("1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: "
                          "Member must have length greater than or equal to 1")
        for r in reqs:
            if not isinstance(r, dict) or len(r) != 1 or not ({"PutRequest", "DeleteRequest"} & set(r)):
                raise Invalid("1 validation error detected: Value null at 'requestItems' failed to satisfy "
                              "constraint: each write request must contain exactly one of PutRequest or DeleteRequest")
            inner = r.get("PutRequest", r.get("DeleteRequest")) or {}
            if not isinstance(inner, dict):
                raise Invalid("1 validation error detected: a PutRequest or DeleteRequest must be an object")
            if "PutRequest" in r:
                ws.append(writes.prepare_put(t, {"Item": inner.get("Item")}))
            else:
                ws.append(writes.prepare_delete(t, {"Key": inner.get("Key")}))
    if len(ws) > MAX_BATCH_WRITE:
        raise Invalid("Too many items requested for the BatchWriteItem call")
    if len({(w.t.id, w.k) for w in ws}) != len(ws):
        raise Invalid(DUPLICATES)
    now = db.clock()

    def fn(c: Connection) -> None:
        for w in ws:
            writes.run(c, ns, w, now)

    try:
        await db.write_items(ns, fn, [w.lock() for w in ws] if db.shared else [], small=True)
    except OperationalError:
        return {"UnprocessedItems": items}
    if any(w.t.stream_view or w.t.changes for w in ws):
        db.changed()
    return {"UnprocessedItems": {}}


_ACTIONS = {"Put": writes.prepare_put, "Delete": writes.prepare_delete, "Update": writes.prepare_update,
            "ConditionCheck": writes.prepare_check}


def _token(req: dict[str, Any], ns: str) -> tuple[str, str] | None:
    tok = req.get("ClientRequestToken")
    if tok is None:
        return None
    if not isinstance(tok, str) or not 1 <= len(tok) <= 36:
        raise Invalid(f"1 validation error detected: Value '{tok}' at 'clientRequestToken' failed to satisfy "
                      "constraint: Member must have length less than or equal to 36")
    digest = hashlib.sha256(json.dumps(req.get("TransactItems"), sort_keys=True).encode()).hexdigest()
    return f"{ns}/{tok}", digest


async def transact_write(db: Database, ns: str, req: dict[str, Any]) -> dict[str, Any]:
    actions = req.get("TransactItems")
    if not isinstance(actions, list) or not 1 <= len(actions) <= MAX_TRANSACT:
        raise Invalid(f"1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member "
                      f"must have length less than or equal to {MAX_TRANSACT} and greater than or equal to 1")
    ws: list[writes.Write] = []
    for a in actions:
        if not isinstance(a, dict) or len(a) != 1 or next(iter(a)) not in _ACTIONS:
            raise Invalid("TransactItems can only contain one of Check, Put, Update or Delete")
        kind, spec = next(iter(a.items()))
        if not isinstance(spec, dict):
            raise Invalid(f"1 validation error detected: a transaction's {kind} must be an object")
        t = await db.table(ns, spec.get("TableName"))
        ws.append(_ACTIONS[kind](t, spec))
    if len({(w.t.id, w.k) for w in ws}) != len(ws):
        raise Invalid("Transaction request cannot include multiple operations on one item")
    token = _token(req, ns)
    now = db.clock()

    def fn(c: Connection) -> bool:
        if token is not None:
            c.execute(delete(db_tokens).where(db_tokens.c.created_at < now - TOKEN_TTL))
            seen = c.execute(select(db_tokens.c.digest).where(db_tokens.c.token == token[0])).first()
            if seen is not None:
                if seen[0] != token[1]:
                    raise IdempotentMismatch("Request parameters do not match the request that first used this "
                                             "ClientRequestToken")
                return False  # applied already: succeed again without writing
        olds: list[dict[str, Any] | None] = []
        reasons: list[Reason] = []
        failed = False
        for w in ws:
            try:
                olds.append(writes.check(c, w))
                reasons.append(Reason())
            except ConditionFailed as e:
                olds.append(None)
                reasons.append(Reason("ConditionalCheckFailed", e.message, e.item))
                failed = True
        if not failed:
            for i, w in enumerate(ws):
                try:
                    writes.apply(c, ns, w, olds[i], now)
                except Invalid as e:
                    reasons[i] = Reason("ValidationError", e.message)
                    failed = True
                    break
        if failed:
            raise TransactionCanceled(reasons)
        if token is not None:
            c.execute(db_tokens.insert().values(token=token[0], digest=token[1], created_at=now))
        return True

    try:
        applied = await db.write_items(ns, fn, [w.lock() for w in ws] if db.shared else [], small=True)
    except DbError:
        raise
    except OperationalError:
        raise TransactionCanceled([Reason("TransactionConflict", "Transaction is ongoing for the item")
                                   for _ in ws]) from None
    if applied and any(w.t.stream_view or w.t.changes for w in ws):
        db.changed()
    out: dict[str, Any] = {}
    if req.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
        per: dict[str, float] = {}
        for w in ws:
            per[w.t.name] = per.get(w.t.name, 0.0) + 2 * write_units(1)
        out["ConsumedCapacity"] = [{"TableName": n, "CapacityUnits": u} for n, u in per.items()]
    return out


async def transact_get(db: Database, ns: str, req: dict[str, Any]) -> dict[str, Any]:
    actions = req.get("TransactItems")
    if not isinstance(actions, list) or not 1 <= len(actions) <= MAX_TRANSACT:
        raise Invalid(f"1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member "
                      f"must have length less than or equal to {MAX_TRANSACT} and greater than or equal to 1")
    plan = []
    for a in actions:
        spec = a.get("Get") if isinstance(a, dict) else None
        if not isinstance(spec, dict):
            raise Invalid("TransactGetItems can only contain Get actions")
        t = await db.table(ns, spec.get("TableName"))
        k, _ = rows.request_key(t, spec.get("Key"))
        names = Names(spec.get("ExpressionAttributeNames"), None, spec.get("ProjectionExpression") is not None)
        proj = writes.projection_of(spec, names)
        names.check_unused()
        plan.append((t, k, proj))
    if len({(t.id, k) for t, k, _ in plan}) != len(plan):
        raise Invalid("Transaction request cannot include multiple operations on one item")

    def fn(c: Connection) -> list[dict[str, Any]]:
        out = []
        for t, k, proj in plan:
            item = rows.fetch(c, t.id, k)
            out.append({} if item is None else {"Item": evaluate.project(item, proj) if proj is not None else item})
        return out

    return {"Responses": await db.storage.read(fn)}
