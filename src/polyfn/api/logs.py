"""A function's log lines as the API serves them: the `grep` filter and a live follow as Server-Sent Events
(the control API's `/v1/functions/{name}/logs`, the console)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from polyfn.api.errors import ApiError
from polyfn.model import Activation

if TYPE_CHECKING:
    from polyfn.services import Activations


def compile_grep(grep: str | None) -> re.Pattern[str] | None:
    """The `grep` query parameter: a Python regular expression (`(?i)` for case-insensitive)."""
    if not grep:
        return None
    try:
        return re.compile(grep)
    except re.error as e:
        raise ApiError(400, "invalid_grep", f"grep={grep!r} is not a valid regular expression: {e}") from None


async def follow_logs(recorder: Activations, name: str, backlog: list[dict[str, Any]], activation: str | None,
                      grep: re.Pattern[str] | None = None, heartbeat: float = 15) -> AsyncIterator[bytes]:
    """Server-Sent Events: the backlog, then live lines as activations finish; a comment as heartbeat."""
    queue: asyncio.Queue[Activation] = asyncio.Queue(maxsize=10000)

    def on_activation(act: Activation) -> None:
        if activation is None or act.id == activation:
            try:
                queue.put_nowait(act)
            except asyncio.QueueFull:
                pass

    unsubscribe = recorder.follow(name, on_activation)
    try:
        for line in backlog:
            yield b"data: " + json.dumps(line).encode() + b"\n\n"
        while True:
            try:
                act = await asyncio.wait_for(queue.get(), heartbeat)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            for ln in act.logs:  # LogLine structs are array-like on the wire but not iterable
                if grep is not None and not grep.search(ln.line):
                    continue
                yield b"data: " + json.dumps(
                    {"activation": act.id, "ts": ln.ts, "stream": ln.stream, "line": ln.line}).encode() + b"\n\n"
    finally:
        unsubscribe()
