"""Item writes as prepared values: a request is validated and parsed once (`prepare_*`), then checked and
applied inside a storage transaction (`check`, `apply`). PutItem/UpdateItem/DeleteItem run one; BatchWriteItem
and TransactWriteItems run several in one transaction (a transaction checks every condition before it
applies anything).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from polyfn.db import evaluate, rows, values
from polyfn.db.errors import ConditionFailed, Invalid
from polyfn.db.expr import Names, Path, parse_condition, parse_projection, parse_update
from polyfn.db.schema import TableDef

ITEM_TOO_LARGE = "Item size has exceeded the maximum allowed size"
UPDATE_TOO_LARGE = "Item size to update has exceeded the maximum allowed size"


@dataclass
class Write:
    t: TableDef
    k: rows.RowKey
    cond: Any = None
    on_fail: bool = False  # ReturnValuesOnConditionCheckFailure=ALL_OLD
    make: Callable[[dict[str, Any] | None], dict[str, Any] | None] | None = None  # old → new (None: delete)
    deletes: bool = False
    paths: list[Path] = field(default_factory=list)  # an update's paths (UPDATED_OLD/UPDATED_NEW)
    key: dict[str, Any] = field(default_factory=dict)
    size: int | None = None  # the new item's size (a put's when it was checked, an update's when it was made)

    def lock(self) -> int:
        return self.k.lock(self.t.id)


def projection_of(req: dict[str, Any], names: Names) -> list[Path] | None:
    """ProjectionExpression (or the legacy AttributesToGet) as paths, or None for every attribute."""
    if req.get("ProjectionExpression") is not None:
        if req.get("AttributesToGet") is not None:
            raise Invalid("Can not use both expression and non-expression parameters in the same request: "
                          "Non-expression parameters: {AttributesToGet} Expression parameters: {ProjectionExpression}")
        return parse_projection(req["ProjectionExpression"], names)
    atg = req.get("AttributesToGet")
    if atg is not None:
        if not isinstance(atg, list) or not atg:
            raise Invalid("1 validation error detected: Value '[]' at 'attributesToGet' failed to satisfy "
                          "constraint: Member must have length greater than or equal to 1")
        if len(set(atg)) != len(atg):
            raise Invalid(f"One or more parameter values were invalid: Duplicate value in attribute name: {atg}")
        return [(str(a),) for a in atg]
    return None


def condition_of(req: dict[str, Any], names: Names, name: str = "ConditionExpression") -> Any:
    if req.get("Expected") is not None:
        raise Invalid("The legacy parameter Expected is not supported: use ConditionExpression")
    src = req.get(name)
    if src is None:
        return None
    cond = parse_condition(src, names, name)
    evaluate.check_between_bounds(cond, name)
    return cond


def on_fail(req: dict[str, Any]) -> bool:
    v = req.get("ReturnValuesOnConditionCheckFailure") or "NONE"
    if v not in ("ALL_OLD", "NONE"):
        raise Invalid(f"1 validation error detected: Value '{v}' at 'returnValuesOnConditionCheckFailure' failed to "
                      "satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]")
    return bool(v == "ALL_OLD")


def _names(req: dict[str, Any], *fields: str) -> Names:
    return Names(req.get("ExpressionAttributeNames"), req.get("ExpressionAttributeValues"),
                 any(req.get(f) is not None for f in fields))


def prepare_put(t: TableDef, req: dict[str, Any]) -> Write:
    if req.get("Item") is None:
        raise Invalid("1 validation error detected: Value null at 'item' failed to satisfy constraint: Member "
                      "must not be null")
    item, size = values.check_item_sized(req["Item"])
    if size > values.MAX_ITEM:
        raise Invalid(ITEM_TOO_LARGE)
    k = rows.item_key(t.key, item)
    if t.indexes:
        rows.check_index_keys(t, item)
    if (req.get("ConditionExpression") is None and req.get("ExpressionAttributeNames") is None
            and req.get("ExpressionAttributeValues") is None and req.get("Expected") is None):
        cond = None  # (the common put: no expression, nothing to check the names and values against)
    else:
        names = _names(req, "ConditionExpression")
        cond = condition_of(req, names)
        names.check_unused()
    return Write(t, k, cond, on_fail(req), make=lambda _old: item, key=rows.key_attrs(t.key, item), size=size)


def prepare_delete(t: TableDef, req: dict[str, Any]) -> Write:
    k, key = rows.request_key(t, req.get("Key"))
    names = _names(req, "ConditionExpression")
    cond = condition_of(req, names)
    names.check_unused()
    return Write(t, k, cond, on_fail(req), make=lambda _old: None, deletes=True, key=key)


def prepare_check(t: TableDef, req: dict[str, Any]) -> Write:
    k, key = rows.request_key(t, req.get("Key"))
    if req.get("ConditionExpression") is None:
        raise Invalid("1 validation error detected: Value null at 'transactItems.1.member.conditionCheck."
                      "conditionExpression' failed to satisfy constraint: Member must not be null")
    names = _names(req, "ConditionExpression")
    cond = condition_of(req, names)
    names.check_unused()
    return Write(t, k, cond, on_fail(req), key=key)


def prepare_update(t: TableDef, req: dict[str, Any]) -> Write:
    k, key = rows.request_key(t, req.get("Key"))
    if req.get("AttributeUpdates") is not None:
        raise Invalid("The legacy parameter AttributeUpdates is not supported: use UpdateExpression")
    names = _names(req, "UpdateExpression", "ConditionExpression")
    upd = parse_update(req["UpdateExpression"], names) if req.get("UpdateExpression") is not None else None
    cond = condition_of(req, names)
    names.check_unused()
    key_names = t.key.names()
    w = Write(t, k, cond, on_fail(req), paths=upd.paths() if upd is not None else [], key=key)
    # (the write through a weak reference: a closure over `w` itself, kept as `w.make`, made a reference cycle per
    # UpdateItem — ~18 objects left to the cyclic collector, a generation-0 collection every ~40 updates)
    written = weakref.ref(w)

    def make(old: dict[str, Any] | None) -> dict[str, Any]:
        new = evaluate.apply_update(upd, old, key_names) if upd is not None else dict(old or {})
        new.update(key)
        size = values.item_size(new)
        if size > values.MAX_ITEM:
            raise Invalid(UPDATE_TOO_LARGE)
        rows.check_index_keys(t, new)
        made = written()
        if made is not None:  # (the new item's size, summed once: its row and the answer's capacity use it)
            made.size = size
        return new

    w.make = make
    return w


def check(c: Connection, w: Write) -> dict[str, Any] | None:
    """The current item, after checking the write's condition against it (ConditionFailed otherwise)."""
    old = rows.fetch(c, w.t.id, w.k)
    if w.cond is not None and not evaluate.check(w.cond, old):
        raise ConditionFailed(old if w.on_fail else None)
    return old


def apply(c: Connection, ns: str, w: Write, old: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
    """Write the new item (or delete it); returns the new item (None when deleted or a condition check)."""
    if w.make is None:
        return old
    new = w.make(old)
    if new is None:
        if old is not None:
            rows.remove(c, w.t, w.k, old)
            rows.record_change(c, ns, w.t, old, None, now)
        return None
    rows.store(c, w.t, w.k, new, old, w.size if w.size is not None else values.item_size(new))
    rows.record_change(c, ns, w.t, old, new, now)
    return new


def run(c: Connection, ns: str, w: Write, now: float) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    old = check(c, w)
    return old, apply(c, ns, w, old, now)


def blind(w: Write, want_old: bool) -> bool:
    """True when a put needs nothing of the item it replaces: no condition, no index rows to move, no change
    record, the old item not asked for — then it is written without reading it first (`run_blind`)."""
    t = w.t
    return w.cond is None and not want_old and not t.indexes and not t.stream_view and not t.changes


def run_blind(c: Connection, w: Write) -> tuple[None, dict[str, Any] | None]:
    assert w.make is not None
    new = w.make(None)
    assert new is not None
    rows.store(c, w.t, w.k, new, None, w.size if w.size is not None else values.item_size(new))
    return None, new
