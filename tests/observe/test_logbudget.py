"""The node's bounds on function output: bytes per activation, per function a second (a token bucket of bytes),
each cut marked by one line that says how many bytes were dropped and why."""

from __future__ import annotations

from polyfn.observe.logbudget import PER_ACTIVATION, PER_SECOND, LogBudget, cut, line_bytes, size
from polyfn.protocol import LogLine


def lines(*texts: str, ts: float = 1.0) -> list[LogLine]:
    return [LogLine(ts, "stdout", t) for t in texts]


def test_sizes_are_utf8_bytes() -> None:
    assert line_bytes("abc") == 3 and line_bytes("é") == 2 and line_bytes("😀") == 4
    assert size(lines("ab", "é")) == 4


def test_cut_keeps_what_fits_cuts_the_line_that_does_not_and_marks_the_rest() -> None:
    kept, dropped = cut(lines("aaaa", "bbbb", "cccc"), 6, "why")
    assert [ln.line for ln in kept] == ["aaaa", "bb", "[polyfn: 6 bytes of logs dropped: why]"]
    assert dropped == 6 and kept[-1].stream == "stderr"
    kept, dropped = cut(lines("éé"), 3, "why")  # never half a character
    assert kept[0].line == "é" and dropped == 2
    assert cut(lines("aa"), 2, "why") == (lines("aa"), 0)


def test_per_activation_bound() -> None:
    b = LogBudget(per_activation=10, per_second=1000)
    kept, dropped = b.bound("f", lines("x" * 8, "y" * 8), now=0.0)
    assert dropped == 6 and [ln.line for ln in kept][:2] == ["x" * 8, "yy"]
    assert PER_ACTIVATION in kept[-1].line and "more than 10 bytes" in kept[-1].line
    same = lines("small")
    assert b.bound("f", same, now=0.0) == (same, 0)  # under both bounds: the list itself


def test_per_function_per_second_bucket_refills_and_is_per_function() -> None:
    b = LogBudget(per_activation=100, per_second=100)  # burst: one second's worth (at least one activation)
    for _ in range(2):
        assert b.bound("f", lines("x" * 50), now=0.0)[1] == 0
    kept, dropped = b.bound("f", lines("x" * 50), now=0.0)  # the bucket is empty
    assert dropped == 50 and PER_SECOND in kept[-1].line and kept[0].line.startswith("[polyfn: 50 bytes")
    assert b.bound("g", lines("x" * 50), now=0.0)[1] == 0  # another function has its own
    assert b.bound("f", lines("x" * 50), now=0.5)[1] == 0  # half a second later: 50 bytes more
    kept, dropped = b.bound("f", lines("x" * 80), now=0.7)  # 20 available
    assert dropped == 60 and kept[0].line == "x" * 20
