"""The States Language's intrinsic functions (`"key.$": "States.Format('Hi {}', $.name)"`).

`compile_call` parses an expression once (at validation) into a small tree; `Call.evaluate` runs it against the
state's input, the context object and a random source passed in (States.UUID and States.MathRandom are the
only users of randomness; nothing here reads a clock). Failures are `States.IntrinsicFailure` with a message
naming the function, as AWS reports them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

from polyfn.workflows.errors import INTRINSIC_FAILURE, StatesError
from polyfn.workflows.jsonpath import Path, PathSyntaxError, compile_path

MAX_NESTING = 10
MAX_RANGE_ITEMS = 1000
MAX_TEXT = 10_000  # Base64Encode/Decode and Hash inputs (AWS's limit)
_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


class IntrinsicSyntaxError(ValueError):
    pass


class Literal:
    __slots__ = ("raw", "value")

    def __init__(self, value: Any, raw: str | None = None):
        self.value, self.raw = value, raw  # raw: a string literal's text with its escapes (Format needs them)


class Call:
    __slots__ = ("args", "name")

    def __init__(self, name: str, args: list[Any]):
        self.name, self.args = name, args

    def evaluate(self, data: Any, ctx: Any, rng: random.Random) -> Any:
        fn = FUNCTIONS[self.name][0]
        values = [_value(a, data, ctx, rng) for a in self.args]
        try:
            return fn(values, self.args, rng)
        except StatesError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, OverflowError) as e:
            raise _fail(self.name, str(e)) from None


def _value(arg: Any, data: Any, ctx: Any, rng: random.Random) -> Any:
    if isinstance(arg, Literal):
        return arg.value
    if isinstance(arg, Path):
        return arg.get(data, ctx)
    return arg.evaluate(data, ctx, rng)


def _fail(name: str, message: str) -> StatesError:
    return StatesError(INTRINSIC_FAILURE, f"Invalid arguments in {name}: {message}")


# -- parsing ------------------------------------------------------------------------------------------


def is_intrinsic(text: str) -> bool:
    return isinstance(text, str) and text.startswith("States.") and "(" in text


def compile_call(text: str) -> Call:
    """Parse `States.Name(args…)`; IntrinsicSyntaxError naming what is wrong."""
    parser = _Parser(text)
    call = parser.call(0)
    parser.skip_ws()
    if parser.pos != len(text):
        raise IntrinsicSyntaxError(f"unexpected {text[parser.pos:]!r} after the function call in {text!r}")
    return call


class _Parser:
    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def error(self, what: str) -> IntrinsicSyntaxError:
        return IntrinsicSyntaxError(f"{what} at position {self.pos} of {self.text!r}")

    def call(self, depth: int) -> Call:
        if depth >= MAX_NESTING:
            raise self.error(f"more than {MAX_NESTING} nested intrinsic functions")
        self.skip_ws()
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] == "."):
            self.pos += 1
        name = self.text[start:self.pos]
        if name not in FUNCTIONS:
            raise IntrinsicSyntaxError(f"unknown intrinsic function {name!r} in {self.text!r} "
                                       f"(known: {', '.join(sorted(FUNCTIONS))})")
        if self.pos >= len(self.text) or self.text[self.pos] != "(":
            raise self.error(f"expected '(' after {name}")
        self.pos += 1
        args: list[Any] = []
        self.skip_ws()
        if self.pos < len(self.text) and self.text[self.pos] == ")":
            self.pos += 1
        else:
            while True:
                args.append(self.arg(depth))
                self.skip_ws()
                if self.pos >= len(self.text):
                    raise self.error(f"missing ')' to close {name}(")
                c = self.text[self.pos]
                self.pos += 1
                if c == ")":
                    break
                if c != ",":
                    raise self.error(f"expected ',' or ')' in the arguments of {name}")
        check = FUNCTIONS[name][1]
        problem = check(args)
        if problem:
            raise IntrinsicSyntaxError(f"{name}: {problem} in {self.text!r}")
        return Call(name, args)

    def arg(self, depth: int) -> Any:
        self.skip_ws()
        t, i = self.text, self.pos
        if i >= len(t):
            raise self.error("missing argument")
        c = t[i]
        if c == "'":
            return self.string()
        if c == "$":
            return self.path()
        if t.startswith("States.", i):
            return self.call(depth + 1)
        j = i
        while j < len(t) and t[j] not in ",) ":
            j += 1
        word = t[i:j]
        self.pos = j
        if word in ("true", "false"):
            return Literal(word == "true")
        if word == "null":
            return Literal(None)
        try:
            return Literal(int(word))
        except ValueError:
            pass
        try:
            return Literal(float(word))
        except ValueError:
            raise self.error(f"unexpected argument {word!r}") from None

    def string(self) -> Literal:
        t = self.text
        self.pos += 1
        start = self.pos
        out: list[str] = []
        while self.pos < len(t):
            c = t[self.pos]
            if c == "\\" and self.pos + 1 < len(t):
                out.append(t[self.pos + 1])
                self.pos += 2
                continue
            if c == "'":
                raw = t[start:self.pos]
                self.pos += 1
                return Literal("".join(out), raw)
            out.append(c)
            self.pos += 1
        raise self.error("unterminated string literal")

    def path(self) -> Path:
        t, i = self.text, self.pos
        depth, quote = 0, ""
        j = i
        while j < len(t):
            c = t[j]
            if quote:
                if c == quote:
                    quote = ""
            elif c in "'\"":
                quote = c
            elif c in "[(":
                depth += 1
            elif c in "])":
                if depth == 0:
                    break
                depth -= 1
            elif c in ", " and depth == 0:
                break
            j += 1
        self.pos = j
        try:
            return compile_path(t[i:j])
        except PathSyntaxError as e:
            raise IntrinsicSyntaxError(str(e)) from None


# -- the functions ------------------------------------------------------------------------------------


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
        raise ValueError(f"{what} must be an integer, not {json.dumps(v)}")
    return int(v)


def _str(v: Any, what: str) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{what} must be a string, not {json.dumps(v)}")
    return v


def _list(v: Any, what: str) -> list[Any]:
    if not isinstance(v, list):
        raise ValueError(f"{what} must be an array, not {json.dumps(v)}")
    return v


def _format(values: list[Any], args: list[Any], _rng: random.Random) -> str:
    template = args[0]
    raw = template.raw if isinstance(template, Literal) and template.raw is not None else _str(values[0], "the template")
    parts: list[str] = []
    n = 0
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            parts.append(raw[i + 1])
            i += 2
            continue
        if raw.startswith("{}", i):
            n += 1
            if n >= len(values):
                raise ValueError(f"the template has more '{{}}' than the {len(values) - 1} argument(s) given")
            v = values[n]
            if isinstance(v, (dict, list)):
                raise ValueError("arguments must be strings, numbers, booleans or null, not objects or arrays")
            parts.append(v if isinstance(v, str) else json.dumps(v))
            i += 2
            continue
        parts.append(c)
        i += 1
    if n != len(values) - 1:
        raise ValueError(f"the template has {n} '{{}}' for {len(values) - 1} argument(s)")
    return "".join(parts)


def _string_to_json(values: list[Any], _a: list[Any], _r: random.Random) -> Any:
    try:
        return json.loads(_str(values[0], "the argument"))
    except json.JSONDecodeError as e:
        raise ValueError(f"the string is not JSON ({e})") from None


def _json_to_string(values: list[Any], _a: list[Any], _r: random.Random) -> str:
    return json.dumps(values[0], separators=(",", ":"), ensure_ascii=False)


def _array_partition(values: list[Any], _a: list[Any], _r: random.Random) -> list[Any]:
    arr, size = _list(values[0], "the first argument"), _int(values[1], "the chunk size")
    if size <= 0:
        raise ValueError("the chunk size must be greater than 0")
    return [arr[i:i + size] for i in range(0, len(arr), size)]


def _array_range(values: list[Any], _a: list[Any], _r: random.Random) -> list[int]:
    start, end, step = (_int(v, w) for v, w in zip(values, ("start", "end", "step"), strict=True))
    if step == 0:
        raise ValueError("the step must not be 0")
    out = list(range(start, end + (1 if step > 0 else -1), step))
    if len(out) > MAX_RANGE_ITEMS:
        raise ValueError(f"the range has {len(out)} items; at most {MAX_RANGE_ITEMS} are allowed")
    return out


def _array_get_item(values: list[Any], _a: list[Any], _r: random.Random) -> Any:
    arr, i = _list(values[0], "the first argument"), _int(values[1], "the index")
    if not 0 <= i < len(arr):
        raise ValueError(f"index {i} is out of bounds for an array of {len(arr)}")
    return arr[i]


def _array_unique(values: list[Any], _a: list[Any], _r: random.Random) -> list[Any]:
    seen: set[str] = set()
    out = []
    for v in _list(values[0], "the argument"):
        key = json.dumps(v, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def _b64encode(values: list[Any], _a: list[Any], _r: random.Random) -> str:
    s = _str(values[0], "the argument")
    if len(s) > MAX_TEXT:
        raise ValueError(f"the string is longer than {MAX_TEXT} characters")
    return base64.b64encode(s.encode()).decode()


def _b64decode(values: list[Any], _a: list[Any], _r: random.Random) -> str:
    s = _str(values[0], "the argument")
    if len(s) > MAX_TEXT:
        raise ValueError(f"the string is longer than {MAX_TEXT} characters")
    try:
        return base64.b64decode(s, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as e:
        raise ValueError(f"the string is not base64 of UTF-8 text ({e})") from None


def _hash(values: list[Any], _a: list[Any], _r: random.Random) -> str:
    data = values[0] if isinstance(values[0], str) else json.dumps(values[0], separators=(",", ":"))
    algo = _str(values[1], "the algorithm")
    if algo not in _HASHES:
        raise ValueError(f"the algorithm {algo!r} is not one of {', '.join(_HASHES)}")
    if len(data) > MAX_TEXT:
        raise ValueError(f"the data is longer than {MAX_TEXT} characters")
    return hashlib.new(_HASHES[algo], data.encode()).hexdigest()


def _json_merge(values: list[Any], _a: list[Any], _r: random.Random) -> dict[str, Any]:
    a, b, deep = values
    if not isinstance(a, dict) or not isinstance(b, dict):
        raise ValueError("both arguments must be objects")
    if deep is not False:
        raise ValueError("only a shallow merge is supported: the third argument must be false")
    return {**a, **b}


def _math_random(values: list[Any], _a: list[Any], rng: random.Random) -> int:
    start, end = _int(values[0], "start"), _int(values[1], "end")
    if start >= end:
        raise ValueError("start must be less than end")
    r = random.Random(_int(values[2], "the seed")) if len(values) > 2 else rng
    return r.randrange(start, end)


def _math_add(values: list[Any], _a: list[Any], _r: random.Random) -> int:
    a, b = _int(values[0], "the first argument"), _int(values[1], "the second argument")
    for v in (a, b):
        if not -(2**31) <= v < 2**31:
            raise ValueError(f"{v} is outside the 32-bit integer range")
    return a + b


def _string_split(values: list[Any], _a: list[Any], _r: random.Random) -> list[str]:
    s, splitter = _str(values[0], "the string"), _str(values[1], "the splitter")
    if not splitter:
        return [s]
    out, cur = [], []
    for c in s:
        if c in splitter:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    out.append("".join(cur))
    return [p for p in out if p]


def _uuid(_v: list[Any], _a: list[Any], rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _count(lo: int, hi: int | None = None) -> Callable[[list[Any]], str]:
    def check(args: list[Any]) -> str:
        n = len(args)
        if n < lo or (hi is not None and n > hi):
            want = str(lo) if hi == lo else f"{lo} to {hi}" if hi is not None else f"at least {lo}"
            return f"takes {want} argument(s), got {n}"
        return ""

    return check


FUNCTIONS: dict[str, tuple[Callable[[list[Any], list[Any], random.Random], Any], Callable[[list[Any]], str]]] = {
    "States.Format": (_format, _count(1)),
    "States.StringToJson": (_string_to_json, _count(1, 1)),
    "States.JsonToString": (_json_to_string, _count(1, 1)),
    "States.Array": (lambda v, _a, _r: list(v), _count(0)),
    "States.ArrayPartition": (_array_partition, _count(2, 2)),
    "States.ArrayContains": (lambda v, _a, _r: v[1] in _list(v[0], "the first argument"), _count(2, 2)),
    "States.ArrayRange": (_array_range, _count(3, 3)),
    "States.ArrayGetItem": (_array_get_item, _count(2, 2)),
    "States.ArrayLength": (lambda v, _a, _r: len(_list(v[0], "the argument")), _count(1, 1)),
    "States.ArrayUnique": (_array_unique, _count(1, 1)),
    "States.Base64Encode": (_b64encode, _count(1, 1)),
    "States.Base64Decode": (_b64decode, _count(1, 1)),
    "States.Hash": (_hash, _count(2, 2)),
    "States.JsonMerge": (_json_merge, _count(3, 3)),
    "States.MathRandom": (_math_random, _count(2, 3)),
    "States.MathAdd": (_math_add, _count(2, 2)),
    "States.StringSplit": (_string_split, _count(2, 2)),
    "States.UUID": (_uuid, _count(0, 0)),
}
