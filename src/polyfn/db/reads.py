"""Query and Scan: key conditions to key ranges, pages of at most `Limit` items and 1 MB read, filters,
projections, index reads and parallel-scan segments.

A page reads rows in key order (a Query: the partition's sort key order, or reversed; a Scan: the partition
keys' hash order, then sort key), stops after `Limit` rows or once 1 MB has been read, and then returns
`LastEvaluatedKey` (the last row read), so the next page starts after it — DynamoDB's paging, including its
habit of returning a LastEvaluatedKey when a page ended exactly at the last item.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, select, tuple_
from sqlalchemy.engine import Connection

from polyfn.db import evaluate, rows, values
from polyfn.db.core import Database, capacity, read_units
from polyfn.db.errors import Invalid
from polyfn.db.expr import And, Between, Compare, Func, Literal, Names, PathRef, Size, parse_condition
from polyfn.db.schema import Index, Key, TableDef
from polyfn.db.storage import db_index_rows, db_items
from polyfn.db.writes import condition_of, projection_of

PAGE_BYTES = 1024 * 1024
CHUNK = 500
BAD_START = "The provided starting key is invalid: The provided key element does not match the schema"


# -- key conditions ---------------------------------------------------------------------------------------


def _parts(cond: Any) -> list[Any]:
    if isinstance(cond, And):
        return _parts(cond.left) + _parts(cond.right)
    return [cond]


def _operator_name(c: Any) -> str:
    name = type(c).__name__
    return {"Or": "OR", "Not": "NOT", "In": "IN", "Size": "size"}.get(name, c.name if isinstance(c, Func) else name)


def _attr(x: Any) -> str | None:
    return x.path[0] if isinstance(x, PathRef) and len(x.path) == 1 else None


def key_condition(cond: Any, key: Key) -> tuple[dict[str, Any], tuple[Any, ...] | None]:
    """(the partition key's value, the sort key condition `(op, value[, value])` or None)."""
    found: dict[str, tuple[Any, ...]] = {}
    for p in _parts(cond):
        if isinstance(p, Compare):
            if p.op == "<>":
                raise Invalid(f"Unsupported operator on KeyConditionExpression: operator: {p.op}")
            name, lit, op = _attr(p.left), p.right, p.op
            if name is None and _attr(p.right) is not None:
                name, lit = _attr(p.right), p.left
                op = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)
            if name is None or not isinstance(lit, Literal):
                raise Invalid("Invalid KeyConditionExpression: The expression can only contain key attributes and "
                              "values")
            spec: tuple[Any, ...] = (op, lit.value)
        elif isinstance(p, Between):
            name = _attr(p.operand)
            if name is None or not isinstance(p.low, Literal) or not isinstance(p.high, Literal):
                raise Invalid("Invalid KeyConditionExpression: The expression can only contain key attributes and "
                              "values")
            spec = ("BETWEEN", p.low.value, p.high.value)
        elif isinstance(p, Func) and p.name == "begins_with":
            name = _attr(p.args[0])
            if name is None or not isinstance(p.args[1], Literal):
                raise Invalid("Invalid KeyConditionExpression: The expression can only contain key attributes and "
                              "values")
            spec = ("begins_with", p.args[1].value)
        else:
            raise Invalid(f"Invalid operator used in KeyConditionExpression: {_operator_name(p)}")
        if name in found:
            raise Invalid("KeyConditionExpressions must only contain one condition per key")
        found[name] = spec
    if key.hash not in found:
        raise Invalid(f"Query condition missed key schema element: {key.hash}")
    extra = set(found) - set(key.names())
    if extra:
        raise Invalid(f"Query condition missed key schema element: {key.range or key.hash}" if key.range
                      and key.range not in found else "Query key condition not supported")
    h = found[key.hash]
    if h[0] != "=":
        raise Invalid("Query key condition not supported")
    if values.type_of(h[1]) != key.hash_type:
        raise Invalid("One or more parameter values were invalid: Condition parameter type does not match schema type")
    r = found.get(key.range) if key.range else None
    if r is not None:
        for v in r[1:]:
            if values.type_of(v) != key.range_type:
                raise Invalid("One or more parameter values were invalid: Condition parameter type does not match "
                              "schema type")
        if r[0] == "begins_with" and key.range_type == "N":
            raise Invalid("Invalid KeyConditionExpression: Incorrect operand type for operator or function; operator "
                          "or function: begins_with, operand type: N")
    return h[1], r


