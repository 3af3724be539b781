"""Streamed responses for Python functions on polyfn (docs/streaming.md).

A handler that returns a generator or an async generator of `bytes`/`str` streams its response: each piece
goes to the caller as it is yielded. This module adds the status and headers, and server-sent events:

    from polyfn_stream import sse, event

    def handler(req, context):
        def ticks():
            for i in range(3):
                yield event({"n": i})          # data: {"n": 0}\\n\\n
        return sse(ticks())                    # text/event-stream, no caching

When the caller goes away mid-stream the generator is closed (`GeneratorExit` at its `yield`; an async
generator's task is cancelled); a `try/finally` in it runs. An exception mid-stream ends the stream with an
error marker (for `sse`: an `event: error` whose data is the error as JSON).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any

__all__ = ["StreamingResponse", "event", "sse"]


class StreamingResponse:
    """A streamed response with its status and headers: `return StreamingResponse(chunks, 200,
    {"content-type": "text/plain"})`. `chunks` is a generator, async generator or any iterable of bytes/str."""

    def __init__(self, chunks: Iterable[bytes | str] | AsyncIterable[bytes | str], status: int = 200,
                 headers: Mapping[str, str] | None = None, content_type: str = "application/octet-stream"):
        self.chunks = chunks
        self.status = status
        self.headers = {"content-type": content_type, **(headers or {})}

    def __polyfn_stream__(self) -> tuple[int, list[tuple[str, str]], Any]:
        chunks = self.chunks
        if not hasattr(chunks, "__next__") and not hasattr(chunks, "__anext__"):
            chunks = aiter(chunks) if hasattr(chunks, "__aiter__") else iter(chunks)  # type: ignore[arg-type]
        return self.status, [(k, str(v)) for k, v in self.headers.items()], chunks


def sse(events: Iterable[str | bytes] | AsyncIterable[str | bytes], status: int = 200,
        headers: Mapping[str, str] | None = None) -> StreamingResponse:
    """A server-sent event stream (`text/event-stream`, not cached, not buffered by proxies) of `events`:
    pieces made with `event(...)`, or any text already in the event-stream format."""
    return StreamingResponse(events, status, {"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})},
                             content_type="text/event-stream; charset=utf-8")


def event(data: Any = "", event: str | None = None, id: str | None = None, retry: int | None = None) -> str:
    """One server-sent event: `data` (a str as is, anything else as JSON; each line its own `data:` field),
    with an optional `event:` name, `id:` and `retry:` (ms)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), default=str)
    out = []
    if event is not None:
        out.append(f"event: {_field(event)}\n")
    if id is not None:
        out.append(f"id: {_field(id)}\n")
    if retry is not None:
        out.append(f"retry: {int(retry)}\n")
    out.extend(f"data: {line}\n" for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "".join(out) + "\n"


def _field(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"an SSE field cannot contain a line break: {value!r}")
    return value
