"""Evaluating parsed expressions against items: conditions, update actions, projections, key conditions.

Pure functions over wire-form items (see `values`); an item that does not exist is `None` (every
comparison on it is false, `attribute_not_exists` true).
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from typing import Any

from polyfn.db import values
from polyfn.db.errors import Invalid
from polyfn.db.expr import (
    And,
    Arith,
    Between,
    Compare,
    Func,
    IfNotExists,
    In,
    ListAppend,
    Literal,
    Not,
    Or,
    Path,
    PathRef,
    Size,
    Update,
)

INVALID_PATH = "The document path provided in the update expression is invalid for update"
BAD_OPERAND = "An operand in the update expression has an incorrect data type"
MISSING_OPERAND = "The provided expression refers to an attribute that does not exist in the item"


def get_path(item: dict[str, Any] | None, path: Path) -> dict[str, Any] | None:
    if item is None:
        return None
    cur: Any = item.get(path[0])  # type: ignore[call-overload]
    for part in path[1:]:
        if cur is None:
            return None
        if isinstance(part, int):
            lst = cur.get("L")
            if lst is None or part >= len(lst):
                return None
            cur = lst[part]
        else:
            m = cur.get("M")
            if m is None:
                return None
            cur = m.get(part)
    return cur


def operand(x: Any, item: dict[str, Any] | None) -> dict[str, Any] | None:
    if isinstance(x, Literal):
        return x.value
    if isinstance(x, PathRef):
        return get_path(item, x.path)
    if isinstance(x, Size):
        v = get_path(item, x.path)
        n = values.size_of(v) if v is not None else None
        return None if n is None else {"N": str(n)}
    raise TypeError(x)


def _ordered(a: dict[str, Any] | None, b: dict[str, Any] | None) -> tuple[Any, Any] | None:
    if a is None or b is None:
        return None
    ta, tb = values.type_of(a), values.type_of(b)
    if ta != tb or ta not in values.SCALARS:
        return None
    return values.scalar_key(a), values.scalar_key(b)


def compare(op: str, a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if op == "=":
        return values.equal(a, b)
    if op == "<>":
        return not values.equal(a, b)
    pair = _ordered(a, b)
    if pair is None:
        return False
    x, y = pair
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def check(cond: Any, item: dict[str, Any] | None) -> bool:
    """Does `item` satisfy the condition?"""
    if isinstance(cond, And):
        return check(cond.left, item) and check(cond.right, item)
    if isinstance(cond, Or):
        return check(cond.left, item) or check(cond.right, item)
    if isinstance(cond, Not):
        return not check(cond.operand, item)
    if isinstance(cond, Compare):
        return compare(cond.op, operand(cond.left, item), operand(cond.right, item))
    if isinstance(cond, Between):
        v = operand(cond.operand, item)
        lo, hi = operand(cond.low, item), operand(cond.high, item)
        a, b = _ordered(v, lo), _ordered(v, hi)
        return a is not None and b is not None and a[1] <= a[0] <= b[1]
    if isinstance(cond, In):
        v = operand(cond.operand, item)
        return any(values.equal(v, operand(o, item)) for o in cond.options)
    if isinstance(cond, Func):
        return _function(cond, item)
    raise TypeError(cond)


def _function(f: Func, item: dict[str, Any] | None) -> bool:
    v = operand(f.args[0], item)
    if f.name == "attribute_exists":
        return v is not None
    if f.name == "attribute_not_exists":
        return v is None
    arg = operand(f.args[1], item)
    if v is None or arg is None:
        return False
    t, ta = values.type_of(v), values.type_of(arg)
    if f.name == "regexp":  # not in DynamoDB's language: the wx.cloud face's db.RegExp
        return t == "S" and regexp(arg["S"]).search(v["S"]) is not None
    if f.name == "attribute_type":
        return t == arg["S"]
    if f.name == "begins_with":
        if t != ta or t not in ("S", "B"):
            return False
        return bool(values.scalar_key(v).startswith(values.scalar_key(arg)))
    # contains
    if t == "S" and ta == "S":
        return arg["S"] in v["S"]
    if t == "B" and ta == "B":
        return values.scalar_key(arg) in values.scalar_key(v)
    if t in ("SS", "NS", "BS") and ta == t[0]:
        return any(values.equal({ta: e}, arg) for e in v[t])
    if t == "L":
        return any(values.equal(e, arg) for e in v["L"])
    return False


@functools.lru_cache(maxsize=256)
def regexp(pattern: str) -> Any:
    """A compiled RE2 pattern (linear time: a client's pattern cannot make a scan backtrack forever)."""
    import re2

    try:
        return re2.compile(pattern)
    except re2.error as e:
        raise Invalid(f"invalid regular expression {pattern!r}: {e}") from None


def check_between_bounds(cond: Any, what: str) -> None:
    """A BETWEEN whose literal bounds are out of order is refused, as DynamoDB does."""
    if isinstance(cond, (And, Or)):
        check_between_bounds(cond.left, what)
        check_between_bounds(cond.right, what)
    elif isinstance(cond, Not):
        check_between_bounds(cond.operand, what)
    elif isinstance(cond, Between) and isinstance(cond.low, Literal) and isinstance(cond.high, Literal):
        pair = _ordered(cond.low.value, cond.high.value)
        if pair is not None and pair[0] > pair[1]:
            raise Invalid(f"Invalid {what}: The BETWEEN operator requires upper bound to be greater than or equal "
                          f"to lower bound; lower bound operand: AttributeValue: {_show(cond.low.value)}, upper "
                          f"bound operand: AttributeValue: {_show(cond.high.value)}")


def _show(v: dict[str, Any]) -> str:
    t = values.type_of(v)
    return f"{{{t}:{v[t]}}}"


# -- updates ----------------------------------------------------------------------------------------------


_SMALL_INT = re.compile(r"-?[0-9]{1,18}").fullmatch  # (exact in a machine-sized int, far inside 38 digits)


def _arith(op: str, a: str, b: str) -> str:
    """`a op b` of two stored numbers' texts, as DynamoDB's text."""
    if _SMALL_INT(a) and _SMALL_INT(b):  # a counter's `n + :one`: integers, the same text Decimal gives
        return str(int(a) + int(b) if op == "+" else int(a) - int(b))
    return values.num_text(values.arith(op, Decimal(a), Decimal(b)))


def _set_value(x: Any, item: dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(x, Arith):
        a, b = _set_value(x.left, item), _set_value(x.right, item)
        if values.type_of(a) != "N" or values.type_of(b) != "N":
            raise Invalid(BAD_OPERAND)
        return {"N": _arith(x.op, a["N"], b["N"])}
    if isinstance(x, IfNotExists):
        v = get_path(item, x.path)
        return v if v is not None else _set_value(x.default, item)
    if isinstance(x, ListAppend):
        a, b = _set_value(x.left, item), _set_value(x.right, item)
        if values.type_of(a) != "L" or values.type_of(b) != "L":
            raise Invalid(BAD_OPERAND)
        return {"L": a["L"] + b["L"]}
    v = operand(x, item)
    if v is None:
        raise Invalid(MISSING_OPERAND)
    return v


def _walk(item: dict[str, Any], path: Path) -> Any:
    cur: Any = item
    for i, part in enumerate(path[:-1]):
        if isinstance(cur, dict):
            if not isinstance(part, str):
                return None
            nxt = cur.get(part)
        else:
            if not isinstance(part, int) or part >= len(cur):
                return None
            nxt = cur[part]
        if nxt is None:
            return None
        want = "L" if isinstance(path[i + 1], int) else "M"
        cur = nxt.get(want)
        if cur is None:
            return None
    return cur


def set_path(item: dict[str, Any], path: Path, v: dict[str, Any]) -> None:
    parent = _walk(item, path)
    last = path[-1]
    if parent is None or isinstance(parent, dict) != isinstance(last, str):
        raise Invalid(INVALID_PATH)
    if isinstance(parent, dict):
        parent[last] = v
    elif last >= len(parent):  # type: ignore[operator]
        parent.append(v)
    else:
        parent[last] = v  # type: ignore[index]


def remove_path(item: dict[str, Any], path: Path) -> None:
    parent = _walk(item, path)
    last = path[-1]
    if parent is None:
        return
    if isinstance(parent, dict):
        if isinstance(last, str):
            parent.pop(last, None)
    elif isinstance(last, int) and last < len(parent):
        del parent[last]


def _copy(x: Any) -> Any:
    """A deep copy of an item (dicts, lists and immutable leaves): `copy.deepcopy`'s generality cost ten times
    as much."""
    if type(x) is dict:
        return {k: _copy(v) for k, v in x.items()}
    if type(x) is list:
        return [_copy(v) for v in x]
    return x


def apply_update(u: Update, item: dict[str, Any] | None, key_names: tuple[str, ...]) -> dict[str, Any]:
    """The item after the update's actions, each evaluated against the item as it was before."""
    paths = u.paths()
    for p in paths:
        if p[0] in key_names:
            raise Invalid(f"One or more parameter values were invalid: Cannot update attribute {p[0]}. This "
                          "attribute is part of the key")
    new_values = [(p, _set_value(x, item)) for p, x in u.set]
    # (top-level paths only change the item's own dict, never a value inside it: a shallow copy keeps the old
    # item as it was)
    out = ({**item} if all(len(p) == 1 for p in paths) else _copy(item)) if item is not None else {}
    for p, v in new_values:
        set_path(out, p, v)
    for p in sorted(u.remove, key=lambda q: [(-e if isinstance(e, int) else 0) for e in q]):
        remove_path(out, p)
    for p, lit in u.add:
        _add(out, p, lit)
    for p, lit in u.delete:
        _delete(out, p, lit)
    return out


def _add(item: dict[str, Any], path: Path, lit: Literal) -> None:
    v = lit.value
    t = values.type_of(v)
    if t not in ("N", "SS", "NS", "BS"):
        raise Invalid("Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, "
                      f"operand type: {_TYPE_WORDS.get(t, t)}")
    cur = get_path(item, path)
    if cur is None:
        set_path(item, path, v)
        return
    ct = values.type_of(cur)
    if ct != t:
        raise Invalid(BAD_OPERAND)
    if t == "N":
        set_path(item, path, {"N": _arith("+", cur["N"], v["N"])})
    else:
        merged = list(cur[t]) + [e for e in v[t] if not any(values.equal({t: [e]}, {t: [c]}) for c in cur[t])]
        set_path(item, path, {t: merged})


def _delete(item: dict[str, Any], path: Path, lit: Literal) -> None:
    v = lit.value
    t = values.type_of(v)
    if t not in ("SS", "NS", "BS"):
        raise Invalid("Invalid UpdateExpression: Incorrect operand type for operator or function; operator: "
                      f"DELETE, operand type: {_TYPE_WORDS.get(t, t)}")
    cur = get_path(item, path)
    if cur is None:
        return
    if values.type_of(cur) != t:
        raise Invalid(BAD_OPERAND)
    kept = [c for c in cur[t] if not any(values.equal({t: [c]}, {t: [e]}) for e in v[t])]
    if kept:
        set_path(item, path, {t: kept})
    else:
        remove_path(item, path)


_TYPE_WORDS = {"S": "STRING", "N": "NUMBER", "B": "BINARY", "BOOL": "BOOLEAN", "NULL": "NULL", "L": "LIST",
               "M": "MAP", "SS": "SET", "NS": "SET", "BS": "SET"}


# -- projections ------------------------------------------------------------------------------------------


def project(item: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    """The parts of `item` that `paths` name, in the item's shape (list elements keep their order)."""
    tree: dict[Any, Any] = {}
    for p in paths:
        node = tree
        for part in p[:-1]:
            nxt = node.get(part)
            if nxt is True:
                break
            node = node.setdefault(part, {})
        else:
            node[p[-1]] = True
    out = {}
    for name, sel in tree.items():
        if isinstance(name, str) and name in item:
            v = _extract(item[name], sel)
            if v is not None:
                out[name] = v
    return out


def _extract(v: dict[str, Any], sel: Any) -> dict[str, Any] | None:
    if sel is True:
        return v
    t = values.type_of(v)
    if t == "M":
        m = {}
        for k, s in sel.items():
            if isinstance(k, str) and k in v["M"]:
                x = _extract(v["M"][k], s)
                if x is not None:
                    m[k] = x
        return {"M": m} if m else None
    if t == "L":
        lst = []
        for i in sorted(k for k in sel if isinstance(k, int)):
            if i < len(v["L"]):
                x = _extract(v["L"][i], sel[i])
                if x is not None:
                    lst.append(x)
        return {"L": lst} if lst else None
    return None
