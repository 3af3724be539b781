"""`flavors.base.stream_parts`: which return values stream, with what status and headers (table-driven)."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest

from polyfn.runtimes.python.flavors.base import STREAM_CT, stream_parts
from polyfn.runtimes.python.startup import PROVIDED_DIR

# the module functions import as `polyfn_stream` (loaded from its file: the test's import path stays as it is)
_spec = importlib.util.spec_from_file_location("polyfn_stream", os.path.join(PROVIDED_DIR, "polyfn_stream", "__init__.py"))
assert _spec is not None and _spec.loader is not None
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
StreamingResponse, event, sse = _mod.StreamingResponse, _mod.event, _mod.sse


def gen() -> Any:
    yield b"x"


async def agen() -> Any:
    yield "x"


@pytest.mark.parametrize("value, status, headers", [
    (gen(), 200, STREAM_CT),
    (agen(), 200, STREAM_CT),
    ((gen(), 201), 201, STREAM_CT),
    ((gen(), 200, {"content-type": "text/csv"}), 200, [("content-type", "text/csv")]),
    ({"statusCode": 202, "headers": {"x-a": "1"}, "cookies": ["c=1"], "body": gen()}, 202,
     [*STREAM_CT, ("x-a", "1"), ("set-cookie", "c=1")]),
    (StreamingResponse(["a", "b"], 203, {"x-b": "2"}, content_type="text/plain"), 203,
     [("content-type", "text/plain"), ("x-b", "2")]),
    (sse(iter([])), 200, [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"),
                          ("x-accel-buffering", "no")]),
])
def test_streamed_values(value: Any, status: int, headers: list[tuple[str, str]]) -> None:
    parts = stream_parts(value)
    assert parts is not None and parts[0] == status and parts[1] == headers
    assert hasattr(parts[2], "__next__") or hasattr(parts[2], "__anext__")


@pytest.mark.parametrize("value", ["text", b"bytes", 1, None, [1], {"a": 1}, {"statusCode": 200, "body": "x"},
                                   ("body", 200), (gen(), "200"), {"body": gen()}, iter([b"x"])])
def test_everything_else_is_buffered(value: Any) -> None:
    assert stream_parts(value) is None


def test_events() -> None:
    assert event({"a": 1}) == 'data: {"a":1}\n\n'
    assert event("two\nlines", event="e", id="7", retry=100) == "event: e\nid: 7\nretry: 100\ndata: two\ndata: lines\n\n"
    with pytest.raises(ValueError):
        event("x", event="bad\nname")
