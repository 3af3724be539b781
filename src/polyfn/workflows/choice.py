"""Choice Rules: compiled from a Choice state's `Choices` once, evaluated against the state's input.

A rule is a boolean combination (`And`, `Or`, `Not`) or a data test (`Variable` + one comparison operator,
with a literal or a `…Path` operand). A comparison of values of the wrong type is false (a string against a
number never matches); a `Variable` that is not in the input is States.Runtime, except for `IsPresent`,
which exists to test for that.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from polyfn.workflows.errors import RUNTIME, StatesError
from polyfn.workflows.jsonpath import Path, PathSyntaxError, compile_path

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def parse_timestamp(value: Any) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp as the States Language accepts it (uppercase T and Z), else None."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    frac = re.search(r"\.(\d+)", text)
    if frac and len(frac.group(1)) > 6:  # datetime takes at most microseconds
        text = text.replace(frac.group(0), "." + frac.group(1)[:6])
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _string_matches(value: str, pattern: str) -> bool:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else re.escape(c))
        i += 1
    return re.fullmatch("".join(out), value, re.DOTALL) is not None


def _cmp(kind: str, op: str) -> Callable[[Any, Any], bool]:
    """A comparison of `kind` (String, Numeric, Boolean, Timestamp) with `op`, false on wrong types."""
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "Equals": lambda a, b: a == b, "LessThan": lambda a, b: a < b, "GreaterThan": lambda a, b: a > b,
        "LessThanEquals": lambda a, b: a <= b, "GreaterThanEquals": lambda a, b: a >= b,
    }
    f = ops[op]
    if kind == "String":
        return lambda a, b: isinstance(a, str) and isinstance(b, str) and f(a, b)
    if kind == "Numeric":
        return lambda a, b: _is_number(a) and _is_number(b) and f(a, b)
    if kind == "Boolean":
        return lambda a, b: isinstance(a, bool) and isinstance(b, bool) and f(a, b)

    def ts(a: Any, b: Any) -> bool:
        ta, tb = parse_timestamp(a), parse_timestamp(b)
        return ta is not None and tb is not None and f(ta, tb)

    return ts


COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {}
for _kind in ("String", "Numeric", "Boolean", "Timestamp"):
    for _op in ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals"):
        if _kind == "Boolean" and _op != "Equals":
            continue
        COMPARISONS[_kind + _op] = _cmp(_kind, _op)
COMPARISONS["StringMatches"] = lambda a, b: isinstance(a, str) and isinstance(b, str) and _string_matches(a, b)
TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "IsNull": lambda v: v is None,
    "IsNumeric": _is_number,
    "IsString": lambda v: isinstance(v, str),
    "IsBoolean": lambda v: isinstance(v, bool),
    "IsTimestamp": lambda v: parse_timestamp(v) is not None,
}
OPERATORS = frozenset(COMPARISONS) | frozenset(k + "Path" for k in COMPARISONS if k != "StringMatches") | \
    frozenset(TYPE_TESTS) | {"IsPresent"}
_LITERAL_CHECK: dict[str, Callable[[Any], bool]] = {
    "String": lambda v: isinstance(v, str), "Numeric": _is_number, "Boolean": lambda v: isinstance(v, bool),
    "Timestamp": lambda v: parse_timestamp(v) is not None,
}


class RuleError(ValueError):
    def __init__(self, pointer: str, message: str):
        super().__init__(message)
        self.pointer, self.message = pointer, message


class Rule:
    """A compiled rule: `kind` is and/or/not/test; `key` a canonical form used to find complementary rules."""

    __slots__ = ("children", "key", "kind", "operand", "operand_path", "operator", "variable")

    def __init__(self, kind: str, key: str, children: list[Rule] | None = None, variable: Path | None = None,
                 operator: str = "", operand: Any = None, operand_path: Path | None = None):
        self.kind, self.key, self.children = kind, key, children or []
        self.variable, self.operator, self.operand, self.operand_path = variable, operator, operand, operand_path

    def evaluate(self, data: Any, ctx: Any) -> bool:
        if self.kind == "and":
            return all(c.evaluate(data, ctx) for c in self.children)
        if self.kind == "or":
            return any(c.evaluate(data, ctx) for c in self.children)
        if self.kind == "not":
            return not self.children[0].evaluate(data, ctx)
        assert self.variable is not None
        found = self.variable.find(data, ctx)
        if self.operator == "IsPresent":
            return bool(found) == self.operand
        if not found:
            raise StatesError(RUNTIME, f"Invalid path '{self.variable.text}': the choice state's condition path "
                              "references a field that is not in the input")
        value = found[0] if self.variable.definite else found
        if self.operator in TYPE_TESTS:
            return TYPE_TESTS[self.operator](value) == self.operand
        operand = self.operand
        op = self.operator
        if self.operand_path is not None:
            got = self.operand_path.find(data, ctx)
            if not got:
                raise StatesError(RUNTIME, f"Invalid path '{self.operand_path.text}' in {op}: it is not in the input")
            operand = got[0]
            op = op[:-4]
        return COMPARISONS[op](value, operand)


def compile_rule(raw: Any, pointer: str, top: bool) -> Rule:
    """Compile one rule; RuleError naming the field (pointer) when it is malformed."""
    if not isinstance(raw, dict):
        raise RuleError(pointer, "a Choice Rule must be an object")
    allowed = {"Next", "Comment"} if top else {"Comment"}
    if top and "Next" not in raw:
        raise RuleError(pointer, "a Choice Rule must have 'Next'")
    if not top and "Next" in raw:
        raise RuleError(pointer + "/Next", "only top-level Choice Rules may have 'Next'")
    for combinator in ("And", "Or", "Not"):
        if combinator in raw:
            extra = set(raw) - allowed - {combinator}
            if extra:
                raise RuleError(pointer, f"'{combinator}' cannot be combined with {', '.join(sorted(extra))}")
            sub = raw[combinator]
            if combinator == "Not":
                child = compile_rule(sub, f"{pointer}/Not", False)
                return Rule("not", f"not({child.key})", [child])
            if not isinstance(sub, list) or not sub:
                raise RuleError(f"{pointer}/{combinator}", f"'{combinator}' must be a non-empty array of rules")
            children = [compile_rule(r, f"{pointer}/{combinator}/{i}", False) for i, r in enumerate(sub)]
            return Rule(combinator.lower(), f"{combinator.lower()}({','.join(c.key for c in children)})", children)
    ops = [k for k in raw if k in OPERATORS]
    unknown = set(raw) - allowed - set(ops) - {"Variable"}
    if unknown:
        raise RuleError(pointer, f"unknown field(s) {', '.join(sorted(unknown))} in a Choice Rule "
                        f"(comparison operators: {', '.join(sorted(OPERATORS))})")
    if "Variable" not in raw:
        raise RuleError(pointer, "a Choice Rule must have 'Variable' (or be And/Or/Not)")
    if len(ops) != 1:
        raise RuleError(pointer, "a Choice Rule must have exactly one comparison operator"
                        + (f", not {', '.join(ops)}" if ops else ""))
    op = ops[0]
    try:
        variable = compile_path(raw["Variable"])
    except PathSyntaxError as e:
        raise RuleError(pointer + "/Variable", str(e)) from None
    value = raw[op]
    where = f"{pointer}/{op}"
    if op == "IsPresent" or op in TYPE_TESTS:
        if not isinstance(value, bool):
            raise RuleError(where, f"'{op}' must be true or false")
        return Rule("test", f"{raw['Variable']}|{op}|{value}", variable=variable, operator=op, operand=value)
    if op.endswith("Path"):
        try:
            path = compile_path(value)
        except PathSyntaxError as e:
            raise RuleError(where, str(e)) from None
        return Rule("test", f"{raw['Variable']}|{op}|{value}", variable=variable, operator=op, operand_path=path)
    kind = next(k for k in _LITERAL_CHECK if op.startswith(k)) if op != "StringMatches" else "String"
    if not _LITERAL_CHECK[kind](value):
        raise RuleError(where, f"'{op}' needs a {kind.lower()} value" + (" (an RFC 3339 timestamp)"
                                                                         if kind == "Timestamp" else ""))
    return Rule("test", f"{raw['Variable']}|{op}|{value!r}", variable=variable, operator=op, operand=value)


def exhaustive(rules: list[Rule]) -> bool:
    """True when some input always matches one of `rules`: a rule and its negation are both there, or a type
    test appears with true and false for the same variable (at the top, or inside one `Or`)."""
    keys = {r.key for r in rules}
    for r in rules:
        if r.kind == "not" and r.children[0].key in keys:
            return True
        if r.kind == "test" and isinstance(r.operand, bool) and (r.operator == "IsPresent" or r.operator in TYPE_TESTS):
            flipped = r.key.rsplit("|", 1)[0] + f"|{not r.operand}"
            if flipped in keys:
                return True
        if r.kind == "or" and exhaustive(r.children):
            return True
    return False
