"""Typed attribute values: validation, number normalisation, comparison, item size, ordered key bytes.

Values keep their wire form everywhere (`{"S": "x"}`, `{"N": "1.5"}`, `{"B": "<base64>"}`, `{"L": [...]}` …),
so an item read from storage is returned without conversion. `check_item` validates a client's item and
normalises its numbers the way DynamoDB stores them: at most 38 significant digits, magnitudes 1E-130 to
9.99…E+125 (and their negatives), leading and trailing zeros trimmed, written without an exponent
(`"1.50"` → `"1.5"`, `"1E+2"` → `"100"`, `"-0"` → `"0"`).

`key_bytes` encodes a key attribute so that comparing the bytes (SQLite BLOB, PostgreSQL bytea: memcmp)
orders exactly as DynamoDB orders the values: S by their UTF-8 bytes, B by their bytes, N numerically.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import functools
import hashlib
import re
from decimal import Decimal
from typing import Any

from polyfn.db.errors import Invalid

SCALARS = ("S", "N", "B")
TYPES = frozenset({"S", "N", "B", "BOOL", "NULL", "L", "M", "SS", "NS", "BS"})
MAX_ITEM = 400 * 1024
MAX_HASH_KEY = 2048
MAX_RANGE_KEY = 1024
MAX_DEPTH = 32

_NUM_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
# wide enough to parse any accepted literal exactly; arithmetic rounds to 38 digits
_PARSE = decimal.Context(prec=200, Emax=999999, Emin=-999999)
ARITH = decimal.Context(prec=38, Emax=125, Emin=-130, traps=[decimal.Inexact, decimal.Overflow, decimal.Underflow,
                                                               decimal.InvalidOperation])
NOT_A_NUMBER = "A value provided cannot be converted into a number"
TOO_PRECISE = "Attempting to store more than 38 significant digits in a Number"
OVERFLOW = "Number overflow. Attempting to store a number with magnitude larger than supported range"
UNDERFLOW = "Number underflow. Attempting to store a number with magnitude smaller than supported range"


# -- numbers ------------------------------------------------------------------------------------------


def to_decimal(text: str) -> Decimal:
    """A client's number literal as an exact, range-checked Decimal (DynamoDB's errors otherwise)."""
    if not isinstance(text, str) or not _NUM_RE.match(text):
        raise Invalid(NOT_A_NUMBER)
    d = _PARSE.create_decimal(text)
    return checked(d)


def checked(d: Decimal) -> Decimal:
    if not d:
        return Decimal(0)
    d = d.normalize(_PARSE)
    if len(d.as_tuple().digits) > 38:
        raise Invalid(TOO_PRECISE)
    adj = d.adjusted()
    if adj > 125:
        raise Invalid(OVERFLOW)
    if adj < -130:
        raise Invalid(UNDERFLOW)
    return d


def num_text(d: Decimal) -> str:
    """DynamoDB's canonical text of a checked number: plain notation, no needless zeros."""
    if not d:
        return "0"
    return format(d, "f")


def norm_number(text: str) -> str:
    if not isinstance(text, str):  # (before the cache: a list is not hashable)
        raise Invalid(NOT_A_NUMBER)
    return _norm_number(text)


@functools.lru_cache(maxsize=4096)  # (pure; the same numbers come again and again: keys, counters, 0 and 1)
def _norm_number(text: str) -> str:
    return num_text(to_decimal(text))


def arith(op: str, a: Decimal, b: Decimal) -> Decimal:
    """`a + b` or `a - b` as DynamoDB computes them in UpdateExpressions and ADD (38 digits, same range)."""
    try:
        out = ARITH.add(a, b) if op == "+" else ARITH.subtract(a, b)
    except decimal.Inexact:
        raise Invalid(TOO_PRECISE) from None
    except decimal.Overflow:
        raise Invalid(OVERFLOW) from None
    except decimal.Underflow:
        raise Invalid(UNDERFLOW) from None
    return checked(out)


# -- validation ---------------------------------------------------------------------------------------