def _successor(prefix: bytes) -> bytes | None:
    p = prefix.rstrip(b"\xff")
    return p[:-1] + bytes((p[-1] + 1,)) if p else None


def _range_clause(col: Any, spec: tuple[Any, ...]) -> list[Any]:
    op = spec[0]
    b = values.key_bytes(spec[1])
    if op == "=":
        return [col == b]
    if op == "<":
        return [col < b]
    if op == "<=":
        return [col <= b]
    if op == ">":
        return [col > b]
    if op == ">=":
        return [col >= b]
    if op == "BETWEEN":
        hi = values.key_bytes(spec[2])
        return [col >= b, col <= hi]
    succ = _successor(b)  # begins_with
    return [col >= b] + ([col < succ] if succ is not None else [])


# -- pages ------------------------------------------------------------------------------------------------


class Source:
    """Which rows a read walks (the table or one index) and how its rows order."""

    def __init__(self, t: TableDef, ix: Index | None):
        self.t, self.ix = t, ix
        if ix is None:
            c = db_items.c
            self.cols, self.where = (c.h, c.pk, c.sk), [c.tid == t.id]
            self.item, self.size = c.item, c.size
            self.table = db_items
        else:
            c = db_index_rows.c
            self.cols, self.where = (c.h, c.ipk, c.isk, c.pk, c.sk), [c.tid == t.id, c.ix == ix.name]
            self.item, self.size = c.item, c.size
            self.table = db_index_rows

    def key_of(self, item: dict[str, Any]) -> dict[str, Any]:
        names = list(self.t.key.names())
        if self.ix is not None:
            names += [n for n in self.ix.key.names() if n not in names]
        return {n: item[n] for n in names if n in item}

    def start_tuple(self, esk: Any) -> tuple[Any, ...]:
        """The ordering columns' values of ExclusiveStartKey."""
        if not isinstance(esk, dict):
            raise Invalid(BAD_START)
        esk = values.check_item(esk, "ExclusiveStartKey")
        want = set(self.t.key.names()) | (set(self.ix.key.names()) if self.ix else set())
        if set(esk) != want:
            raise Invalid(BAD_START)
        try:
            k = rows.item_key(self.t.key, esk)
            if self.ix is None:
                return (k.h, k.pk, k.sk)
            ik = rows.index_key(self.t, self.ix, esk)
        except Invalid:
            raise Invalid(BAD_START) from None
        assert ik is not None
        ih = k.h if self.ix.local else values.segment_hash(ik[0])
        return (ih, ik[0], ik[1], k.pk, k.sk)


def read_page(c: Connection, src: Source, where: list[Any], order: tuple[Any, ...], forward: bool,
              start: tuple[Any, ...] | None, limit: int | None, keep: Callable[[dict[str, Any]], bool]
              ) -> tuple[list[dict[str, Any]], int, int, dict[str, Any] | None]:
    """(kept items, rows read, bytes read, LastEvaluatedKey or None). `order`: the ordering columns past the
    fixed ones, `start` their values to start after."""
    out: list[dict[str, Any]] = []
    scanned = read = 0
    last: dict[str, Any] | None = None
    cursor = start
    while True:
        want = CHUNK if limit is None else min(CHUNK, limit - scanned)
        q: Select[Any] = select(src.item, src.size, *order).where(*src.where, *where)
        if cursor is not None:
            tup, cur = tuple_(*order), tuple_(*cursor)
            q = q.where(tup > cur if forward else tup < cur)
        q = q.order_by(*(col if forward else col.desc() for col in order)).limit(want)
        got = c.execute(q).all()
        for r in got:
            item = rows.decode(r[0])
            scanned += 1
            read += r[1]
            if keep(item):
                out.append(item)
            if (limit is not None and scanned >= limit) or read >= PAGE_BYTES:
                return out, scanned, read, src.key_of(item)
        if len(got) < want:
            return out, scanned, read, last
        cursor = tuple(got[-1][2:])


