"""DynamoDB's expression languages: tokens → a small AST, with #names and :values resolved while parsing.

One recursive-descent parser serves the five expression parameters (ConditionExpression, FilterExpression,
KeyConditionExpression, UpdateExpression, ProjectionExpression); `Names` holds a request's
ExpressionAttributeNames/Values and records which were used, so that a request can be refused for an
unused one as DynamoDB does. Errors are `Invalid` with DynamoDB's wording
(`Invalid UpdateExpression: Syntax error; token: "<EOF>", near: "SET a"`).

Precedence (DynamoDB's): comparisons, IN, BETWEEN, functions, parentheses bind tightest; then NOT, AND, OR.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from polyfn.db import values
from polyfn.db.errors import Invalid
from polyfn.db.reserved import RESERVED

# -- AST ------------------------------------------------------------------------------------------------

Path = tuple[str | int, ...]  # attribute names and list indexes


@dataclass(frozen=True, slots=True)
class PathRef:
    path: Path


@dataclass(frozen=True, slots=True)
class Literal:
    value: dict[str, Any]
    name: str  # the :placeholder, for messages


@dataclass(frozen=True, slots=True)
class Size:
    path: Path


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # = <> < <= > >=
    left: Any
    right: Any


@dataclass(frozen=True, slots=True)
class Between:
    operand: Any
    low: Any
    high: Any


@dataclass(frozen=True, slots=True)
class In:
    operand: Any
    options: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Func:
    name: str  # attribute_exists attribute_not_exists attribute_type begins_with contains
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class And:
    left: Any
    right: Any


@dataclass(frozen=True, slots=True)
class Or:
    left: Any
    right: Any


@dataclass(frozen=True, slots=True)
class Not:
    operand: Any


@dataclass(frozen=True, slots=True)
class Arith:
    op: str  # + -
    left: Any
    right: Any


@dataclass(frozen=True, slots=True)
class IfNotExists:
    path: Path
    default: Any


@dataclass(frozen=True, slots=True)
class ListAppend:
    left: Any
    right: Any


@dataclass
class Update:
    set: list[tuple[Path, Any]] = field(default_factory=list)
    remove: list[Path] = field(default_factory=list)
    add: list[tuple[Path, Literal]] = field(default_factory=list)
    delete: list[tuple[Path, Literal]] = field(default_factory=list)
    fixed: list[Path] | None = field(default=None, repr=False, compare=False)  # paths() made at parsing

    def paths(self) -> list[Path]:  # (a parsed one's made once, kept by each request's copy: `_bind`; never changed)
        return self.fixed if self.fixed is not None else (
            [p for p, _ in self.set] + list(self.remove) + [p for p, _ in self.add] + [p for p, _ in self.delete])


CONDITION_FUNCS = {"attribute_exists": 1, "attribute_not_exists": 1, "attribute_type": 2, "begins_with": 2,
                   "contains": 2}
COMPARATORS = ("=", "<>", "<", "<=", ">", ">=")


def show_path(p: Path) -> str:
    return "[" + ", ".join(f"[{e}]" if isinstance(e, int) else e for e in p) + "]"


# -- names and values ---------------------------------------------------------------------------------

_NAME_KEY = re.compile(r"#[A-Za-z0-9_]+").fullmatch
_VALUE_KEY = re.compile(r":[A-Za-z0-9_]+").fullmatch


class Names:
    """A request's ExpressionAttributeNames/Values, validated once, with what the expressions used."""

    def __init__(self, names: Any, vals: Any, any_expression: bool):
        if names is not None:
            if not isinstance(names, dict):
                raise Invalid("ExpressionAttributeNames must be a map")
            if not names:
                raise Invalid("ExpressionAttributeNames must not be empty")
            if not any_expression:
                raise Invalid("ExpressionAttributeNames can only be specified when using expressions")
            for k, v in names.items():
                if not _NAME_KEY(k):
                    raise Invalid(f'ExpressionAttributeNames contains invalid key: Syntax error; key: "{k}"')
                if not isinstance(v, str) or not v:
                    raise Invalid(f"ExpressionAttributeNames contains invalid value: Empty attribute name; key: "
                                  f'"{k}"')
        if vals is not None:
            if not isinstance(vals, dict):
                raise Invalid("ExpressionAttributeValues must be a map")
            if not vals:
                raise Invalid("ExpressionAttributeValues must not be empty")
            if not any_expression:
                raise Invalid("ExpressionAttributeValues can only be specified when using expressions: "
                              "condition and update expressions are null")
            for k in vals:
                if not _VALUE_KEY(k):
                    raise Invalid(f'ExpressionAttributeValues contains invalid key: Syntax error; key: "{k}"')
            vals = {k: _checked_value(k, v) for k, v in vals.items()}
        self.names: dict[str, str] = names or {}
        self.values: dict[str, dict[str, Any]] = vals or {}
        self.used_names: set[str] = set()
        self.used_values: set[str] = set()

    def check_unused(self) -> None:
        unused = [k for k in self.names if k not in self.used_names]
        if unused:
            raise Invalid(f"Value provided in ExpressionAttributeNames unused in expressions: keys: "
                          f"{{{', '.join(unused)}}}")
        unused = [k for k in self.values if k not in self.used_values]
        if unused:
            raise Invalid(f"Value provided in ExpressionAttributeValues unused in expressions: keys: "
                          f"{{{', '.join(unused)}}}")


