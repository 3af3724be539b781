"""WeChat's query and update language, compiled onto the core's expression trees (`expr.py`), so the core's
evaluator decides what matches and how an item changes — there is no second evaluator.

Queries are what `where()` takes, as the SDKs send them: `{"done": false, "n": {"$gt": 3}, "a.b": "x",
"$or": [{…}, {…}]}`. A plain nested object is a set of nested-field conditions (`{style: {color: 'red'}}`
is `{'style.color': 'red'}`, as WeChat reads it). Operators: `$eq $neq $gt $gte $lt $lte $in $nin $exists
$and $or $regex` (with `$options`: `i`, `m`, `s`). As in WeChat (MongoDB underneath), an equality or `$in`
also matches an array holding the value, and `$neq`/`$nin` match documents without the field. Comparing
with a date compares the dates.

Updates are what `update({data})` takes: plain values set fields (nested objects update field by field),
and `{"$inc": n}`, `{"$push": v | [v…] | {"$each": […], "$position": i}}`, `{"$pull": v | {operator…}}`,
`{"$remove": true}`, `{"$set": value}` (replace a field whole). Missing parents are created as objects.
An update compiles against the document it changes (`compile_update(data, old)`, inside the write's
transaction), because what a path means (`tags.0`: an array element or an object field) and which parents
are missing depends on it.
"""

from __future__ import annotations

from typing import Any

from polyfn.db import docs, evaluate, values
from polyfn.db.errors import Invalid
from polyfn.db.expr import And, Compare, Func, In, Literal, Not, Or, Path, PathRef, Update

COMPARE = {"$eq": "=", "$neq": "<>", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
UPDATE_OPS = ("$inc", "$push", "$pull", "$remove", "$set")
MAX_IN = 1000
_ELEMENT = "$v"  # the name an array element gets while `$pull` tests it
TRUE = Func("attribute_not_exists", (PathRef(("$nothing",)),))  # no field is named "$nothing"
FALSE = Not(TRUE)


class CommandError(Invalid):
    """A query or update the language does not allow (WeChat's "invalid database command")."""


def _lit(v: dict[str, Any]) -> Literal:
    return Literal(v, ":v")


def split_path(field: Any) -> tuple[str, ...]:
    if not isinstance(field, str) or not field or any(not p for p in field.split(".")):
        raise CommandError(f"invalid field path {field!r}")
    return tuple(field.split("."))


def query_path(parts: tuple[str, ...]) -> Path:
    """A query's field path: numeric parts index arrays (`tags.0`)."""
    return tuple(int(p) if p.isdigit() else p for p in parts)


def is_operator(x: Any) -> bool:
    return isinstance(x, dict) and bool(x) and all(isinstance(k, str) and k.startswith("$") for k in x) \
        and not docs.is_date(x) and docs.SERVER_DATE not in x


def _and(conds: list[Any]) -> Any:
    out = None
    for c in conds:
        out = c if out is None else And(out, c)
    return out


def _or(conds: list[Any]) -> Any:
    out = None
    for c in conds:
        out = c if out is None else Or(out, c)
    return out


# -- queries ------------------------------------------------------------------------------------------------


def compile_query(q: Any, now: float, prefix: tuple[str, ...] = ()) -> Any:
    """The condition a document must meet (None: every document)."""
    if q is None:
        return None
    if not isinstance(q, dict):
        raise CommandError("a query must be an object of field conditions")
    conds = []
    for k, v in q.items():
        if k in ("$and", "$or") and not prefix:
            if not isinstance(v, list) or not v:
                raise CommandError(f"{k[1:]} takes a non-empty array of queries")
            parts = [compile_query(e, now) for e in v]
            parts = [p if p is not None else TRUE for p in parts]
            conds.append(_and(parts) if k == "$and" else _or(parts))
            continue
        path = prefix + split_path(k)
        if isinstance(v, dict) and not is_operator(v) and not docs.is_date(v):
            sub = compile_query(v, now, path)  # a nested object: conditions on nested fields
            if sub is not None:
                conds.append(sub)
            elif not v:
                conds.append(_equal(query_path(path), {"M": {}}))
            continue
        conds.append(field_condition(query_path(path), v, now))
    return _and(conds)


def field_condition(path: Path, v: Any, now: float) -> Any:
    """One field's condition: a value (equality) or an operator object."""
    if not is_operator(v):
        return _equal(path, docs.to_value(v, now))
    conds = []
    if "$regex" in v:
        conds.append(_regex(path, v.get("$regex"), v.get("$options", "")))
    for op, arg in v.items():
        if op in ("$regex", "$options"):
            continue
        conds.append(_operator(path, op, arg, now))
    return _and(conds)


def _operator(path: Path, op: str, arg: Any, now: float) -> Any:
    ref = PathRef(path)
    if op == "$eq":
        return _equal(path, docs.to_value(arg, now))
    if op in ("$neq", "$ne"):
        return Not(_equal(path, docs.to_value(arg, now)))
    if op in COMPARE:
        value = docs.to_value(arg, now)
        if docs.is_date(arg) or (isinstance(arg, dict) and docs.SERVER_DATE in arg):
            return Compare(COMPARE[op], PathRef((*path, docs.DATE)), _lit(value["M"][docs.DATE]))
        return Compare(COMPARE[op], ref, _lit(value))
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise CommandError(f"{op[1:]} takes an array")
        if len(arg) > MAX_IN:
            raise CommandError(f"{op[1:]} takes at most {MAX_IN} values")
        lits = tuple(_lit(docs.to_value(e, now)) for e in arg)
        found = _or([In(ref, lits), *[_array_holds(path, x) for x in lits if "L" not in x.value]]) if lits \
            else FALSE
        return found if op == "$in" else Not(found)
    if op == "$exists":
        return Func("attribute_exists" if arg else "attribute_not_exists", (ref,))
    if op in ("$and", "$or"):
        if not isinstance(arg, list) or not arg:
            raise CommandError(f"{op[1:]} takes a non-empty array of conditions")
        parts = [field_condition(path, e, now) for e in arg]
        return _and(parts) if op == "$and" else _or(parts)
    if op == "$not":
        return Not(field_condition(path, arg, now))
    raise CommandError(f"unknown query operator {op!r}")


def _equal(path: Path, value: dict[str, Any]) -> Any:
    eq = Compare("=", PathRef(path), _lit(value))
    return eq if "L" in value else Or(eq, _array_holds(path, _lit(value)))


def _array_holds(path: Path, lit: Literal) -> Any:
    ref = PathRef(path)
    return And(Func("attribute_type", (ref, _lit({"S": "L"}))), Func("contains", (ref, lit)))


def _regex(path: Path, pattern: Any, options: Any) -> Any:
    if not isinstance(pattern, str) or not isinstance(options, str):
        raise CommandError("RegExp takes {regexp: string, options: string}")
    flags = "".join(sorted(set(options) & set("ims")))
    if set(options) - set("ims"):
        raise CommandError(f"RegExp options {options!r}: only i, m and s are supported")
    source = f"(?{flags}){pattern}" if flags else pattern
    evaluate.regexp(source)  # refuse a bad pattern now, not per document
    return Func("regexp", (PathRef(path), _lit({"S": source})))


def id_lookup(q: Any) -> list[str] | None:
    """The ids a query names with `_id: "x"` or `_id: {$in: […]}` at its top level (then the documents are
    fetched by key rather than found by a scan), or None."""
    if not isinstance(q, dict):
        return None
    v = q.get("_id")
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict) and set(v) == {"$eq"} and isinstance(v["$eq"], str):
        return [v["$eq"]]
    if isinstance(v, dict) and set(v) == {"$in"} and isinstance(v["$in"], list) and len(v["$in"]) <= MAX_IN \
            and all(isinstance(e, str) for e in v["$in"]):
        return list(dict.fromkeys(v["$in"]))
    return None