def _select(req: dict[str, Any], ix: Index | None, proj: list[Any] | None) -> str:
    sel = req.get("Select")
    if sel is None:
        return "SPECIFIC_ATTRIBUTES" if proj is not None else "ALL_PROJECTED_ATTRIBUTES" if ix else "ALL_ATTRIBUTES"
    if sel not in ("ALL_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES", "SPECIFIC_ATTRIBUTES", "COUNT"):
        raise Invalid(f"1 validation error detected: Value '{sel}' at 'select' failed to satisfy constraint: Member "
                      "must satisfy enum value set: [SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, "
                      "ALL_PROJECTED_ATTRIBUTES]")
    if sel == "SPECIFIC_ATTRIBUTES" and proj is None:
        raise Invalid("SPECIFIC_ATTRIBUTES requires ProjectionExpression or AttributesToGet")
    if sel != "SPECIFIC_ATTRIBUTES" and proj is not None:
        raise Invalid(f"Cannot specify the ProjectionExpression when choosing to get {sel}")
    if sel == "ALL_PROJECTED_ATTRIBUTES" and ix is None:
        raise Invalid("ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")
    if sel == "ALL_ATTRIBUTES" and ix is not None and not ix.local and ix.projection != "ALL":
        raise Invalid(f"One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not supported for "
                      f"global secondary index {ix.name} because its projection type is not ALL")
    return str(sel)


def _shape(t: TableDef, ix: Index | None, sel: str, proj: list[Any] | None) -> Callable[[dict[str, Any]], Any]:
    if proj is not None:
        return lambda item: evaluate.project(item, proj)
    keep = ix.projects(t.key) if ix is not None and sel == "ALL_PROJECTED_ATTRIBUTES" else None
    if keep is None:
        return lambda item: item
    return lambda item: {k: v for k, v in item.items() if k in keep}


def _limit(req: dict[str, Any]) -> int | None:
    limit = req.get("Limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise Invalid(f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member "
                      "must have value greater than or equal to 1")
    return limit


def _index(t: TableDef, req: dict[str, Any]) -> Index | None:
    name = req.get("IndexName")
    if name is None:
        return None
    ix = t.index(name)
    if req.get("ConsistentRead") and not ix.local:
        raise Invalid("Consistent reads are not supported on global secondary indexes")
    return ix


def _result(items: list[dict[str, Any]], scanned: int, read: int, last: dict[str, Any] | None, sel: str,
            shape: Callable[[dict[str, Any]], Any], req: dict[str, Any], t: TableDef) -> dict[str, Any]:
    out: dict[str, Any] = {"Count": len(items), "ScannedCount": scanned}
    if sel != "COUNT":
        out["Items"] = [shape(i) for i in items]
    if last is not None:
        out["LastEvaluatedKey"] = last
    out.update(capacity(req, t.name, read_units(read, bool(req.get("ConsistentRead")))))
    return out


async def query(db: Database, ns: str, req: dict[str, Any]) -> dict[str, Any]:
    t = await db.table(ns, req.get("TableName"))
    ix = _index(t, req)
    if req.get("KeyConditions") is not None or req.get("QueryFilter") is not None:
        raise Invalid("The legacy parameters KeyConditions and QueryFilter are not supported: use "
                      "KeyConditionExpression and FilterExpression")
    if req.get("KeyConditionExpression") is None:
        raise Invalid("Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.")
    names = Names(req.get("ExpressionAttributeNames"), req.get("ExpressionAttributeValues"), True)
    kc = parse_condition(req["KeyConditionExpression"], names, "KeyConditionExpression")
    evaluate.check_between_bounds(kc, "KeyConditionExpression")
    key = ix.key if ix is not None else t.key
    hv, rc = key_condition(kc, key)
    filt = condition_of(req, names, "FilterExpression")
    if filt is not None:
        for p in _paths(filt):
            if p in key.names():
                raise Invalid(f"Filter Expression can only contain non-primary key attributes: Primary key attribute: "
                              f"{p}")
    proj = projection_of(req, names)
    names.check_unused()
    sel = _select(req, ix, proj)
    limit = _limit(req)
    forward = req.get("ScanIndexForward", True) is not False
    src = Source(t, ix)
    pkb = values.key_bytes(hv)
    h = values.segment_hash(pkb)  # an LSI's rows sit under the table's partition, a GSI's under its own
    if ix is None:
        c = db_items.c
        where = [c.h == h, c.pk == pkb] + (_range_clause(c.sk, rc) if rc else [])
        order: tuple[Any, ...] = (c.sk,)
    else:
        c2 = db_index_rows.c
        where = [c2.h == h, c2.ipk == pkb] + (_range_clause(c2.isk, rc) if rc else [])
        order = (c2.isk, c2.pk, c2.sk)
    start = None
    if req.get("ExclusiveStartKey") is not None:
        full = src.start_tuple(req["ExclusiveStartKey"])
        start = full[2:]  # past (h, partition key): the sort order within the partition
    keep = (lambda item: evaluate.check(filt, item)) if filt is not None else (lambda item: True)
    items, scanned, read, last = await db.storage.read(
        lambda conn: read_page(conn, src, where, order, forward, start, limit, keep))
    return _result(items, scanned, read, last, sel, _shape(t, ix, sel, proj), req, t)


