"""The instance's per-invocation log buffer: line splitting, truncation markers, flood limits."""

from __future__ import annotations

import pytest

from polyfn.runtimes.python.capture import STREAMS, LogBuffer


def add(buf: LogBuffer, stream: str, text: str) -> None:
    buf.write(STREAMS.index(stream), text)


def lines(buf: LogBuffer) -> list[tuple[str, str]]:
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
    buf = LogBuffer(line_max=10, lines_max=100)
    for w in writes:
        add(buf, "stdout", w)
    assert [t for _, t in lines(buf)] == expected


def test_unfinished_line_holds_at_most_line_max_chars() -> None:
    buf = LogBuffer(line_max=10, lines_max=100)
    for _ in range(1000):
        add(buf, "stdout", "z" * 100)
    assert sum(map(len, buf.parts[0])) == buf.size[0] == 10
    assert lines(buf) == [("stdout", "z" * 10 + "… [truncated 99990 chars]")]


def test_flood_keeps_limit_and_adds_marker_then_resets() -> None:
    buf = LogBuffer(line_max=100, lines_max=3)
    for i in range(10):
        add(buf, "stdout" if i % 2 else "stderr", f"{i}\n")
    got = lines(buf)
    assert got == [("stderr", "0"), ("stdout", "1"), ("stderr", "2"), ("stderr", "[polyfn: 7 more lines dropped]")]
    add(buf, "stdout", "next\n")
    assert lines(buf) == [("stdout", "next")]


def test_streams_do_not_mix_partial_lines() -> None:
    buf = LogBuffer(line_max=100, lines_max=10)
    add(buf, "stdout", "out-")
    add(buf, "stderr", "err\n")
    add(buf, "stdout", "done\n")
    assert lines(buf) == [("stderr", "err"), ("stdout", "out-done")]


def test_print_through_capture_matches_the_buffer_rules() -> None:
    """`Capture.write` inlines the common cases (a piece without newline, a lone newline); print() through
    it must give what the buffer's general path gives."""
    from polyfn.runtimes.python.capture import Capture

    buf = LogBuffer(line_max=10, lines_max=100)
    out, err = Capture("stdout", buf), Capture("stderr", buf)
    print("a", "b", file=out)
    print("x" * 8, "y" * 8, file=out)  # pieces that together pass line_max
    print("e1", end="", file=err)
    out.write("c\nd")  # a newline inside a piece, then an unfinished line
    print(file=err)
    print("z" * 25, file=out)  # the unfinished "d" joins this line, which is cut
    assert lines(buf) == [("stdout", "a b"), ("stdout", "x" * 8 + " y… [truncated 7 chars]"), ("stdout", "c"),
                          ("stderr", "e1"), ("stdout", "d" + "z" * 9 + "… [truncated 16 chars]")]
    assert out.write("q") == 1 and lines(buf) == [("stdout", "q")]


class _Str(str):
    def __str__(self) -> str:
        return "custom"


def _calls() -> list[tuple[tuple[object, ...], dict[str, object]]]:
    """print() calls covering the fast path and every way out of it."""
    import io

    return [
        (("handled", "/fn/hello"), {}),
        ((), {}),  # an empty line
        ((1, 2.5, None, _Str("s")), {}),  # str() of non-str and str-subclass arguments
        (("x" * 25,), {}),  # cut at line_max
        (("a\nb",), {}),  # a newline inside an argument: two lines
        (("to err",), {"file": "stderr"}),
        (("p", "q"), {"sep": "-"}),
        (("no end",), {"end": ""}),
        (("joins the started line",), {}),
        (("s", "t"), {"sep": None, "end": None}),
        (("elsewhere",), {"file": io.StringIO()}),  # not a capture: the builtin, nothing in the buffer
        (("flushed",), {"flush": True}),
    ]


def test_installed_print_gives_what_builtin_print_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """`capture_output` replaces print() with one that hands a whole line to the capture at once; the
    lines must be exactly those builtin print() leaves through `Capture.write`, truncation included."""
    import builtins
    import sys

    from polyfn.runtimes.python import capture

    results = []
    for printer in (builtins.print, capture.captured_print):
        buf = LogBuffer(line_max=10, lines_max=100)
        out, err = capture.Capture("stdout", buf), capture.Capture("stderr", buf)
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        for args, kwargs in _calls():
            if kwargs.get("file") == "stderr":
                kwargs = {**kwargs, "file": err}
            printer(*args, **kwargs)
        monkeypatch.undo()
        results.append(lines(buf))
    assert results[0] == results[1]
    assert ("stdout", "handled /f… [truncated 7 chars]") in results[1] and ("stderr", "to err") in results[1]
    assert ("stdout", "1 2.5 None… [truncated 7 chars]") in results[1]
    assert ("stdout", "no endjoin… [truncated 18 chars]") in results[1]


def test_installed_print_respects_the_flood_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from polyfn.runtimes.python import capture

    buf = LogBuffer(line_max=100, lines_max=3)
    monkeypatch.setattr(sys, "stdout", capture.Capture("stdout", buf))
    for n in range(5):
        capture.captured_print("line", n)
    monkeypatch.undo()
    assert lines(buf) == [("stdout", "line 0"), ("stdout", "line 1"), ("stdout", "line 2"),
                          ("stderr", "[polyfn: 2 more lines dropped]")]


def test_bytes_per_invocation_are_bounded_with_a_marker_then_reset() -> None:
    buf = LogBuffer(line_max=100, lines_max=100, bytes_max=10)
    for text in ("aaaa\n", "bbbb\n", "cccc\n", "dd\n"):  # (8 held; cccc would pass 10; dd fits)
        add(buf, "stdout", text)
    got = lines(buf)
    assert got[:3] == [("stdout", "aaaa"), ("stdout", "bbbb"), ("stdout", "dd")]
    assert got[3] == ("stderr", "[polyfn: 1 more lines dropped: 4 bytes of logs dropped: the activation logged "
                                "more than 10 bytes (POLYFN_LOG_BYTES_PER_ACTIVATION)]")
    add(buf, "stdout", "eeeeeeee\n")
    assert lines(buf) == [("stdout", "eeeeeeee")]
