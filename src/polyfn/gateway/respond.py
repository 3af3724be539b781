"""A whole (not streamed) response in one write: the gateway's answer to almost every call.

ASGI answers with two `send` messages (the head, then the body), and uvicorn's `send` is a coroutine that
re-checks every header and builds the status line and headers on each; on the `/fn/` hot path those two
awaits cost the event loop more than the response's bytes. Under uvicorn (`send` is its request cycle's
bound method) `respond` does what the two messages would, in one place: the same header checks (uvicorn's own
regular expressions), the status line, `content-length`, one transport write, the cycle marked complete and
its `on_response` called (keep-alive, the next pipelined request). Anything this path does not cover — a
server that is not uvicorn, a framing or `connection` header among `headers`, a connection that is closing
or whose writes are paused, a request without keep-alive, a status uvicorn has no line for, a header uvicorn
would refuse — goes through the two messages as before, so its behaviour (errors included) is uvicorn's.
"""

from __future__ import annotations

from typing import Any

try:
    from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE
except ImportError:  # (uvicorn without httptools: the two ASGI messages)
    STATUS_LINE = {}
    HEADER_RE = HEADER_VALUE_RE = None

_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})

#: header names and values `head_parts` found writable before (uvicorn's checks passed, no framing name): a name or
#: value seen again is a set lookup, not a regular expression's search (~0.3 µs each, 4-6 a response). Bounded:
#: past `_CHECKED_MAX` the others are checked each time. A value of letters and digits only (an activation id)
#: passes uvicorn's check as it is, and is not kept.
_names_ok: set[bytes] = set()
_values_ok: set[bytes] = set()
_CHECKED_MAX = 1024
#: only short names and values are kept (an instance's headers are untrusted: 1,024 long ones would be megabytes)
_KEPT_LEN = 256


#: the head's last line for bodies of up to `_LENGTHS_MAX` bytes, made once each (a bytes %-format per response
#: was ~0.2 µs of the loop)
_lengths: dict[int, bytes] = {}
_LENGTHS_MAX = 65536


def length_line(n: int) -> bytes:
    """`content-length: N` and the blank line that ends a head."""
    line = _lengths.get(n)
    if line is None:
        line = b"content-length: %d\r\n\r\n" % n
        if n <= _LENGTHS_MAX and len(_lengths) < 4096:
            _lengths[n] = line
    return line


def head_parts(line: bytes, headers: list[tuple[bytes, bytes]]) -> list[bytes] | None:
    """The status line and `headers` as pieces of one write (without content-length), or None when uvicorn
    would refuse a header or one is a framing header (the caller then takes uvicorn's path)."""
    names, values = _names_ok, _values_ok
    parts = [line]
    for name, value in headers:
        if type(name) is not bytes or name not in names:
            if HEADER_RE.search(name) or name.lower() in _FRAMING:
                return None
            if type(name) is bytes and len(names) < _CHECKED_MAX and len(name) <= _KEPT_LEN:
                names.add(name)
        if type(value) is not bytes or (not value.isalnum() and value not in values):
            if HEADER_VALUE_RE.search(value):
                return None
            if type(value) is bytes and len(values) < _CHECKED_MAX and len(value) <= _KEPT_LEN:
                values.add(value)
        parts += (name, b": ", value, b"\r\n")
    return parts


def _written(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """Write the response through uvicorn's cycle directly; False (nothing done) when it is not that case."""
    cycle = getattr(send, "__self__", None)
    line = STATUS_LINE.get(status)
    if (line is None or getattr(cycle, "default_headers", None) != [] or cycle.response_started
            or cycle.disconnected or not cycle.keep_alive or cycle.flow.write_paused):
        return False
    parts = head_parts(line, headers)
    if parts is None:
        return False
    parts.append(length_line(len(body)))
    if cycle.scope["method"] != "HEAD":
        parts.append(body)
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.chunked_encoding = False
    cycle.transport.write(b"".join(parts))
    cycle.response_complete = True
    cycle.message_event.set()
    cycle.on_response()
    return True


async def respond(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Answer with `status`, `headers` (without framing headers: content-length is added) and `body`."""
    if _written(send, status, headers, body):
        return
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
