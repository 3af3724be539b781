"""The server's side of one streamed response: what an instance sends after a `Head` frame, relayed in order to
whoever answers the caller (the gateway's chunked response, the Lambda API's event stream, the invoke API).

The instance's connection (`instances/instance.py`) feeds chunks in as frames arrive; the edge takes them out with
`await stream.next()`. At most `HIGH` bytes wait here: beyond that the instance's connection is no longer read,
so a function writing faster than its client reads blocks in its own `send` (back-pressure through the socket
pair's buffer), and reading resumes once the edge has taken the held bytes below `LOW`. A 1 GiB response
therefore costs the node about `HIGH` bytes, not a gigabyte. (Pausing a connection pauses every invocation on
that instance: with `concurrency` > 1 a slow streaming client slows its instance's other calls.)

The stream ends with the invocation's `Result` (`end`), a failure of the instance (`fail`: it died, or the node
stopped it at a stream deadline) or the caller leaving (`cancel`, from the edge). `error` then tells the edge
whether the stream broke off: `None` after a clean end, else the typed error (the function's own payload, or
the platform's `{code, message}`), which the edge shows as its error marker (SSE: `event: error`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

#: bytes held for the edge before the instance's connection is paused, and below which it is resumed
HIGH = 1 << 20
LOW = 256 << 10

#: how a stream ended (the activation's `stream.end`)
COMPLETE = "complete"
ERROR = "error"
DISCONNECTED = "client_disconnected"
IDLE = "idle_timeout"
TOO_LONG = "max_duration"
GONE = "instance_gone"
CANCELLED = "cancelled"  # polyfn cancel ID


class ResponseStream:
    """One streamed response (see the module's doc). `status` and `headers` are the function's, as its `Head`
    frame said (text pairs, unchecked: the invoker makes them safe); `bytes`, `chunks` and `first` (the
    `time.perf_counter()` of the first chunk, 0 before it) are counted as chunks arrive; `last` is when the
    latest came (or the head), for the idle timeout."""

    __slots__ = (
        "_chunks",
        "_held",
        "_loop",
        "_pause",
        "_paused",
        "_waiter",
        "backlog",
        "bytes",
        "chunks",
        "ended",
        "error",
        "finished",
        "first",
        "headers",
        "inv_id",
        "last",
        "on_cancel",
        "on_end",
        "result",
        "started",
        "status",
        "upstream",
    )

    def __init__(self, inv_id: int, status: int, headers: list[tuple[str, str]],
                 pause: Callable[[bool], None], loop: asyncio.AbstractEventLoop):
        self.inv_id = inv_id
        self.status = status
        self.headers = headers
        self._pause = pause  # pause(True) stops reading the instance's connection, pause(False) resumes it
        self._loop = loop
        self._chunks: deque[Any] = deque()
        self._held = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.bytes = 0
        self.chunks = 0
        self.started = self.last = time.perf_counter()
        self.first = 0.0
        self.ended = ""  # how it ended (COMPLETE, ERROR, ...); "" while it runs
        self.finished = False  # its Result came, or its instance died
        self.error: dict[str, Any] | None = None
        self.result: Any = None  # the invocation's Result, when it came
        self.on_end: Callable[[ResponseStream], None] | None = None  # the invoker's: record, release the instance
        self.on_cancel: Callable[[ResponseStream, str], None] | None = None  # the invoker's: tell the instance
        # the invoker's, for a WebSocket passed through: a piece of what the client sent, to the instance
        self.upstream: Callable[[bytes], None] | None = None
        # and how much of it the instance has not read yet (bytes)
        self.backlog: Callable[[], int] | None = None

    # -- the instance's side ---------------------------------------------------------------------------

    def feed(self, data: Any) -> None:
        n = len(data)
        if not n:
            return
        now = time.perf_counter()
        if not self.chunks:
            self.first = now
        self.last = now
        self.chunks += 1
        self.bytes += n
        if self.ended:  # cancelled: counted (what the function wrote), not held
            return
        self._chunks.append(data)
        self._held += n
        if self._held > HIGH and not self._paused:
            self._paused = True
            self._pause(True)
        self._wake()

    def end(self, result: Any) -> None:
        """The invocation's Result came: a clean end, or (its `error` set) the function failed mid-stream."""
        self.result = result
        if not self.ended:
            self.ended = COMPLETE if result.error is None else ERROR
            if result.error is not None:
                self.error = result.error
        self._finish()

    def fail(self, how: str, error: dict[str, Any]) -> None:
        """The stream broke off without a Result: the instance died, or the node stopped it (`how`)."""
        if not self.ended:
            self.ended = how
            self.error = error
        self._finish()

    def _finish(self) -> None:
        self._resume()
        self._wake()
        self.finished = True
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end(self)

    def bind(self, on_end: Callable[[ResponseStream], None], on_cancel: Callable[[ResponseStream, str], None]) -> None:
        """The invoker's hooks. The frames after the head may all have come in the same read as the head, before
        the invoker saw the stream: then `on_end` runs now."""
        self.on_cancel = on_cancel
        if self.finished:
            on_end(self)
        else:
            self.on_end = on_end

    # -- the edge's side -------------------------------------------------------------------------------

    async def next(self) -> Any:
        """The next chunk (bytes or a memoryview of them), or None once the stream is over: then `error` says
        whether it broke off."""
        chunks = self._chunks
        while not chunks:
            if self.ended:
                return None
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        data = chunks.popleft()
        self._held -= len(data)
        if self._paused and self._held < LOW:
            self._resume()
        return data

    def cancel(self, how: str = DISCONNECTED, error: dict[str, Any] | None = None) -> None:
        """The edge stops reading (its client went: `DISCONNECTED`) or the node stops the stream at a deadline:
        nothing more is held, and (unless its Result came already) the invoker tells the instance to stop the
        function. Idempotent."""
        self._chunks.clear()
        self._held = 0
        self._resume()
        if self.ended:
            return
        self.ended = how
        self.error = error
        self._wake()
        on_cancel, self.on_cancel = self.on_cancel, None
        if on_cancel is not None:
            on_cancel(self, how)

    @property
    def held(self) -> int:
        """Bytes waiting for the edge."""
        return self._held

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self.last = time.perf_counter()  # (the function was held back, not idle)
            self._pause(False)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