def _checked_value(k: str, v: Any) -> dict[str, Any]:
    try:
        return values.check_value(v)
    except Invalid as e:
        if "empty" in e.message and "datatypes" in e.message:
            raise Invalid(f"ExpressionAttributeValues contains invalid value: {e.message} for key {k}") from None
        raise


# -- tokens -------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<name>\#[A-Za-z0-9_]+)
  | (?P<value>:[A-Za-z0-9_]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<int>\d+)
  | (?P<op><>|<=|>=|[=<>(),.\[\]+-])
""", re.X)

EOF = "<EOF>"


@dataclass(slots=True)
class Tok:
    kind: str  # name value ident int op eof
    text: str
    start: int
    end: int


def tokenize(src: str, what: str) -> list[Tok]:
    out: list[Tok] = []
    i = 0
    while i < len(src):
        m = _TOKEN.match(src, i)
        if m is None:
            raise Invalid(f'Invalid {what}: Syntax error; token: "{src[i]}", near: "{src[max(0, i - 1):i + 2]}"')
        if m.lastgroup != "ws":
            out.append(Tok(m.lastgroup or "", m.group(), i, m.end()))
        i = m.end()
    out.append(Tok("eof", EOF, len(src), len(src)))
    return out


# -- parser -------------------------------------------------------------------------------------------


class Parser:
    def __init__(self, src: Any, what: str, names: Names):
        if not isinstance(src, str):
            raise Invalid(f"Invalid {what}: the expression must be a string")
        if not src.strip():
            raise Invalid(f"Invalid {what}: The expression can not be empty;")
        self.src = src
        self.what = what
        self.names = names
        self.toks = tokenize(src, what)
        self.i = 0

    # helpers
    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        t = self.toks[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def is_kw(self, word: str) -> bool:
        return self.tok.kind == "ident" and self.tok.text.upper() == word

    def is_op(self, op: str) -> bool:
        return self.tok.kind == "op" and self.tok.text == op

    def fail(self, tok: Tok | None = None) -> Invalid:
        tok = tok or self.tok
        j = self.toks.index(tok)
        back = 2 if tok.kind == "eof" else 1  # at the end: the two tokens before it
        start = self.toks[max(0, j - back)].start
        end = self.toks[j + 1].end if j + 1 < len(self.toks) else tok.end
        near = self.src[start:max(end, tok.end)]
        return Invalid(f'Invalid {self.what}: Syntax error; token: "{tok.text}", near: "{near}"')

    def expect_op(self, op: str) -> None:
        if not self.is_op(op):
            raise self.fail()
        self.next()

    def error(self, message: str) -> Invalid:
        return Invalid(f"Invalid {self.what}: {message}")

    def done(self) -> None:
        if self.tok.kind != "eof":
            raise self.fail()

    # operands
    def path(self) -> Path:
        parts: list[str | int] = [self.path_name()]
        while True:
            if self.is_op("."):
                self.next()
                parts.append(self.path_name())
            elif self.is_op("["):
                self.next()
                t = self.next()
                if t.kind != "int":
                    raise self.fail(t)
                self.expect_op("]")
                parts.append(int(t.text))
            else:
                return tuple(parts)

    def path_name(self) -> str:
        t = self.next()
        if t.kind == "name":
            if t.text not in self.names.names:
                raise self.error(f"An expression attribute name used in the document path is not defined; "
                                 f"attribute name: {t.text}")
            self.names.used_names.add(t.text)
            return self.names.names[t.text]
        if t.kind == "ident":
            if t.text.upper() in RESERVED:
                raise self.error(f"Attribute name is a reserved keyword; reserved keyword: {t.text}")
            return t.text
        raise self.fail(t)

    def value(self) -> Literal:
        t = self.next()
        if t.kind != "value":
            raise self.fail(t)
        v = self.names.values.get(t.text)
        if v is None:
            raise self.error(f"An expression attribute value used in expression is not defined; attribute value: "
                             f"{t.text}")
        self.names.used_values.add(t.text)
        return Literal(v, t.text)

    def operand(self) -> Any:
        """A path, a :value or size(path) (conditions)."""
        t = self.tok
        if t.kind == "value":
            return self.value()
        if t.kind == "ident" and self.toks[self.i + 1].text == "(":
            if t.text != "size":
                if t.text in CONDITION_FUNCS:
                    raise self.fail(self.toks[self.i + 1])
                raise self.error(f"Invalid function name; function: {t.text}")
            self.next()
            self.next()
            p = self.func_path("size")
            self.expect_op(")")
            return Size(p)
        return PathRef(self.path())

    def func_path(self, fn: str) -> Path:
        if self.tok.kind not in ("name", "ident"):
            if self.tok.kind == "value":
                raise self.error(f"Operator or function requires a document path; operator or function: {fn}")
            raise self.fail()
        return self.path()

    # conditions
    def condition(self) -> Any:
        left = self.conjunction()
        while self.is_kw("OR"):
            self.next()
            left = Or(left, self.conjunction())
        return left

    def conjunction(self) -> Any:
        left = self.negation()
        while self.is_kw("AND"):
            self.next()
            left = And(left, self.negation())
        return left

    def negation(self) -> Any:
        if self.is_kw("NOT"):
            self.next()
            return Not(self.negation())
        return self.predicate()

    def predicate(self) -> Any:
        t = self.tok
        if self.is_op("("):
            self.next()
            c = self.condition()
            self.expect_op(")")
            return c
        if t.kind == "ident" and t.text in CONDITION_FUNCS and self.toks[self.i + 1].text == "(":
            return self.function()
        left = self.operand()
        if self.tok.kind == "op" and self.tok.text in COMPARATORS:
            op = self.next().text
            return Compare(op, left, self.operand())
        if self.is_kw("BETWEEN"):
            self.next()
            low = self.operand()
            if not self.is_kw("AND"):
                raise self.fail()
            self.next()
            return Between(left, low, self.operand())
        if self.is_kw("IN"):
            self.next()
            self.expect_op("(")
            opts = [self.operand()]
            while self.is_op(","):
                self.next()
                opts.append(self.operand())
            self.expect_op(")")
            if len(opts) > 100:
                raise self.error("The IN operator is provided with too many operands; number of operands: "
                                 f"{len(opts)}")
            return In(left, tuple(opts))
        raise self.fail()

    def function(self) -> Func:
        name = self.next().text
        self.expect_op("(")
        args: list[Any] = [PathRef(self.func_path(name))]
        while self.is_op(","):
            self.next()
            args.append(self.operand())
        self.expect_op(")")
        want = CONDITION_FUNCS[name]
        if len(args) != want:
            raise self.error(f"Incorrect number of operands for operator or function; operator or function: "
                             f"{name}, number of operands: {len(args)}")
        _check_func(name, args, self.error)
        return Func(name, tuple(args))

    # updates
    def update(self) -> Update:
        u = Update()
        seen: set[str] = set()
        while self.tok.kind != "eof":
            t = self.tok
            word = t.text.upper() if t.kind == "ident" else ""
            if word not in ("SET", "REMOVE", "ADD", "DELETE"):
                raise self.fail()
            if word in seen:
                raise self.error(f'The "{word}" section can only be used once in an update expression;')
            seen.add(word)
            self.next()
            while True:
                if word == "SET":
                    p = self.path()
                    self.expect_op("=")
                    u.set.append((p, self.set_value()))
                elif word == "REMOVE":
                    u.remove.append(self.path())
                else:
                    p = self.path()
                    v = self.value()
                    (u.add if word == "ADD" else u.delete).append((p, v))
                if not self.is_op(","):
                    break
                self.next()
        _check_overlaps(u, self.error)
        u.fixed = u.paths()
        return u

    def set_value(self) -> Any:
        left = self.set_operand()
        if self.is_op("+") or self.is_op("-"):
            op = self.next().text
            return Arith(op, left, self.set_operand())
        return left

    def set_operand(self) -> Any:
        t = self.tok
        if t.kind == "value":
            return self.value()
        if t.kind == "ident" and self.toks[self.i + 1].text == "(":
            name = t.text
            if name not in ("if_not_exists", "list_append"):
                raise self.error(f"Invalid function name; function: {name}")
            self.next()
            self.next()
            if name == "if_not_exists":
                p = self.func_path(name)
                self.expect_op(",")
                out: Any = IfNotExists(p, self.set_value_inner())
            else:
                a = self.set_value_inner()
                self.expect_op(",")
                out = ListAppend(a, self.set_value_inner())
            self.expect_op(")")
            return out
        return PathRef(self.path())

    def set_value_inner(self) -> Any:
        return self.set_operand()

    # projections
    def projection(self) -> list[Path]:
        out = [self.path()]
        while self.is_op(","):
            self.next()
            out.append(self.path())
        return out


def _check_func(name: str, args: Any, error: Callable[[str], Invalid]) -> None:
    """The checks of a function's operands that depend on the :values (again when `_bind` binds new ones)."""
    if name == "attribute_type":
        t = args[1]
        if not isinstance(t, Literal) or values.type_of(t.value) != "S":
            raise error("Incorrect operand type for operator or function; operator or function: "
                        f"attribute_type, operand type: {_operand_type(t)}")
        if t.value["S"] not in values.TYPES:
            raise error(f"Invalid attribute type name found; type: {t.value['S']}, valid types: "
                        "{B,NULL,SS,BOOL,L,BS,N,NS,S,M}")
    if name == "begins_with" and isinstance(args[1], Literal) and values.type_of(args[1].value) not in ("S", "B"):
        raise error("Incorrect operand type for operator or function; operator or function: begins_with, "
                    f"operand type: {values.type_of(args[1].value)}")


