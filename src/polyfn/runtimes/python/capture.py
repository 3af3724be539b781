"""Output capture in the instance: what a function prints goes to the current invocation's buffer (a context
variable, so concurrent invocations never mix their logs), bounded per line, per invocation and in bytes; once an
invocation has run a while its complete lines are sent ahead of its result (`Logs` frames), so a timeout or a
crash does not take them with it."""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import io
import math
import sys
import threading
import time
from typing import Any

from polyfn.protocol import Invoke, Logs, encode

current_buffer: contextvars.ContextVar[LogBuffer | None] = contextvars.ContextVar("polyfn_logs", default=None)


STREAMS = ("stdout", "stderr")


class LogBuffer:
    """Lines printed during one invocation (or during init).

    Each stream's unfinished line is kept as a list of pieces (print() writes each argument, separator and
    end separately: "a", " ", "b", "\n"), joined once when its newline comes. At most `line_max` chars of
    it are held (no memory blow-up from a huge line written in pieces); what is cut off beyond that is
    counted for the truncation marker. At most `bytes_max` characters of complete lines are held: a flood
    costs neither the instance's memory nor a huge result frame (the server bounds the bytes again)."""

    __slots__ = ("bytes_max", "cut", "dropped", "dropped_bytes", "held", "id", "line_max", "lines", "lines_max",
                 "parts", "size", "stream_after", "streamer")

    def __init__(self, line_max: int, lines_max: int, bytes_max: int = 1 << 62):
        self.lines: list[tuple[float, str, str]] = []
        self.held = 0  # characters in `lines`
        self.bytes_max = bytes_max
        self.dropped_bytes = 0
        self.parts: tuple[list[str], list[str]] = ([], [])  # per stream (index in STREAMS)
        self.size = [0, 0]  # chars held in parts[i], at most line_max
        self.cut = [0, 0]  # chars of the unfinished line cut off beyond line_max
        self.line_max = line_max
        self.lines_max = lines_max
        self.dropped = 0
        # Streaming: once the invocation has run until `stream_after` (time.monotonic()), complete lines are
        # sent ahead of the result by `streamer(self)` (a `Streamer`) as `Logs` of invocation `id`, at most every
        # STREAM_EVERY s, so a timeout or crash does not take them with it. inf: never.
        self.stream_after = math.inf
        self.streamer: Any = None
        self.id = 0

    def write(self, i: int, text: str) -> None:
        """Any text to stream `i` (the general case of `Capture.write`)."""
        if "\n" not in text:
            self._extend(i, text)
            return
        *complete, rest = text.split("\n")
        for line in complete:
            if line:
                self._extend(i, line)
            self.end_line(i)
        if rest:
            self._extend(i, rest)

    def _extend(self, i: int, text: str) -> None:
        held = self.size[i]
        room = self.line_max - held
        if len(text) <= room:
            self.parts[i].append(text)
            self.size[i] = held + len(text)
            return
        if room > 0:
            self.parts[i].append(text[:room])
            self.size[i] = self.line_max
        self.cut[i] += len(text) - max(room, 0)

    def end_line(self, i: int) -> None:
        parts = self.parts[i]
        line = "".join(parts)
        parts.clear()
        self.size[i] = 0
        cut = self.cut[i]
        if cut:
            self.cut[i] = 0
            line += f"… [truncated {cut} chars]"
        if len(self.lines) >= self.lines_max or self.held + len(line) > self.bytes_max:
            self.drop(line)
            return
        self.held += len(line)
        self.lines.append((time.time(), STREAMS[i], line))
        if self.stream_after != math.inf and time.monotonic() >= self.stream_after:
            self.streamer(self)

    def drop(self, line: str) -> None:
        self.dropped += 1
        if self.held + len(line) > self.bytes_max:  # (lines over the line count alone keep the old marker)
            self.dropped_bytes += len(line) if line.isascii() else len(line.encode("utf-8", "replace"))

    def pending(self) -> bool:
        return bool(self.lines or self.dropped or self.size[0] or self.size[1] or self.cut[0] or self.cut[1])

    def drain(self) -> list[tuple[float, str, str]]:
        for i in (0, 1):
            if self.size[i] or self.cut[i]:
                self.end_line(i)
        if self.dropped:
            what = f"[polyfn: {self.dropped} more lines dropped]"
            if self.dropped_bytes:
                what = (f"[polyfn: {self.dropped} more lines dropped: {self.dropped_bytes} bytes of logs dropped: the "
                        f"activation logged more than {self.bytes_max} bytes (POLYFN_LOG_BYTES_PER_ACTIVATION)]")
            self.lines.append((time.time(), "stderr", what))
            self.dropped = self.dropped_bytes = 0
        out, self.lines = self.lines, []
        self.held = 0
        return out


class Capture(io.TextIOBase):
    """sys.stdout / sys.stderr replacement routing writes to the current invocation's buffer.

    `write` is on the path of every print() (four calls for `print(a, b)`), so the common cases are
    inline: a piece without a newline joins the unfinished line, a lone "\n" ends it."""

    def __init__(self, stream: str, fallback: LogBuffer):
        self.stream = stream
        self.index = STREAMS.index(stream)
        self.fallback = fallback

    def write(self, s: str) -> int:
        buf = current_buffer.get() or self.fallback
        i = self.index
        if "\n" not in s:
            size = buf.size
            n = size[i] + len(s)
            if n <= buf.line_max:
                buf.parts[i].append(s)
                size[i] = n
                return len(s)
        elif s == "\n":
            buf.end_line(i)
            return 1
        buf.write(i, s)
        return len(s)

    def write_line(self, s: str) -> None:
        """`s` and a newline: one call for what print() writes in 2n pieces (see `captured_print`)."""
        buf = current_buffer.get() or self.fallback
        i = self.index
        if buf.size[i] or len(s) > buf.line_max or "\n" in s:  # joins a started line, is cut, or is several
            buf.write(i, s)
            buf.end_line(i)
        elif len(buf.lines) < buf.lines_max and buf.held + len(s) <= buf.bytes_max:
            buf.held += len(s)
            buf.lines.append((time.time(), STREAMS[i], s))
            if buf.stream_after != math.inf and time.monotonic() >= buf.stream_after:
                buf.streamer(buf)
        else:
            buf.drop(s)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


