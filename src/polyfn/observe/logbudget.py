"""How many bytes of a function's output the node keeps: per activation, per function per second.

A function that prints without end must not be able to fill the node's disk or memory, nor slow its
neighbours (one printing 16 KB lines under four looping callers grew the data dir by ~90 MB/s and the
node's RSS to 3.4 GB). So each activation keeps at most `per_activation` bytes of log lines (like Lambda's
256 KB log events), and each function at most `per_second` bytes a second on average (a token bucket of
bytes, with room for one full activation). What is cut is replaced by one marker line that says how many
bytes were dropped and which setting to raise. The third bound, the log store's total size on disk, is
the recorder's (`observe/recorder.py`): it drops the oldest activations' logs.

Pure: the caller passes `now`; the instance runtimes bound their buffers too, but an instance is untrusted,
so this is where the bound holds.
"""

from __future__ import annotations

from polyfn.protocol import LogLine

PER_ACTIVATION = "POLYFN_LOG_BYTES_PER_ACTIVATION"
PER_SECOND = "POLYFN_LOG_BYTES_PER_SECOND"


def line_bytes(line: str) -> int:
    """UTF-8 size of a line (`isascii` is O(1) in CPython: most lines cost a length)."""
    return len(line) if line.isascii() else len(line.encode("utf-8", "replace"))


def size(logs: list[LogLine]) -> int:
    return sum([line_bytes(ln.line) for ln in logs])


def marker(ts: float, dropped: int, why: str) -> LogLine:
    return LogLine(ts, "stderr", f"[polyfn: {dropped} bytes of logs dropped: {why}]")


def cut(logs: list[LogLine], keep: int, why: str) -> tuple[list[LogLine], int]:
    """The first lines of `logs` that fit in `keep` bytes (a line that does not fit is cut short, so a
    single huge line still shows its start), then a marker line; and how many bytes were dropped."""
    out: list[LogLine] = []
    room = keep
    dropped = 0
    for ln in logs:
        n = line_bytes(ln.line)
        if n <= room:
            out.append(ln)
            room -= n
        elif room > 0:
            head = ln.line.encode("utf-8", "replace")[:room].decode("utf-8", "ignore")
            out.append(LogLine(ln.ts, ln.stream, head))
            dropped += n - line_bytes(head)
            room = 0
        else:
            dropped += n
    if dropped:
        out.append(marker(logs[-1].ts, dropped, why))
    return out, dropped


class LogBudget:
    """The per-activation and per-function-per-second bounds of one node."""

    __slots__ = ("buckets", "per_activation", "per_second")

    def __init__(self, per_activation: int, per_second: int):
        self.per_activation = per_activation
        self.per_second = per_second
        self.buckets: dict[str, tuple[float, float]] = {}  # function → (bytes available, when)

    def bound(self, function: str, logs: list[LogLine], now: float) -> tuple[list[LogLine], int]:
        """The lines of one activation that the node keeps, and how many bytes it dropped."""
        n = size(logs)
        burst = max(self.per_second, self.per_activation)
        avail, stamp = self.buckets.get(function, (burst, now))
        avail = min(burst, avail + (now - stamp) * self.per_second)
        keep = min(n, self.per_activation, max(0, int(avail + 1e-6)))
        if len(self.buckets) > 100_000:  # (names come from deploys, but never grow without bound)
            self.buckets.clear()
        self.buckets[function] = (avail - keep, now)
        if keep >= n:
            return logs, 0
        if keep < min(n, self.per_activation):
            why = f"the function logged more than {self.per_second} bytes a second ({PER_SECOND})"
        else:
            why = f"the activation logged more than {self.per_activation} bytes ({PER_ACTIVATION})"
        return cut(logs, keep, why)