def _operand_type(x: Any) -> str:
    return values.type_of(x.value) if isinstance(x, Literal) else "PATH"


def _check_overlaps(u: Update, error: Any) -> None:
    paths = u.paths()
    for i, a in enumerate(paths):
        for b in paths[i + 1:]:
            n = min(len(a), len(b))
            if a[:n] == b[:n]:
                raise error(f"Two document paths overlap with each other; must remove or rewrite one of these "
                            f"paths; path one: {show_path(a)}, path two: {show_path(b)}")


# -- entry points -------------------------------------------------------------------------------------


_PARSED: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[Any, frozenset[str], frozenset[str]]] = {}
_PARSED_MAX = 1024


def _parsed(what: str, src: Any, names: Names, parse: Callable[[Parser], Any]) -> Any:
    """`parse` of the expression, remembered per (expression, names): a client sends the same few expressions
    again and again, each time with other :values, and parsing one cost more than the write it guards. The
    remembered tree is bound to the request's values (`_bind`: its `Literal`s replaced, the checks that depend
    on values run again); a tree without values serves as it is (the nodes are frozen; an `Update`'s lists are
    never changed after parsing). A value the expression uses and the request lacks: parsed, for its error."""
    if not isinstance(src, str):
        return parse(Parser(src, what, names))
    key = (what, src, tuple(names.names.items()))
    hit = _PARSED.get(key)
    if hit is not None and (not hit[2] or hit[2].issubset(names.values)):
        names.used_names.update(hit[1])
        if not hit[2]:
            return hit[0]
        names.used_values.update(hit[2])
        return _bind(hit[0], names.values, lambda m: Invalid(f"Invalid {what}: {m}"))
    outer_names, outer_values = names.used_names, names.used_values
    names.used_names, names.used_values = set(), set()
    try:
        out = parse(Parser(src, what, names))
        used_names, used_values = frozenset(names.used_names), frozenset(names.used_values)
    finally:
        outer_names.update(names.used_names)
        outer_values.update(names.used_values)
        names.used_names, names.used_values = outer_names, outer_values
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[key] = (out, used_names, used_values)
    return out