# -- projections --------------------------------------------------------------------------------------------


def projection(spec: Any) -> tuple[bool, list[Path]] | None:
    """`field({a: true, 'b.c': true})` → (include, paths); `field({a: false})` → exclude. None: everything."""
    if spec is None or spec == {}:
        return None
    if not isinstance(spec, dict):
        raise CommandError("field() takes an object of field: true | false")
    include = {bool(v) for k, v in spec.items() if k != "_id"}
    if len(include) > 1:
        raise CommandError("field() cannot mix included and excluded fields")
    inc = include.pop() if include else bool(spec.get("_id", True))
    paths = [query_path(split_path(k)) for k, v in spec.items() if bool(v) == inc and k != "_id"]
    if inc and spec.get("_id", True):
        paths.append(("_id",))
    if not inc and spec.get("_id", True) is False:
        paths.append(("_id",))
    return inc, paths


def project(item: dict[str, Any], proj: tuple[bool, list[Path]] | None) -> dict[str, Any]:
    if proj is None:
        return item
    include, paths = proj
    if include:
        return evaluate.project(item, paths)
    out = dict(item)
    for p in paths:
        if len(p) == 1:
            out.pop(str(p[0]), None)
        else:
            out = evaluate.apply_update(Update(remove=[p]), out, ())
    return out


# -- updates ------------------------------------------------------------------------------------------------


def flatten_update(data: Any, protected: tuple[str, ...] = ("_id",)) -> list[tuple[tuple[str, ...], Any]]:
    """`update({data})` as (path, value or operator) pairs; nested plain objects update field by field."""
    if not isinstance(data, dict) or not data:
        raise CommandError("update takes a non-empty data object")
    out: list[tuple[tuple[str, ...], Any]] = []
    _flatten((), data, protected, out)
    return out


