"""polyfn/headers.py `safe_headers`: an instance's response headers made safe, its answers kept by header list."""

from __future__ import annotations

import pytest

from polyfn import headers as headers_mod
from polyfn.headers import safe_headers

CASES = [
    [("content-type", "text/plain; charset=utf-8")],
    [("X-A", "1"), ("x-b", "é")],
    [("x-inject", "a\r\nset-cookie: x"), ("bad:name", "v"), ("bad name", "v"), ("", "v"), ("ok", "v")],
    [("Content-Length", "5"), ("transfer-encoding", "chunked"), ("connection", "close"), ("keep-alive", "5")],
    [("x-cjk", "名前"), ("x-ok", "fine")],
    [(1, "x"), ("x", None), ("y", "z")],  # type: ignore[list-item]
]
EXPECTED = [
    [(b"content-type", b"text/plain; charset=utf-8")],
    [(b"X-A", b"1"), (b"x-b", b"\xe9")],
    [(b"ok", b"v")],
    [],
    [(b"x-ok", b"fine")],
    [(b"y", b"z")],
]


def test_the_same_answers_the_first_time_and_after() -> None:
    for _ in range(3):
        for pairs, want in zip(CASES, EXPECTED, strict=True):
            assert safe_headers(pairs) == want
            assert safe_headers([list(p) for p in pairs]) == want  # (pairs as lists: not hashable, checked as they are)


def test_each_answer_is_a_new_list() -> None:
    first = safe_headers([("x-new", "1")])
    first.append((b"x-polyfn-activation-id", b"abc"))
    assert safe_headers([("x-new", "1")]) == [(b"x-new", b"1")]


def test_the_kept_answers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(headers_mod, "_safe", {})
    for i in range(headers_mod._SAFE_MAX + 10):
        assert safe_headers([("x-n", str(i))]) == [(b"x-n", str(i).encode())]
    assert len(headers_mod._safe) <= headers_mod._SAFE_MAX


def test_large_header_lists_are_answered_but_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance's headers are untrusted: 1,024 kept lists of long values would hold megabytes."""
    monkeypatch.setattr(headers_mod, "_safe", {})
    big = [("x-big", "v" * (headers_mod._SAFE_KEPT_CHARS + 1))]
    assert safe_headers(big) == [(b"x-big", b"v" * (headers_mod._SAFE_KEPT_CHARS + 1))]
    dropped = [("x-inject", "a\r\n" + "v" * headers_mod._SAFE_KEPT_CHARS), ("ok", "1")]
    assert safe_headers(dropped) == [(b"ok", b"1")]
    assert headers_mod._safe == {}
    safe_headers([("x-small", "1")])
    assert list(headers_mod._safe) == [(("x-small", "1"),)]
