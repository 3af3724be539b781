"""JSON the node parses from others (request bodies, functions' results): nesting too deep for the parser is
malformed JSON like any other (a `ValueError`), not a `RecursionError` that escapes as a 500 or, inside a
background loop, makes one item fail for ever. (A 2 KB body of 1,000 nested brackets is enough.)"""

from __future__ import annotations

import json
from typing import Any


class TooDeep(ValueError):
    """The JSON text nests deeper than the parser (and Python's recursion limit) goes."""


def loads(data: str | bytes | bytearray) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise TooDeep("the JSON is nested too deeply") from None


def dumps(value: Any) -> str:
    """`json.dumps`; a value nested too deeply to encode raises TooDeep."""
    try:
        return json.dumps(value)
    except RecursionError:
        raise TooDeep("the value is nested too deeply to encode as JSON") from None