def _paths(cond: Any) -> set[str]:
    out: set[str] = set()
    _walk_paths(cond, out)
    return out


def _walk_paths(x: Any, out: set[str]) -> None:
    """(A module function, not a nested one: a recursive closure refers to itself through its cell, a reference
    cycle per request left to the cyclic collector.)"""
    if isinstance(x, (PathRef, Size)):
        out.add(str(x.path[0]))
    elif hasattr(x, "__dataclass_fields__"):
        for f in x.__dataclass_fields__:
            v = getattr(x, f)
            for e in v if isinstance(v, tuple) else (v,):
                _walk_paths(e, out)


async def scan(db: Database, ns: str, req: dict[str, Any]) -> dict[str, Any]:
    t = await db.table(ns, req.get("TableName"))
    ix = _index(t, req)
    if req.get("ScanFilter") is not None:
        raise Invalid("The legacy parameter ScanFilter is not supported: use FilterExpression")
    any_expr = req.get("FilterExpression") is not None or req.get("ProjectionExpression") is not None
    names = Names(req.get("ExpressionAttributeNames"), req.get("ExpressionAttributeValues"), any_expr)
    filt = condition_of(req, names, "FilterExpression")
    proj = projection_of(req, names)
    names.check_unused()
    sel = _select(req, ix, proj)
    limit = _limit(req)
    seg, total = req.get("Segment"), req.get("TotalSegments")
    if (seg is None) != (total is None):
        missing = "TotalSegments" if total is None else "Segment"
        present = "Segment" if total is None else "TotalSegments"
        raise Invalid(f"The {missing} parameter is required but was not present in the request when {present} "
                      "parameter is present")
    src = Source(t, ix)
    where: list[Any] = []
    if total is not None:
        if not isinstance(total, int) or not 1 <= total <= 1000000:
            raise Invalid(f"1 validation error detected: Value '{total}' at 'totalSegments' failed to satisfy "
                          "constraint: Member must have value less than or equal to 1000000")
        if not isinstance(seg, int) or seg < 0 or seg >= total:
            raise Invalid(f"The Segment parameter is zero-based and must be less than parameter TotalSegments: "
                          f"Segment: {seg} is not less than TotalSegments: {total}")
        hcol = src.cols[0]
        where = [hcol >= seg * values.HASH_SPACE // total, hcol <= (seg + 1) * values.HASH_SPACE // total - 1]
    start = src.start_tuple(req["ExclusiveStartKey"]) if req.get("ExclusiveStartKey") is not None else None
    keep = (lambda item: evaluate.check(filt, item)) if filt is not None else (lambda item: True)
    items, scanned, read, last = await db.storage.read(
        lambda conn: read_page(conn, src, where, src.cols, True, start, limit, keep))
    return _result(items, scanned, read, last, sel, _shape(t, ix, sel, proj), req, t)


async def matching(db: Database, t: TableDef, keep: Callable[[dict[str, Any]], bool],
                   want: int | None = None) -> list[dict[str, Any]]:
    """The table's items that `keep` takes, in Scan order, at least `want` of them when there are (None:
    all): a Scan with a filter, paged by 1 MB reads as DynamoDB pages it, the pages followed for the caller."""
    src = Source(t, None)
    out: list[dict[str, Any]] = []
    start: tuple[Any, ...] | None = None
    while want is None or len(out) < want:
        items, _, _, last = await db.storage.read(
            lambda conn, start=start: read_page(conn, src, [], src.cols, True, start, None, keep))
        out.extend(items)
        if last is None:
            break
        start = src.start_tuple(last)
    return out
