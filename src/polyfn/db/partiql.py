"""PartiQL for DynamoDB's ExecuteStatement, the subset on one table: SELECT (a Query when the WHERE clause fixes
the partition key, else a Scan), INSERT … VALUE {…}, UPDATE … SET/REMOVE … WHERE <key>, DELETE … WHERE <key>.

The statement is translated into the core's own expression language (names → `#n…`, literals and `?`
parameters → `:v…`) and run through the core's operations, so conditions behave exactly as in the
expression API. A SELECT's `NextToken` is the page's LastEvaluatedKey, encoded.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from polyfn.db import access, evaluate, reads, values
from polyfn.db.core import Database
from polyfn.db.errors import ConditionFailed, DbError, Invalid
from polyfn.db.expr import And, Compare, Literal, Names, PathRef, parse_condition

_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:[^']|'')*')
  | (?P<qid>"(?:[^"]|"")+")
  | (?P<num>-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><<|>>|<>|!=|<=|>=|[=<>(),.\[\]{}:?*])
)""", re.X)


class DuplicateItem(DbError):
    kind = "DuplicateItemException"
    status = 400


def _tokens(src: str) -> list[tuple[str, str]]:
    out, i = [], 0
    src = src.rstrip().rstrip(";")
    while i < len(src):
        m = _TOKEN.match(src, i)
        if m is None or m.end() == i:
            raise Invalid(f"Statement wasn't well formed, can't be processed: unexpected input at {src[i:i + 20]!r}")
        kind = m.lastgroup or ""
        text = m.group(kind)
        out.append((kind, text))
        i = m.end()
        while i < len(src) and src[i].isspace():
            i += 1
    return out


class _Stmt:
    def __init__(self, src: Any, params: Any):
        if not isinstance(src, str) or not src.strip():
            raise Invalid("1 validation error detected: Value null at 'statement' failed to satisfy constraint: "
                          "Member must not be null")
        self.toks = _tokens(src)
        self.i = 0
        self.params = [values.check_value(p) for p in params or []]
        self.used_params = 0
        self.names: dict[str, str] = {}
        self.vals: dict[str, dict[str, Any]] = {}

    def peek(self, ahead: int = 0) -> tuple[str, str]:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else ("eof", "")

    def kw(self, *words: str) -> bool:
        k, t = self.peek()
        return k == "id" and t.upper() in words

    def take(self) -> tuple[str, str]:
        t = self.peek()
        self.i += 1
        return t

    def expect(self, text: str) -> None:
        _k, t = self.take()
        if t.upper() != text:
            raise Invalid(f"Statement wasn't well formed, can't be processed: expected {text} but found {t or 'end'}")

    def ident(self) -> str:
        k, t = self.take()
        if k == "qid":
            return t[1:-1].replace('""', '"')
        if k == "id":
            return t
        raise Invalid(f"Statement wasn't well formed, can't be processed: expected a name but found {t or 'end'}")

    def name_ref(self, name: str) -> str:
        ref = f"#n{len(self.names)}"
        self.names[ref] = name
        return ref

    def value_ref(self, v: dict[str, Any]) -> str:
        ref = f":v{len(self.vals)}"
        self.vals[ref] = v
        return ref

    # values
    def value(self) -> dict[str, Any]:
        k, t = self.take()
        if k == "str":
            return {"S": t[1:-1].replace("''", "'")}
        if k == "num":
            return {"N": values.norm_number(t)}
        if t == "?":
            if self.used_params >= len(self.params):
                raise Invalid("Number of parameters in request and statement don't match.")
            self.used_params += 1
            return self.params[self.used_params - 1]
        if k == "id" and t.upper() in ("TRUE", "FALSE"):
            return {"BOOL": t.upper() == "TRUE"}
        if k == "id" and t.upper() == "NULL":
            return {"NULL": True}
        if t == "[":
            return {"L": self._seq("]")}
        if t == "<<":
            members = self._seq(">>")
            kinds = {values.type_of(m) for m in members}
            if len(kinds) != 1 or not kinds <= {"S", "N", "B"}:
                raise Invalid("A set must hold strings, numbers or binaries, all of one type")
            kind = kinds.pop()
            return values.check_value({kind + "S": [m[kind] for m in members]})
        if t == "{":
            out: dict[str, Any] = {}
            while self.peek()[1] != "}":
                kk, kt = self.take()
                if kk != "str":
                    raise Invalid("Statement wasn't well formed, can't be processed: map keys are 'quoted' strings")
                self.expect(":")
                out[kt[1:-1].replace("''", "'")] = self.value()
                if self.peek()[1] == ",":
                    self.take()
            self.take()
            return {"M": out}
        raise Invalid(f"Statement wasn't well formed, can't be processed: unexpected {t or 'end'}")

    def _seq(self, end: str) -> list[dict[str, Any]]:
        out = []
        while self.peek()[1] != end:
            out.append(self.value())
            if self.peek()[1] == ",":
                self.take()
        self.take()
        return out

    # expressions → DynamoDB expression text
    def path(self) -> str:
        parts = [self.name_ref(self.ident())]
        while self.peek()[1] in (".", "["):
            if self.take()[1] == ".":
                parts.append("." + self.name_ref(self.ident()))
            else:
                _k, t = self.take()
                parts.append(f"[{t}]")
                self.expect("]")
        return "".join(parts)

    def condition(self) -> str:
        out: list[str] = []
        depth = 0
        while self.peek()[0] != "eof":
            k, t = self.peek()
            if k == "id" and t.upper() in ("AND", "OR", "NOT", "BETWEEN"):
                out.append(self.take()[1].upper())
            elif k == "id" and t.upper() == "IN":
                self.take()
                out.append("IN")
                self.expect("[")
                opts = self._seq("]")
                out.append("(" + ", ".join(self.value_ref(v) for v in opts) + ")")
            elif k == "id" and t.upper() == "IS":
                self.take()
                negate = self.kw("NOT")
                if negate:
                    self.take()
                self.expect("MISSING")
                subject = out.pop()
                out.append(f"attribute_{'exists' if negate else 'not_exists'}({subject})")
            elif k == "id" and self.peek(1)[1] == "(" and t.lower() in ("begins_with", "contains", "attribute_type",
                                                                         "size", "attribute_exists",
                                                                         "attribute_not_exists"):
                out.append(self.take()[1].lower())
            elif t in ("(", ")", ","):
                depth += {"(": 1, ")": -1, ",": 0}[t]
                out.append(self.take()[1])
            elif t in ("=", "<>", "!=", "<", "<=", ">", ">="):
                self.take()
                out.append("<>" if t == "!=" else t)
            elif k in ("id", "qid"):
                out.append(self.path())
            else:
                out.append(self.value_ref(self.value()))
        return " ".join(out)