def b64decode(text: Any) -> bytes:
    if not isinstance(text, str):
        raise Invalid("Invalid Binary value: expected a base64-encoded string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("Invalid Binary value: not valid base64") from None


def _type_of(v: Any) -> str:
    if not isinstance(v, dict) or not v:
        raise Invalid("Supplied AttributeValue is empty, must contain exactly one of the supported datatypes")
    if len(v) > 1:
        raise Invalid("Supplied AttributeValue has more than one datatypes set, must contain exactly one of the "
                      "supported datatypes")
    (t,) = v
    if t not in TYPES:
        raise Invalid("Supplied AttributeValue is empty, must contain exactly one of the supported datatypes")
    return t


def check_value(v: Any, depth: int = 0) -> dict[str, Any]:
    """A client's attribute value, validated, with its numbers normalised (a new dict)."""
    if depth > MAX_DEPTH:
        raise Invalid("Nesting Levels have exceeded supported limits: "
                      "Attribute value nesting level cannot exceed 32")
    t = _type_of(v)
    x = v[t]
    if t == "S":
        if not isinstance(x, str):
            raise Invalid("Invalid attribute value type: S must be a string")
        return v
    if t == "N":
        return {"N": norm_number(x)}
    if t == "B":
        b64decode(x)
        return v
    if t == "BOOL":
        if not isinstance(x, bool):
            raise Invalid("Invalid attribute value type: BOOL must be true or false")
        return v
    if t == "NULL":
        if x is not True:
            raise Invalid("One or more parameter values were invalid: Null attribute value types must have the "
                          "value of true")
        return v
    if t == "L":
        if not isinstance(x, list):
            raise Invalid("Invalid attribute value type: L must be a list")
        return {"L": [check_value(e, depth + 1) for e in x]}
    if t == "M":
        if not isinstance(x, dict):
            raise Invalid("Invalid attribute value type: M must be a map")
        return {"M": {_name(k): check_value(e, depth + 1) for k, e in x.items()}}
    return {t: check_set(t, x)}


def check_set(t: str, x: Any) -> list[Any]:
    kind = {"SS": "string", "NS": "number", "BS": "binary"}[t]
    if not isinstance(x, list):
        raise Invalid(f"Invalid attribute value type: {t} must be a list")
    if not x:
        raise Invalid(f"One or more parameter values were invalid: An {kind} set  may not be empty")
    if t == "SS":
        if not all(isinstance(e, str) for e in x):
            raise Invalid("Invalid attribute value type: SS elements must be strings")
        out = list(x)
        keys: list[Any] = out
    elif t == "NS":
        out = [norm_number(e) for e in x]
        keys = out
    else:
        for e in x:
            b64decode(e)
        out = list(x)
        keys = [b64decode(e) for e in x]
    if len(set(keys)) != len(keys):
        raise Invalid(f"One or more parameter values were invalid: Input collection [{', '.join(map(str, x))}] "
                      "contains duplicates.")
    return out


def _name(k: Any) -> str:
    if not isinstance(k, str):
        raise Invalid("Attribute names must be strings")
    return k


def check_item(item: Any, what: str = "Item") -> dict[str, Any]:
    if not isinstance(item, dict):
        raise Invalid(f"{what} must be a map of attribute names to attribute values")
    out = {}
    for k, v in item.items():
        if not isinstance(k, str) or not k:
            raise Invalid("One or more parameter values were invalid: An AttributeName cannot be empty")
        if type(v) is dict and len(v) == 1:  # (the common values inline: a string as is, a number normalised)
            x = v.get("S")
            if type(x) is str:
                out[k] = v
                continue
            x = v.get("N")
            if type(x) is str:
                out[k] = {"N": _norm_number(x)}
                continue
        out[k] = check_value(v)
    return out


def check_item_sized(item: Any) -> tuple[dict[str, Any], int]:
    """`check_item(item)` and `item_size` of what it gives, in one pass (a PutItem's item)."""
    if not isinstance(item, dict):
        raise Invalid("Item must be a map of attribute names to attribute values")
    out = {}
    size = 0
    for k, v in item.items():
        if not isinstance(k, str) or not k:
            raise Invalid("One or more parameter values were invalid: An AttributeName cannot be empty")
        size += len(k) if k.isascii() else len(k.encode())
        if type(v) is dict and len(v) == 1:  # (the common values inline: a string as is, a number normalised)
            x = v.get("S")
            if type(x) is str:
                out[k] = v
                size += len(x) if x.isascii() else len(x.encode())
                continue
            x = v.get("N")
            if type(x) is str:
                n = _norm_number(x)
                out[k] = {"N": n}
                size += _num_size_of(n)
                continue
        out[k] = checked_v = check_value(v)
        size += value_size(checked_v)
    return out, size


# -- comparison ---------------------------------------------------------------------------------------


def type_of(v: dict[str, Any]) -> str:
    return next(iter(v))


def scalar_key(v: dict[str, Any]) -> Any:
    """A value that orders as DynamoDB orders S, N and B values of one type."""
    t = type_of(v)
    if t == "N":
        return Decimal(v["N"])
    if t == "S":
        return v["S"].encode()
    if t == "B":
        return b64decode(v["B"])
    return None


def _set_members(t: str, x: list[Any]) -> frozenset[Any]:
    if t == "NS":
        return frozenset(Decimal(e) for e in x)
    if t == "BS":
        return frozenset(b64decode(e) for e in x)
    return frozenset(x)


def equal(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return False
    ta, tb = type_of(a), type_of(b)
    if ta != tb:
        return False
    x, y = a[ta], b[tb]
    if ta == "N":
        return Decimal(x) == Decimal(y)
    if ta == "B":
        return b64decode(x) == b64decode(y)
    if ta in ("SS", "NS", "BS"):
        return _set_members(ta, x) == _set_members(ta, y)
    if ta == "L":
        return len(x) == len(y) and all(equal(p, q) for p, q in zip(x, y, strict=True))
    if ta == "M":
        return x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)
    return bool(x == y)


def size_of(v: dict[str, Any]) -> int | None:
    """`size(path)`: a string's or binary's length in bytes, a set's, list's or map's element count."""
    t = type_of(v)
    x = v[t]
    if t == "S":
        return len(x.encode())
    if t == "B":
        return len(b64decode(x))
    if t in ("SS", "NS", "BS", "L", "M"):
        return len(x)
    return None


# -- sizes ----------------------------------------------------------------------------------------------


def value_size(v: dict[str, Any]) -> int:
    t = type_of(v)
    x = v[t]
    if t == "S":
        return len(x.encode())
    if t == "N":
        return _num_size(x)
    if t == "B":
        return len(x) * 3 // 4 - x.count("=", -2)
    if t in ("BOOL", "NULL"):
        return 1
    if t == "SS":
        return sum(len(e.encode()) for e in x)
    if t == "NS":
        return sum(_num_size(e) for e in x)
    if t == "BS":
        return sum(len(e) * 3 // 4 - e.count("=", -2) for e in x)
    if t == "L":
        return 3 + sum(1 + value_size(e) for e in x)
    return 3 + sum(1 + len(k.encode()) + value_size(e) for k, e in x.items())


def _num_size(text: str) -> int:
    digits = len(text.replace("-", "").replace(".", "").strip("0")) or 1
    return (digits + 1) // 2 + 1


_num_size_of = functools.lru_cache(maxsize=4096)(_num_size)  # (a normalised number's, as `_norm_number` caches)


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names' UTF-8 bytes plus their values' sizes (docs: item sizes)."""
    return sum(len(k.encode()) + value_size(v) for k, v in item.items())


# -- ordered key bytes ----------------------------------------------------------------------------------


def key_bytes(v: dict[str, Any]) -> bytes:
    """Bytes of a key value (S, N or B) whose memcmp order is DynamoDB's order of such values."""
    t = type_of(v)
    if t == "S":
        return v["S"].encode()
    if t == "B":
        return b64decode(v["B"])
    x = v["N"]
    return _number_key(x) if isinstance(x, str) else number_bytes(Decimal(x))


@functools.lru_cache(maxsize=4096)
def _number_key(text: str) -> bytes:
    return number_bytes(Decimal(text))


def number_bytes(d: Decimal) -> bytes:
    """Zero < positives (by exponent, then digits) and negatives before both, mirrored: a sign byte, the
    exponent (-130..125) in one byte, one byte per significant digit; negatives complement both and end with
    0xFF so that a longer digit string (a larger magnitude at the same exponent) sorts first."""
    if not d:
        return b"\x80"
    sign, digits, _ = d.as_tuple()
    exp = d.adjusted() + 130
    if not sign:
        return bytes((0xC0, exp, *(x + 1 for x in digits)))
    return bytes((0x40, 255 - exp, *(0x0B - x for x in digits), 0xFF))


def segment_hash(pk: bytes) -> int:
    """Where a partition key falls in a Scan: 31 bits of a hash, so segment i of n covers a range of them
    (and a Scan visits partitions in hash order, as DynamoDB does)."""
    return int.from_bytes(hashlib.blake2b(pk, digest_size=4).digest(), "big") >> 1


HASH_SPACE = 1 << 31