def _flatten(prefix: tuple[str, ...], d: dict[str, Any], protected: tuple[str, ...],
             out: list[tuple[tuple[str, ...], Any]]) -> None:
    """(A module function, not a nested one: a recursive closure refers to itself through its cell, a reference
    cycle per update left to the cyclic collector.)"""
    for k, v in d.items():
        path = prefix + split_path(k)
        if path[0] in protected:
            raise CommandError(f"{path[0]} cannot be updated")
        if isinstance(v, dict) and v and not is_operator(v) and not docs.is_date(v) \
                and docs.SERVER_DATE not in v:  # a plain object: its fields one by one
            _flatten(path, v, protected, out)
        else:
            if is_operator(v) and (len(v) != 1 or next(iter(v)) not in UPDATE_OPS):
                raise CommandError(f"unknown update operator in {k!r}: use one of "
                                   f"{', '.join(o[1:] for o in UPDATE_OPS)}")
            out.append((path, v))


def _resolve(old: dict[str, Any] | None, parts: tuple[str, ...]) -> tuple[Path, int]:
    """The core path of `parts` in `old` (numeric parts of arrays become indexes) and how many leading parts
    exist as containers there."""
    path: list[str | int] = []
    cur: Any = {"M": old or {}}
    depth = 0
    for i, p in enumerate(parts):
        if cur is not None and "L" in cur and p.isdigit():
            path.append(int(p))
            cur = cur["L"][int(p)] if int(p) < len(cur["L"]) else None
        else:
            path.append(p)
            cur = cur["M"].get(p) if cur is not None and "M" in cur else None
        if i < len(parts) - 1 and cur is not None and ("M" in cur or "L" in cur):
            depth = i + 1
        elif i < len(parts) - 1:
            break
    return tuple(path) + tuple(parts[len(path):]), depth


def _nest(parts: tuple[str, ...], leaf: dict[str, Any]) -> dict[str, Any]:
    for p in reversed(parts):
        leaf = {"M": {p: leaf}}
    return leaf


def compile_update(data: list[tuple[tuple[str, ...], Any]], old: dict[str, Any] | None, now: float) -> Update:
    """The core `Update` that applies `data` (from `flatten_update`) to `old`."""
    u = Update()
    created: dict[Path, dict[str, Any]] = {}  # missing parents, made whole with what goes inside them
    for parts, v in data:
        path, depth = _resolve(old, parts)
        current = evaluate.get_path(old, path)
        op, arg = next(iter(v.items())) if is_operator(v) else ("$set", v)
        if op == "$remove":
            if current is not None:
                u.remove.append(path)
            continue
        if op == "$inc":
            if isinstance(arg, bool) or not isinstance(arg, (int, float)):
                raise CommandError("inc takes a number")
            value: dict[str, Any] = docs.to_value(arg, now)
            if current is not None or depth == len(parts) - 1:
                u.add.append((path, _lit(value)))
                continue
        elif op == "$push":
            value = {"L": _pushed(current, arg, now)}
        elif op == "$pull":
            if current is None or "L" not in current:
                continue
            value = {"L": [e for e in current["L"] if not _pulls(arg, e, now)]}
        else:  # a value, or $set: the field whole
            value = docs.to_value(arg, now)
        if depth == len(parts) - 1:
            u.set.append((path, _lit(value)))
            continue
        top = path[:depth + 1]  # the first missing parent: set it whole, merging every update under it
        nested = _nest(tuple(str(p) for p in path[depth + 1:]), value)
        created[top] = _merge(created.get(top), nested)
    u.set.extend((p, _lit(v)) for p, v in created.items())
    return u


def _merge(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    if a is None or "M" not in a or "M" not in b:
        return b
    out = dict(a["M"])
    for k, v in b["M"].items():
        out[k] = _merge(out.get(k), v)
    return {"M": out}


def _pushed(current: dict[str, Any] | None, arg: Any, now: float) -> list[Any]:
    have = list(current["L"]) if current is not None and "L" in current else []
    if current is not None and "L" not in current:
        raise CommandError("push needs an array field")
    position = None
    if isinstance(arg, dict) and "$each" in arg:
        items, position = arg["$each"], arg.get("$position")
        if not isinstance(items, list):
            raise CommandError("push's each takes an array")
        if position is not None and (isinstance(position, bool) or not isinstance(position, int)):
            raise CommandError("push's position takes an integer")
    else:
        items = arg if isinstance(arg, list) else [arg]
    new = [docs.to_value(e, now) for e in items]
    if position is None:
        return have + new
    at = position if position >= 0 else max(0, len(have) + position)
    return have[:at] + new + have[at:]


def _pulls(arg: Any, element: dict[str, Any], now: float) -> bool:
    """Does `$pull: arg` take this array element? A value takes equal elements; an operator or a query
    object takes the elements meeting it (evaluated by the core against the element)."""
    if is_operator(arg):
        return evaluate.check(field_condition((_ELEMENT,), arg, now), {_ELEMENT: element})
    if isinstance(arg, dict) and not docs.is_date(arg) and "M" in element:
        cond = compile_query(arg, now)
        return cond is None or evaluate.check(cond, element["M"])
    return values.equal(element, docs.to_value(arg, now))
