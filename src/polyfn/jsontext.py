"""JSON the node parses from others (request bodies, functions' results): nesting too deep for the parser is
malformed JSON like any other (a `ValueError`), not a `RecursionError` that escapes as a 500 or, inside a
background loop, makes one item fail for ever. (A 2 KB body of 1,000 nested brackets is enough.)"""

from __future__ import annotations

import json
import re
from typing import Any


class TooDeep(ValueError):
    """The JSON text nests deeper than the parser (and Python's recursion limit) goes."""


def loads(data: str | bytes | bytearray) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise TooDeep("the JSON is nested too deeply") from None


#: a `\uD800`-`\uDFFF` escape in JSON text: a lone one parses into a str no UTF-8 encoder takes
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def loads_text(data: str | bytes | bytearray) -> Any:
    """`loads` for a request body the node keeps or echoes (a spec, a name, a log line): a string with a lone
    UTF-16 surrogate (`"\\ud800"`: valid JSON syntax, but no Unicode text) is malformed too, a `ValueError`
    (before: a UnicodeEncodeError, a 500, wherever it was first encoded: the store, the log, the answer)."""
    value = loads(data)
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _SURROGATE.search(raw):  # (rare: only then walk the value, by encoding it)
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ValueError("a string has a lone UTF-16 surrogate (\\ud800-\\udfff escape): not Unicode text") from None
    return value


def dumps(value: Any) -> str:
    """`json.dumps`; a value nested too deeply to encode raises TooDeep."""
    try:
        return json.dumps(value)
    except RecursionError:
        raise TooDeep("the value is nested too deeply to encode as JSON") from None