def _bind(x: Any, vals: dict[str, dict[str, Any]], error: Callable[[str], Invalid]) -> Any:
    """A parsed tree with each `Literal` holding `vals`' value of its :placeholder."""
    t = type(x)
    if t is Literal:
        return Literal(vals[x.name], x.name)
    if t is PathRef or t is Size:
        return x
    if t is Compare or t is Arith:
        return t(x.op, _bind(x.left, vals, error), _bind(x.right, vals, error))
    if t is And or t is Or or t is ListAppend:
        return t(_bind(x.left, vals, error), _bind(x.right, vals, error))
    if t is Not:
        return Not(_bind(x.operand, vals, error))
    if t is Between:
        return Between(_bind(x.operand, vals, error), _bind(x.low, vals, error), _bind(x.high, vals, error))
    if t is In:
        return In(_bind(x.operand, vals, error), tuple(_bind(o, vals, error) for o in x.options))
    if t is Func:
        args = tuple(_bind(a, vals, error) for a in x.args)
        _check_func(x.name, args, error)
        return Func(x.name, args)
    if t is IfNotExists:
        return IfNotExists(x.path, _bind(x.default, vals, error))
    if t is Update:
        return Update([(p, _bind(v, vals, error)) for p, v in x.set], x.remove, [(p, _bind(v, vals, error)) for p, v
                      in x.add], [(p, _bind(v, vals, error)) for p, v in x.delete], x.paths())
    raise TypeError(f"no binding for {t.__name__}")


def _condition(p: Parser) -> Any:
    c = p.condition()
    p.done()
    return c


def parse_condition(src: Any, names: Names, what: str = "ConditionExpression") -> Any:
    return _parsed(what, src, names, _condition)


def parse_update(src: Any, names: Names) -> Update:
    return _parsed("UpdateExpression", src, names, Parser.update)  # type: ignore[no-any-return]


def parse_projection(src: Any, names: Names) -> list[Path]:
    p = Parser(src, "ProjectionExpression", names)
    out = p.projection()
    p.done()
    return out