_builtin_print = builtins.print


def captured_print(*args: object, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False) -> None:
    """print() as the function sees it. To a capture with the default separator and end it hands over the
    whole line in one `write_line` (builtin print calls `write` once per argument, separator and end: four
    Python-level calls for `print('handled', path)`, half the cost of a log line in the instance).
    Anything else goes to the builtin, unchanged."""
    out = sys.stdout if file is None else file
    if type(out) is Capture and sep == " " and end == "\n":
        out.write_line(" ".join([a if type(a) is str else str(a) for a in args]))
    else:
        _builtin_print(*args, sep=sep, end=end, file=file, flush=flush)


def capture_output(init_buf: LogBuffer) -> None:
    """From here on, what this process prints goes to the current invocation's buffer (`init_buf` outside
    any invocation)."""
    sys.stdout = Capture("stdout", init_buf)
    sys.stderr = Capture("stderr", init_buf)
    builtins.print = captured_print


STREAM_AFTER = 1.0  # s an invocation runs before its lines are streamed (or half its timeout, if less)
STREAM_EVERY = 0.1  # s between two streamed batches


class Streamer:
    """Sends the complete lines of a running invocation (`buf.id`) ahead of its result (protocol.Logs), called
    as `streamer(buf)` from a print() in the handler once the buffer's `stream_after` has passed. Only the
    serving thread sends (the blocking loop's, or the asyncio loop's), so frames never interleave; a line
    printed by another thread of the function stays in the buffer and goes with the next batch. One per
    instance: what is per invocation is in the buffer."""

    __slots__ = ("send", "thread")

    def __init__(self, send: Any):
        self.send = send
        self.thread = threading.get_ident()  # the serving thread: the only one that may send

    def __call__(self, buf: LogBuffer) -> None:
        if threading.get_ident() != self.thread:
            return  # another thread of the function: its lines go with the next batch the handler's thread sends
        buf.stream_after = math.inf  # not again from inside the drain below
        held = buf.lines
        lines = held[:]  # copy, then cut (each one step under the GIL): a line another thread appends in between
        del held[:len(lines)]  # stays for the next batch instead of going with a list already sent
        buf.held = 0
        try:
            self.send(encode(Logs(buf.id, lines)))  # type: ignore[arg-type]  # [ts, stream, line] tuples
        finally:
            buf.stream_after = time.monotonic() + STREAM_EVERY


def stream_after(deadline: float, mono: float, wall: float) -> float:
    """When an invocation with `deadline` (epoch s) that starts at `mono` (time.monotonic()) / `wall`
    (time.time()) begins streaming its lines: after STREAM_AFTER, or half its time left if less."""
    left = deadline - wall
    return mono + (STREAM_AFTER if left >= 2 * STREAM_AFTER else max(left, 0.0) / 2)


class LoopStreams:
    """Streaming for the loop (`_serve_async`: async handlers, or concurrency > 1): once an invocation has run
    STREAM_AFTER (or half its timeout), its complete lines go out ahead of its result — from the print itself
    on the loop's thread (an async handler, even one that blocks the loop), and from one timer of the
    instance, every STREAM_EVERY s while invocations are in flight (`live`), for what a sync handler prints in
    the pool's threads or a task prints before it waits. (One timer, not one per invocation: a uvloop timer
    costs ~10 µs to arm and cancel.) The clock is read once per loop turn (`turn`), not per invocation: the
    calls a read brings start in that turn."""

    __slots__ = ("handle", "live", "mono", "streamer", "wall")

    def __init__(self, send: Any):
        self.streamer = Streamer(send)
        self.live: dict[int, LogBuffer] = {}  # invocations in flight that the timer looks at, by id
        self.handle: asyncio.TimerHandle | None = None
        self.mono = self.wall = 0.0

    def turn(self) -> None:
        """Read the clock for the invocations that start in this loop turn."""
        self.mono, self.wall = time.monotonic(), time.time()

    def arm(self, buf: LogBuffer, inv: Invoke) -> None:
        """Stream `buf`'s lines from a print once `inv` has run a while (for one that ends in this turn)."""
        buf.id = inv.id
        buf.streamer = self.streamer
        buf.stream_after = stream_after(inv.deadline, self.mono, self.wall)

    def start(self, buf: LogBuffer, inv: Invoke) -> None:
        """`arm`, and the timer's too (for an invocation that runs on after this turn)."""
        self.arm(buf, inv)
        self.watch(buf)

    def watch(self, buf: LogBuffer) -> None:
        self.live[buf.id] = buf
        if self.handle is None:
            self.handle = asyncio.get_running_loop().call_later(STREAM_EVERY, self.tick)

    def stop(self, inv_id: int) -> None:
        buf = self.live.pop(inv_id, None)
        if buf is not None:
            buf.stream_after = math.inf

    def tick(self) -> None:
        now = time.monotonic()
        for buf in list(self.live.values()):
            if buf.lines and now >= buf.stream_after:
                self.streamer(buf)
        self.handle = asyncio.get_running_loop().call_later(STREAM_EVERY, self.tick) if self.live else None