def table_of(statement: Any) -> str:
    try:
        s = _Stmt(statement, None)
        while s.peek()[0] != "eof":
            k, t = s.take()
            if k == "id" and t.upper() in ("FROM", "INTO", "UPDATE"):
                return s.ident()
    except Invalid:
        pass
    return ""


def access_of(statement: Any) -> str:
    word = statement.lstrip().split(None, 1)[0].upper() if isinstance(statement, str) and statement.strip() else ""
    return access.READ if word == "SELECT" else access.WRITE


def _key_equalities(cond: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    parts = [cond]
    while parts:
        p = parts.pop()
        if isinstance(p, And):
            parts += [p.left, p.right]
        elif isinstance(p, Compare) and p.op == "=" and isinstance(p.left, PathRef) and len(p.left.path) == 1 \
                and isinstance(p.right, Literal):
            out[str(p.left.path[0])] = p.right.value
    return out


async def execute(db: Database, ns: str, req: dict[str, Any]) -> dict[str, Any]:
    s = _Stmt(req.get("Statement"), req.get("Parameters"))
    verb = s.take()[1].upper()
    if verb == "SELECT":
        return await _select(db, ns, s, req)
    if verb == "INSERT":
        s.expect("INTO")
        table = s.ident()
        s.expect("VALUE")
        item = s.value()
        if values.type_of(item) != "M":
            raise Invalid("INSERT needs a tuple value: VALUE {'attribute': value, …}")
        t = await db.table(ns, table)
        try:
            await db.put_item(ns, {"TableName": table, "Item": item["M"], "ConditionExpression":
                                   "attribute_not_exists(#k)", "ExpressionAttributeNames": {"#k": t.key.hash}})
        except ConditionFailed:
            raise DuplicateItem("Duplicate primary key exists in table") from None
        return {}
    if verb in ("UPDATE", "DELETE"):
        if verb == "DELETE":
            s.expect("FROM")
        table = s.ident()
        t = await db.table(ns, table)
        update = _update_clauses(s) if verb == "UPDATE" else ""
        s.expect("WHERE")
        where = s.condition()
        names = Names(s.names or None, s.vals or None, True)
        cond = parse_condition(where, names, "Statement")
        eq = _key_equalities(cond)
        if set(t.key.names()) - set(eq):
            raise Invalid("Where clause does not contain a mandatory equality on all key attributes")
        key = {n: eq[n] for n in t.key.names()}
        exists = s.name_ref(t.key.hash)
        base: dict[str, Any] = {"TableName": table, "Key": key, "ConditionExpression":
                                f"attribute_exists({exists}) AND ({where})", "ExpressionAttributeNames": s.names}
        if s.vals:
            base["ExpressionAttributeValues"] = s.vals
        try:
            if verb == "UPDATE":
                await db.update_item(ns, {**base, "UpdateExpression": update})
            else:
                await db.delete_item(ns, base)
        except ConditionFailed as e:
            if verb == "DELETE":
                return {}
            raise ConditionFailed(None, e.message) from None
        return {}
    raise Invalid(f"Statement wasn't well formed, can't be processed: {verb or 'nothing'} is not one of SELECT, "
                  "INSERT, UPDATE, DELETE")


def _update_clauses(s: _Stmt) -> str:
    sets: list[str] = []
    removes: list[str] = []
    while s.kw("SET", "REMOVE"):
        word = s.take()[1].upper()
        while True:
            p = s.path()
            if word == "SET":
                s.expect("=")
                sets.append(f"{p} = {s.value_ref(s.value())}")
            else:
                removes.append(p)
            if s.peek()[1] != ",":
                break
            s.take()
    out = ("SET " + ", ".join(sets) if sets else "") + (" REMOVE " + ", ".join(removes) if removes else "")
    if not out:
        raise Invalid("Statement wasn't well formed, can't be processed: UPDATE needs SET or REMOVE")
    return out.strip()


async def _select(db: Database, ns: str, s: _Stmt, req: dict[str, Any]) -> dict[str, Any]:
    proj: list[str] | None = None
    if s.peek()[1] == "*":
        s.take()
    else:
        proj = [s.path()]
        while s.peek()[1] == ",":
            s.take()
            proj.append(s.path())
    s.expect("FROM")
    table = s.ident()
    index = None
    if s.peek()[1] == ".":
        s.take()
        index = s.ident()
    where = None
    if s.kw("WHERE"):
        s.take()
        where = s.condition()
    if s.peek()[0] != "eof":
        raise Invalid(f"Statement wasn't well formed, can't be processed: unexpected {s.peek()[1]}")
    if s.used_params != len(s.params):
        raise Invalid("Number of parameters in request and statement don't match.")
    t = await db.table(ns, table)
    names = Names(s.names or None, s.vals or None, True)
    cond = parse_condition(where, names, "Statement") if where else None
    ix = t.index(index) if index else None
    key = ix.key if ix is not None else t.key
    base: dict[str, Any] = {"TableName": table, **({"IndexName": index} if index else {})}
    if req.get("Limit") is not None:
        base["Limit"] = req["Limit"]
    if req.get("NextToken"):
        try:
            base["ExclusiveStartKey"] = json.loads(base64.b64decode(req["NextToken"]))
        except ValueError:
            raise Invalid("The NextToken is not valid") from None
    eq = _key_equalities(cond) if cond is not None else {}
    if key.hash in eq:
        page = await reads.query(db, ns, {**base, "KeyConditionExpression": "#k = :k",
                                          "ExpressionAttributeNames": {"#k": key.hash},
                                          "ExpressionAttributeValues": {":k": eq[key.hash]}})
    else:
        page = await reads.scan(db, ns, base)
    items = [i for i in page["Items"] if cond is None or evaluate.check(cond, i)]
    if proj is not None:
        paths = [names_path(p, s.names) for p in proj]
        items = [evaluate.project(i, paths) for i in items]
    out: dict[str, Any] = {"Items": items}
    if page.get("LastEvaluatedKey"):
        out["NextToken"] = base64.b64encode(json.dumps(page["LastEvaluatedKey"]).encode()).decode()
    return out


def names_path(p: str, names: dict[str, str]) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for part in re.findall(r"#n\d+|\[\d+\]", p):
        out.append(int(part[1:-1]) if part.startswith("[") else names[part])
    return tuple(out)
