"""W3C traceparent parsing (the spec's validity rules)."""

from __future__ import annotations

import pytest

from polyfn.observe.tracing import parse_traceparent, traceparent

TID = "4bf92f3577b34a0ea0f902b7b0d5c8e1"
SID = "00f067aa0ba902b7"


@pytest.mark.parametrize(("value", "expected"), [
    (f"00-{TID}-{SID}-01", (TID, SID)),
    (f" 00-{TID}-{SID}-00 ", (TID, SID)),
    (f"01-{TID}-{SID}-01-future-stuff", (TID, SID)),  # higher versions may append fields
    (f"00-{TID}-{SID}-01-extra", ("", "")),  # version 00 is exactly 55 chars
    (f"ff-{TID}-{SID}-01", ("", "")),
    (f"00-{'0' * 32}-{SID}-01", ("", "")),
    (f"00-{TID}-{'0' * 16}-01", ("", "")),
    (f"00-{TID.upper()}-{SID}-01", ("", "")),
    (f"00-{TID[:-1]}g-{SID}-01", ("", "")),
    ("", ("", "")),
    ("garbage", ("", "")),
])
def test_parse(value: str, expected: tuple[str, str]) -> None:
    assert parse_traceparent(value) == expected


def test_own_span() -> None:
    assert traceparent(TID, "0123456789abcdef" + "f" * 16) == f"00-{TID}-0123456789abcdef-01"
