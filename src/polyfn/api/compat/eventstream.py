"""AWS's event-stream framing (`application/vnd.amazon.eventstream`), the encoding side: what the Lambda API's
InvokeWithResponseStream answers with, and what botocore's `EventStreamBuffer` parses.

A message is a prelude (total length, headers length: big-endian u32 each) and its CRC32, the headers, the
payload, and the CRC32 of everything before it. A header is its name (u8 length), a type byte (7: string) and the
value (u16 length).
"""

from __future__ import annotations

import struct
import zlib

_PRELUDE = struct.Struct(">II")
_U32 = struct.Struct(">I")
_STRING = 7


def _headers(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        out += bytes((len(n),)) + n + bytes((_STRING,)) + len(v).to_bytes(2, "big") + v
    return bytes(out)


def message(headers: dict[str, str], payload: bytes | memoryview = b"") -> bytes:
    """One event-stream message."""
    head = _headers(headers)
    prelude = _PRELUDE.pack(12 + len(head) + len(payload) + 4, len(head))
    start = prelude + _U32.pack(zlib.crc32(prelude)) + head
    crc = zlib.crc32(payload, zlib.crc32(start))
    return b"".join((start, payload, _U32.pack(crc)))


def event(event_type: str, payload: bytes | memoryview = b"", content_type: str = "application/octet-stream") -> bytes:
    """An `event` message of `event_type` (e.g. Lambda's PayloadChunk, InvokeComplete)."""
    return message({":event-type": event_type, ":content-type": content_type, ":message-type": "event"}, payload)
