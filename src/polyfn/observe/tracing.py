"""W3C Trace Context: parse a caller's `traceparent`, build the one a function sees.

Every activation has a trace id: the caller's (from a valid `traceparent` header) or, when there is none,
the activation id itself (32 random hex digits: a valid, unique trace id at no cost). The activation's own
span id is the first 16 hex digits of its id, so the function's `traceparent` is
`00-<trace id>-<activation id[:16]>-01` and its caller's span id is kept as the activation's `parent_id`.
"""

from __future__ import annotations

_HEX = frozenset("0123456789abcdef")


def parse_traceparent(value: str) -> tuple[str, str]:
    """`(trace_id, parent_span_id)` from a `traceparent` header, or `("", "")` when it is not valid.

    Follows the spec's rules: version `00` must be exactly 55 characters; a higher version may carry more
    fields after the first four; version `ff`, all-zero ids and upper-case hex are invalid.
    """
    v = value.strip()
    if len(v) < 55 or v[2] != "-" or v[35] != "-" or v[52] != "-":
        return "", ""
    version, trace_id, span_id, flags = v[:2], v[3:35], v[36:52], v[53:55]
    if version == "ff" or not _HEX.issuperset(version) or not _HEX.issuperset(flags):
        return "", ""
    if version == "00" and len(v) != 55:
        return "", ""
    if len(v) > 55 and v[55] != "-":
        return "", ""
    if not _HEX.issuperset(trace_id) or not _HEX.issuperset(span_id):
        return "", ""
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return "", ""
    return trace_id, span_id


def traceparent(trace_id: str, activation_id: str) -> str:
    """The `traceparent` of an activation's own span (what the function and what it calls should carry)."""
    return f"00-{trace_id}-{activation_id[:16]}-01"
