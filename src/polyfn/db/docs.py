"""Documents ↔ items: the JSON documents of WeChat's cloud database as the core's typed items.

A document is JSON: strings, numbers, booleans, null, arrays and objects, plus a date, which travels as
`{"$date": <epoch milliseconds>}` (what the SDKs turn a JS `Date` into) and is stored as that one-entry map,
so a date compares through the core as the number inside it. `{"$serverDate": {"offset": ms}}` in data
becomes the node's time (plus the offset) when it is written. Field names may not be empty, contain `.` or
start with `$` (they would be ambiguous with paths and operators).

Pure: the clock comes in as `now` (epoch seconds).
"""

from __future__ import annotations

import itertools
import os
import secrets
from decimal import Decimal
from typing import Any

from polyfn.db import values
from polyfn.db.errors import Invalid

DATE = "$date"
SERVER_DATE = "$serverDate"
MAX_DEPTH = 32

_PREFIX = secrets.token_hex(4)
_COUNTER = itertools.count(int.from_bytes(os.urandom(3), "big"))


def _reseed() -> None:
    """A forked child (the tests' node fork server: tests/e2e/nodefork.py) gets a prefix and counter of its own."""
    global _PREFIX, _COUNTER
    _PREFIX = secrets.token_hex(4)
    _COUNTER = itertools.count(int.from_bytes(os.urandom(3), "big"))


os.register_at_fork(after_in_child=_reseed)


def new_id(now: float) -> str:
    """A document id shaped like WeChat's: 32 hex digits, the creation second in the middle (a node prefix,
    the time, a counter and randomness), so ids made by many nodes at once never collide."""
    return f"{_PREFIX}{int(now) & 0xFFFFFFFF:08x}{next(_COUNTER) & 0xFFFFFF:06x}{secrets.token_hex(5)}"


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise Invalid("field names must be non-empty strings")
    if "." in name or name.startswith("$"):
        raise Invalid(f"field name {name!r} is not allowed: names may not contain '.' or start with '$'")
    return name


def _number(x: int | float) -> dict[str, str]:
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        raise Invalid("numbers must be finite")
    return {"N": values.norm_number(repr(x) if isinstance(x, float) else str(x))}


def is_date(x: Any) -> bool:
    return isinstance(x, dict) and len(x) == 1 and DATE in x


def to_value(x: Any, now: float, depth: int = 0) -> dict[str, Any]:
    """A JSON value as a typed attribute value (dates as `{"M": {"$date": {"N": ms}}}`)."""
    if depth > MAX_DEPTH:
        raise Invalid(f"documents may nest at most {MAX_DEPTH} levels")
    if x is None:
        return {"NULL": True}
    if isinstance(x, bool):
        return {"BOOL": x}
    if isinstance(x, (int, float)):
        return _number(x)
    if isinstance(x, str):
        return {"S": x}
    if isinstance(x, list):
        return {"L": [to_value(e, now, depth + 1) for e in x]}
    if isinstance(x, dict):
        if len(x) == 1 and DATE in x:
            ms = x[DATE]
            if isinstance(ms, bool) or not isinstance(ms, (int, float)):
                raise Invalid("a date is {\"$date\": <epoch milliseconds>}")
            return {"M": {DATE: _number(ms)}}
        if len(x) == 1 and SERVER_DATE in x:
            spec = x[SERVER_DATE] if isinstance(x[SERVER_DATE], dict) else {}
            offset = spec.get("offset", 0)
            if isinstance(offset, bool) or not isinstance(offset, (int, float)):
                raise Invalid("serverDate's offset must be a number of milliseconds")
            return {"M": {DATE: _number(int(now * 1000) + offset)}}
        return {"M": {check_name(k): to_value(v, now, depth + 1) for k, v in x.items()}}
    raise Invalid(f"unsupported value of type {type(x).__name__}")


def from_value(v: dict[str, Any]) -> Any:
    t = values.type_of(v)
    x = v[t]
    if t == "S" or t == "BOOL":
        return x
    if t == "N":
        return int(x) if "." not in x and "e" not in x.lower() else float(x)
    if t == "NULL":
        return None
    if t == "L":
        return [from_value(e) for e in x]
    if t == "M":
        return {k: from_value(e) for k, e in x.items()}
    if t in ("SS", "NS", "BS"):  # written through the DynamoDB face: shown as arrays
        return [from_value({t[0]: e}) for e in x]
    return x  # B: its base64 text


def to_item(doc: Any, now: float) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise Invalid("a document must be an object")
    item = {check_name(k): to_value(v, now, 1) for k, v in doc.items()}
    if values.item_size(item) > values.MAX_ITEM:
        raise Invalid(f"the document is larger than {values.MAX_ITEM // 1024} KB")
    return item


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: from_value(v) for k, v in item.items()}


# -- ordering ---------------------------------------------------------------------------------------------

# MongoDB's order of types, which WeChat's database keeps: null (and missing) < numbers < strings < objects
# < arrays < booleans < dates
_RANK = {"NULL": 1, "N": 2, "S": 3, "M": 4, "L": 5, "B": 6, "BOOL": 8}


def sort_key(v: dict[str, Any] | None) -> tuple[Any, ...]:
    """A key ordering attribute values as WeChat's orderBy does."""
    if v is None:
        return (1, 0)
    t = values.type_of(v)
    if t == "M" and len(v["M"]) == 1 and DATE in v["M"]:
        return (9, Decimal(v["M"][DATE].get("N", "0")))
    if t == "N":
        return (2, Decimal(v["N"]))
    if t == "S":
        return (3, v["S"].encode())
    if t == "BOOL":
        return (8, v["BOOL"])
    if t in ("M", "L"):
        return (_RANK[t], values.item_size({"": v}), str(v))
    return (_RANK.get(t, 7), str(v[t]))
