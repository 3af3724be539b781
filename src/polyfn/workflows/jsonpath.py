"""JSONPath as the States Language uses it: Paths (`$.a.b`, `$['x y'][0]`, `$$.Execution.Id`) and Reference
Paths (fields and indices only, the kind `ResultPath` may write to).

Most paths in real definitions are plain chains of fields and indices: those are compiled once into a tuple of
keys and read with a loop (a few microseconds). Anything else (wildcards, slices, filters `[?(@.x > 1)]`,
descendants `..x`, unions) goes to `jsonpath-ng`'s extended parser, also compiled once. `compile_path` is
cached, so a definition's paths are parsed when it is validated and never per execution.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from polyfn.workflows.errors import RESULT_PATH_MATCH_FAILURE, RUNTIME, StatesError

_SEGMENT = re.compile(r"""\.(?P<name>[^.\[\]'"\s()?*,@]+)|\[(?:'(?P<sq>(?:[^'\\]|\\.)*)'|"(?P<dq>(?:[^"\\]|\\.)*)"|(?P<idx>\d+))\]""")
_INDEFINITE = ("Wildcard", "Slice", "Filter", "Descendants", "Union")


class PathSyntaxError(ValueError):
    pass


class Path:
    """A compiled path. `keys` is the field/index chain of a simple path (None for the others, which keep the
    jsonpath-ng expression in `expr`); `context` is True for `$$…` (the context object)."""

    __slots__ = ("context", "definite", "expr", "keys", "text")

    def __init__(self, text: str, context: bool, keys: tuple[str | int, ...] | None, expr: Any, definite: bool):
        self.text, self.context, self.keys, self.expr, self.definite = text, context, keys, expr, definite

    def __repr__(self) -> str:
        return f"Path({self.text!r})"

    @property
    def is_reference(self) -> bool:
        """Fields and indices only: a Reference Path (what ResultPath and Choice variables may be)."""
        return self.keys is not None

    def find(self, data: Any, ctx: Any = None) -> list[Any]:
        """Every value the path selects (none when it selects nothing)."""
        root = ctx if self.context else data
        if self.keys is not None:
            node = root
            for k in self.keys:
                if isinstance(k, str):
                    if not isinstance(node, dict) or k not in node:
                        return []
                    node = node[k]
                else:
                    if not isinstance(node, list) or k >= len(node):
                        return []
                    node = node[k]
            return [node]
        return [m.value for m in self.expr.find(root)]

    def get(self, data: Any, ctx: Any = None, what: str = "") -> Any:
        """The value of a definite path (an indefinite one gives the list of its matches); States.Runtime when
        a definite path selects nothing."""
        found = self.find(data, ctx)
        if not self.definite:
            return found
        if not found:
            where = f" for {what}" if what else ""
            raise StatesError(RUNTIME, f"Invalid path '{self.text}'{where}: the JSONPath could not be found in the "
                              f"input '{_short(ctx if self.context else data)}'")
        return found[0]

    def exists(self, data: Any, ctx: Any = None) -> bool:
        return bool(self.find(data, ctx))


def _short(value: Any) -> str:
    import json

    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= 256 else text[:253] + "..."


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


def compile_path(text: str) -> Path:
    """Compile a Path (`$…` or `$$…`); PathSyntaxError when it is not one (a list or an object too, before the
    cache's hashing raises a TypeError for it)."""
    if not isinstance(text, str):
        raise PathSyntaxError(f"{text!r} is not a JSONPath: a path is a string starting with '$'")
    return _compile_path(text)


@functools.lru_cache(maxsize=4096)
def _compile_path(text: str) -> Path:
    if not text.startswith("$"):
        raise PathSyntaxError(f"{text!r} is not a JSONPath: it must start with '$'")
    context = text.startswith("$$")
    body = text[2:] if context else text[1:]
    keys: list[str | int] = []
    pos = 0
    while pos < len(body):
        m = _SEGMENT.match(body, pos)
        if m is None:
            break
        if m["name"] is not None:
            keys.append(m["name"])
        elif m["idx"] is not None:
            keys.append(int(m["idx"]))
        else:
            keys.append(_unescape(m["sq"] if m["sq"] is not None else m["dq"]))
        pos = m.end()
    if pos == len(body):
        return Path(text, context, tuple(keys), None, True)
    try:
        from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
        from jsonpath_ng.ext import parse

        expr = parse("$" + body)
    except (JsonPathLexerError, JsonPathParserError, Exception) as e:  # jsonpath-ng raises plain Exception too
        raise PathSyntaxError(f"{text!r} is not a valid JSONPath ({e})") from None
    shape = repr(expr)
    definite = not any(kind in shape for kind in _INDEFINITE) and "," not in body
    return Path(text, context, None, expr, definite)


def compile_reference(text: str) -> Path:
    """A Reference Path: fields and indices only (`$`, `$.a`, `$['a b'][2]`), never `$$`."""
    p = compile_path(text)
    if not p.is_reference or p.context:
        raise PathSyntaxError(f"{text!r} is not a reference path: only '$', '.field', \"['field']\" and '[index]' "
                              "are allowed")
    return p


def set_path(data: Any, path: Path, value: Any) -> Any:
    """A copy of `data` with `value` written at the reference path (`$` replaces it all). Objects on the way
    are created when missing; one that exists and is not an object (or an index past an array's end) is
    States.ResultPathMatchFailure. The input is never modified."""
    assert path.keys is not None
    if not path.keys:
        return value
    return _put(data, path, 0, value, data)


def _put(node: Any, path: Path, i: int, value: Any, data: Any) -> Any:
    """`set_path` from key `i` down (a module function: a nested one that calls itself is a reference cycle)."""
    keys = path.keys
    assert keys is not None
    k = keys[i]
    last = i == len(keys) - 1
    if isinstance(k, str):
        if node is None:
            node = {}
        if not isinstance(node, dict):
            raise StatesError(RESULT_PATH_MATCH_FAILURE, f"Unable to apply ResultPath '{path.text}' to input "
                              f"'{_short(data)}': '{k}' is not a field of an object")
        out = dict(node)
        out[k] = value if last else _put(node.get(k), path, i + 1, value, data)
        return out
    if not isinstance(node, list) or k >= len(node):
        raise StatesError(RESULT_PATH_MATCH_FAILURE, f"Unable to apply ResultPath '{path.text}' to input "
                          f"'{_short(data)}': index {k} is not in an array")
    arr = list(node)
    arr[k] = value if last else _put(node[k], path, i + 1, value, data)
    return arr
