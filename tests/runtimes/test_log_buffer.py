"""The instance's per-invocation log buffer: line splitting, truncation markers, flood limits."""

from __future__ import annotations

import pytest

from polyfn.runtimes.python.instance import _STREAMS, _LogBuffer


def add(buf: _LogBuffer, stream: str, text: str) -> None:
    buf.write(_STREAMS.index(stream), text)


def lines(buf: _LogBuffer) -> list[tuple[str, str]]:
    return [(s, t) for _, s, t in buf.drain()]


@pytest.mark.parametrize(("writes", "expected"), [
    (["a\n", "b\n"], ["a", "b"]),
    (["a", "b\n"], ["ab"]),
    (["a\nb"], ["a", "b"]),  # the unfinished line is flushed at the end of the invocation
    (["\n"], [""]),
    (["x" * 25, "\n"], ["x" * 10 + "… [truncated 15 chars]"]),  # print(long) writes the text, then "\n"
    (["x" * 8, "x" * 8, "x" * 8, "\n", "y\n"], ["x" * 10 + "… [truncated 14 chars]", "y"]),
    (["x" * 25], ["x" * 10 + "… [truncated 15 chars]"]),
])
def test_lines_and_truncation(writes: list[str], expected: list[str]) -> None:
    buf = _LogBuffer(line_max=10, lines_max=100)
    for w in writes:
        add(buf, "stdout", w)
    assert [t for _, t in lines(buf)] == expected


def test_unfinished_line_holds_at_most_line_max_chars() -> None:
    buf = _LogBuffer(line_max=10, lines_max=100)
    for _ in range(1000):
        add(buf, "stdout", "z" * 100)
    assert sum(map(len, buf.parts[0])) == buf.size[0] == 10
    assert lines(buf) == [("stdout", "z" * 10 + "… [truncated 99990 chars]")]


def test_flood_keeps_limit_and_adds_marker_then_resets() -> None:
    buf = _LogBuffer(line_max=100, lines_max=3)
    for i in range(10):
        add(buf, "stdout" if i % 2 else "stderr", f"{i}\n")
    got = lines(buf)
    assert got == [("stderr", "0"), ("stdout", "1"), ("stderr", "2"), ("stderr", "[polyfn: 7 more lines dropped]")]
    add(buf, "stdout", "next\n")
    assert lines(buf) == [("stdout", "next")]


def test_streams_do_not_mix_partial_lines() -> None:
    buf = _LogBuffer(line_max=100, lines_max=10)
    add(buf, "stdout", "out-")
    add(buf, "stderr", "err\n")
    add(buf, "stdout", "done\n")
    assert lines(buf) == [("stderr", "err"), ("stdout", "out-done")]


def test_print_through_capture_matches_the_buffer_rules() -> None:
    """`_Capture.write` inlines the common cases (a piece without newline, a lone newline); print() through
    it must give what the buffer's general path gives."""
    from polyfn.runtimes.python.instance import _Capture

    buf = _LogBuffer(line_max=10, lines_max=100)
    out, err = _Capture("stdout", buf), _Capture("stderr", buf)
    print("a", "b", file=out)
    print("x" * 8, "y" * 8, file=out)  # pieces that together pass line_max
    print("e1", end="", file=err)
    out.write("c\nd")  # a newline inside a piece, then an unfinished line
    print(file=err)
    print("z" * 25, file=out)  # the unfinished "d" joins this line, which is cut
    assert lines(buf) == [("stdout", "a b"), ("stdout", "x" * 8 + " y… [truncated 7 chars]"), ("stdout", "c"),
                          ("stderr", "e1"), ("stdout", "d" + "z" * 9 + "… [truncated 16 chars]")]
    assert out.write("q") == 1 and lines(buf) == [("stdout", "q")]
