"""Security rules: who may read and write a collection's documents (and an app's files). Pure.

A rule is a small expression over the caller (`auth`: null for a caller without a token, else
`{uid, openid, unionid, provider, email, claims}`) and the document (`doc`: its fields; a file's are
`_openid`, `path`, `size`):

    doc._openid == auth.openid                  only the document's creator (WeChat's "仅创建者可读写")
    auth != null                                any signed-in user
    true / false                                everyone / no client (functions still can)
    doc.public == true || doc._openid == auth.openid
    auth.claims.role in ["admin", "editor"]

Operators: `==`, `!=`, `in` (a list), `&&`, `||`, `!`, parentheses; literals: strings ('…' or "…"),
numbers, `true`, `false`, `null`, lists. A field that is missing reads as null. Nothing else: no calls,
no arithmetic, so a rule always terminates and can never reach outside its two arguments.

Queries: `equalities(auth)` gives the `field == value` conditions a rule implies when it is a conjunction of
such terms and caller-only terms (`doc._openid == auth.openid && auth != null`). A query narrowed by them
returns only documents the caller may read (what WeChat's client SDK does for "creator only"
collections); for other rules each document found is checked (`allows`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PRESETS: dict[str, tuple[str, str]] = {
    # WeChat's four basic permissions, by name, plus "signed-in": any user of the app reads and writes
    "creator": ("doc._openid == auth.openid", "doc._openid == auth.openid"),  # 仅创建者可读写
    "read-all": ("true", "doc._openid == auth.openid"),  # 所有用户可读，仅创建者可读写
    "read-only": ("true", "false"),  # 所有用户可读
    "none": ("false", "false"),  # 所有用户不可读写
    "signed-in": ("auth != null", "auth != null"),
}

_TOKEN = re.compile(r"""\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|"""
                    r"""(?P<op>==|!=|&&|\|\||[!()\[\],.])|(?P<name>[A-Za-z_$][A-Za-z0-9_$]*))""")
MAX_RULE = 2000


class RuleError(ValueError):
    """A rule expression does not parse; the message says where."""


# The compiled form: a tree of tuples, evaluated by `_eval`. ("lit", v) ("path", root, (names…))
# ("list", (nodes…)) ("not", n) ("and", a, b) ("or", a, b) ("eq"|"ne"|"in", a, b)


@dataclass(frozen=True)
class Compiled:
    source: str
    tree: tuple[Any, ...]

    def allows(self, auth: dict[str, Any] | None, doc: dict[str, Any] | None) -> bool:
        return _eval(self.tree, auth, doc) is True

    def equalities(self, auth: dict[str, Any] | None) -> dict[str, Any] | None:
        """`{field: value}` that a query may add so that every document it returns passes the rule, or None
        when the rule is not such a conjunction (then each document must be checked). An empty dict: the
        rule does not depend on the document, or a term without `doc` already fails for this caller (check it
        once with `allows(auth, None)`: a query is then refused as a whole, not answered empty)."""
        out: dict[str, Any] = {}
        for term in _conjuncts(self.tree):
            if not _mentions_doc(term):
                if _eval(term, auth, None) is not True:
                    return {}  # the caller alone fails it: nothing passes, and `allows(auth, None)` says so
                continue
            if term[0] != "eq":
                return None
            a, b = term[1], term[2]
            if _is_doc_field(b):
                a, b = b, a
            if not _is_doc_field(a) or _mentions_doc(b) or len(a[2]) != 1:
                return None
            value = _eval(b, auth, None)
            if value is None or out.get(a[2][0], value) != value:
                return None  # `doc.x == auth.openid` without a caller: nothing passes
            out[a[2][0]] = value
        return out


def compile_rule(source: str) -> Compiled:
    if not isinstance(source, str) or not source.strip():
        raise RuleError("a rule must be a non-empty expression, e.g. `doc._openid == auth.openid`")
    if len(source) > MAX_RULE:
        raise RuleError(f"a rule is at most {MAX_RULE} characters")
    tokens = _tokenize(source)
    parser = _Parser(tokens, source)
    tree = parser.expr()
    if parser.i != len(tokens):
        raise RuleError(f"unexpected {tokens[parser.i][1]!r} at character {tokens[parser.i][2] + 1} of {source!r}")
    return Compiled(source, tree)


def preset(name: str) -> tuple[str, str]:
    if name not in PRESETS:
        raise RuleError(f"preset {name!r} is not one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _tokenize(source: str) -> list[tuple[str, str, int]]:
    out = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        m = _TOKEN.match(source, pos)
        if m is None or m.end() == pos:
            at = len(source) - len(source[pos:].lstrip())
            raise RuleError(f"unexpected character {source[at]!r} at character {at + 1} of {source!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str, int]], source: str):
        self.tokens = tokens
        self.source = source
        self.i = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, want: str | None = None) -> tuple[str, str, int]:
        if self.i >= len(self.tokens):
            raise RuleError(f"{self.source!r} ends early" + (f": expected {want!r}" if want else ""))
        tok = self.tokens[self.i]
        if want is not None and tok[1] != want:
            raise RuleError(f"expected {want!r} at character {tok[2] + 1} of {self.source!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def expr(self) -> tuple[Any, ...]:
        self.depth += 1
        if self.depth > 50:
            raise RuleError("the rule nests too deeply")
        node = self.conj()
        while self.peek() == "||":
            self.take()
            node = ("or", node, self.conj())
        self.depth -= 1
        return node

    def conj(self) -> tuple[Any, ...]:
        node = self.neg()
        while self.peek() == "&&":
            self.take()
            node = ("and", node, self.neg())
        return node

    def neg(self) -> tuple[Any, ...]:
        if self.peek() == "!":
            self.take()
            self.depth += 1
            if self.depth > 50:
                raise RuleError("the rule nests too deeply")
            node = ("not", self.neg())
            self.depth -= 1
            return node
        return self.cmp()

    def cmp(self) -> tuple[Any, ...]:
        left = self.value()
        op = self.peek()
        if op in ("==", "!=", "in"):
            self.take()
            return ({"==": "eq", "!=": "ne", "in": "in"}[op], left, self.value())
        return left

    def value(self) -> tuple[Any, ...]:
        kind, text, at = self.take()
        if kind == "num":
            return ("lit", float(text) if "." in text else int(text))
        if kind == "str":
            return ("lit", _unquote(text))
        if text == "(":
            node = self.expr()
            self.take(")")
            return node
        if text == "[":
            items = []
            if self.peek() != "]":
                items.append(self.value())
                while self.peek() == ",":
                    self.take()
                    items.append(self.value())
            self.take("]")
            return ("list", tuple(items))
        if kind == "name":
            if text in ("true", "false", "null"):
                return ("lit", {"true": True, "false": False, "null": None}[text])
            if text not in ("auth", "doc"):
                raise RuleError(f"unknown name {text!r} at character {at + 1} of {self.source!r}: "
                                "use auth.FIELD, doc.FIELD or a literal")
            names = []
            while self.peek() == ".":
                self.take()
                k, name, pos = self.take()
                if k != "name":
                    raise RuleError(f"expected a field name at character {pos + 1} of {self.source!r}")
                names.append(name)
            return ("path", text, tuple(names))
        raise RuleError(f"unexpected {text!r} at character {at + 1} of {self.source!r}")


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _eval(node: tuple[Any, ...], auth: dict[str, Any] | None, doc: dict[str, Any] | None) -> Any:
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "path":
        value: Any = auth if node[1] == "auth" else doc
        for name in node[2]:
            value = value.get(name) if isinstance(value, dict) else None
        return value
    if op == "and":
        return _eval(node[1], auth, doc) is True and _eval(node[2], auth, doc) is True
    if op == "or":
        return _eval(node[1], auth, doc) is True or _eval(node[2], auth, doc) is True
    if op == "not":
        return _eval(node[1], auth, doc) is not True
    if op == "list":
        return [_eval(n, auth, doc) for n in node[1]]
    a, b = _eval(node[1], auth, doc), _eval(node[2], auth, doc)
    if op == "eq":
        return _same(a, b)
    if op == "ne":
        return not _same(a, b)
    return isinstance(b, list) and any(_same(a, x) for x in b)  # "in"


def _same(a: Any, b: Any) -> bool:
    """Equality without Python's `1 == True`: a boolean equals only a boolean."""
    return type(a) is bool and a is b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _conjuncts(node: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    if node[0] == "and":
        return _conjuncts(node[1]) + _conjuncts(node[2])
    return [node]


def _mentions_doc(node: Any) -> bool:
    if not isinstance(node, tuple):
        return False
    if node[0] == "path":
        return node[1] == "doc"
    if node[0] == "list":
        return any(_mentions_doc(n) for n in node[1])
    return any(_mentions_doc(n) for n in node[1:] if isinstance(n, tuple))


def _is_doc_field(node: tuple[Any, ...]) -> bool:
    return node[0] == "path" and node[1] == "doc" and len(node[2]) >= 1
