"""HTTP/2 framing for an h2c connection passed through to a program (gateway/h2c.py): pure, no I/O.

The node relays an h2c connection's bytes between the client and the program, with two exceptions that need
frames, not bytes:

- **Client → program** (`ClientFrames`): every frame goes on untouched except header blocks. Each HEADERS
  (+ CONTINUATION) block is HPACK-decoded (the connection's one decoder: HPACK is stateful), shown to a `route`
  callback, and re-encoded for the program: the callback rewrites `:path` (`/fn/NAME/x` → `/x`, as the
  HTTP/1.1 gateway does) or refuses the stream (another function, no key). A refused stream never reaches the
  program: the node answers it itself (`refusal`: HEADERS with `:status` and `x-polyfn-error`, END_STREAM, and
  RST_STREAM NO_ERROR if the client was still sending), drops its later frames and gives the client back the
  connection window its dropped DATA took (WINDOW_UPDATE). The re-encoding uses no dynamic table (a size update
  to 0, then literals), so it is valid whatever header table size the program announced.
- **Program → client** (`ServerFrames`): untouched; only frame boundaries are followed, so that the node's own
  frames (above) go in between two of the program's frames, never inside one or inside a header block, and
  never before the program's first frame (its SETTINGS, which must come first).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Any

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FRAME_SIZE_ERROR, COMPRESSION_ERROR = 0x0, 0x1, 0x6, 0x9

#: the largest frame payload every peer takes (SETTINGS_MAX_FRAME_SIZE's initial value)
MAX_FRAME = 16384
#: the most a client's header block (or a frame of it) may be, and the HPACK table it may make the node keep
MAX_BLOCK = 65536

_HEAD = struct.Struct("!I")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")  # (not in a field value: RFC 9113 8.2.1; a message may quote the client)
#: header blocks for the program kept encoded, per connection
ENCODED_MAX = 256


def frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + _HEAD.pack(stream & 0x7FFFFFFF) + payload


def goaway(last_stream: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack("!II", last_stream, code) + debug)


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal header field without indexing (a new name; no Huffman): it leaves the peer's table alone."""
    return b"\x00" + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value


def _hpack_int(n: int, bits: int) -> bytes:
    top = (1 << bits) - 1
    if n < top:
        return bytes((n,))
    out, n = [top], n - top
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes((*out, n))


def _indexed_only(block: bytes) -> bool:
    """The HPACK block holds indexed header fields only (RFC 7541 6.1): it neither adds to nor resizes the table."""
    i, n = 0, len(block)
    while i < n:
        b = block[i]
        if not b & 0x80:
            return False
        i += 1
        if b & 0x7F == 0x7F:  # (the index goes on in 7-bit groups)
            while i < n and block[i] & 0x80:
                i += 1
            i += 1
    return i == n


def response_block(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A header block the node sends on its own: `:status` (static name 8) and literals, none indexed."""
    digits = str(status).encode()
    return b"\x08" + bytes((len(digits),)) + digits + b"".join(_literal(k, v) for k, v in headers)


class Refusal:
    """A stream the node answers itself: its status and `x-polyfn-error` code (the `route` callback's no)."""

    __slots__ = ("code", "message", "status")

    def __init__(self, status: int, code: str, message: str):
        self.status = status
        self.code = code
        self.message = message


class H2Error(Exception):
    """The client broke HTTP/2 (framing, HPACK): the connection ends with GOAWAY carrying `code`."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


#: route(stream_id, headers) → the headers for the program, or a Refusal
Route = Callable[[int, list[tuple[bytes, bytes]]], "list[tuple[bytes, bytes]] | Refusal"]


class ClientFrames:
    """The client's side of the connection, frame by frame (see the module's doc). `feed(data)` returns the bytes
    for the program; frames for the client pile up in `to_client`. `preface`: the bytes begin with the client
    connection preface (prior knowledge; after an `Upgrade: h2c` the client sends it too, after the 101)."""

    def __init__(self, route: Route, preface: bool = True, max_block: int = MAX_BLOCK):
        self.route = route
        self.buf = bytearray()
        self.preface = preface
        self.max_block = max_block
        self.decoder = hpack.Decoder(max_header_list_size=max_block)
        self.decoder.max_allowed_table_size = max_block
        self.encoder = hpack.Encoder()
        self.encoder.header_table_size = 0
        # no dynamic table towards the program: the first block says so (a size update to 0), and from then on a
        # block is a function of its headers alone, so repeated ones (a client's requests) are encoded once
        self.prefix = self.encoder.encode([])
        self.encoded: dict[tuple[Any, ...], bytes] = {}
        # blocks of indexed fields only (a client repeating a request: a few bytes) leave the decoder's table as it
        # was, so while no other block comes they mean the same headers: decoded once
        self.decoded: dict[bytes, list[Any]] = {}
        self.block: list[Any] | None = None  # [stream, flags, priority bytes, fragments] while CONTINUATIONs come
        self.refused: set[int] = set()
        self.last_stream = 0  # the highest stream the client opened
        self.forwarded = 0  # the highest stream that went to the program
        self.to_client: list[bytes] = []

    def feed(self, data: bytes) -> bytes:
        buf = self.buf
        buf += data
        out: list[bytes] = []
        pos = 0
        if self.preface:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    raise H2Error(PROTOCOL_ERROR, "not the HTTP/2 connection preface")
                return b""
            if buf[: len(PREFACE)] != PREFACE:
                raise H2Error(PROTOCOL_ERROR, "not the HTTP/2 connection preface")
            out.append(PREFACE)
            pos = len(PREFACE)
            self.preface = False
        n = len(buf)
        while n - pos >= 9:
            length = int.from_bytes(buf[pos:pos + 3], "big")
            if length > self.max_block:
                raise H2Error(FRAME_SIZE_ERROR, f"a frame of {length} bytes (the node takes {self.max_block} at most)")
            end = pos + 9 + length
            if end > n:
                break
            ftype, flags = buf[pos + 3], buf[pos + 4]
            stream = _HEAD.unpack_from(buf, pos + 5)[0] & 0x7FFFFFFF
            if self.block is not None and ftype != CONTINUATION:
                raise H2Error(PROTOCOL_ERROR, "a header block was interrupted by another frame")
            if ftype == HEADERS or ftype == CONTINUATION:
                self._header_frame(ftype, flags, stream, bytes(buf[pos + 9:end]), out)
            elif stream and stream in self.refused:  # (DATA, RST_STREAM, WINDOW_UPDATE, PRIORITY of a refused stream)
                if ftype == DATA and length:  # its share of the connection's window, back to the client
                    self.to_client.append(frame(WINDOW_UPDATE, 0, 0, _HEAD.pack(length)))
                if ftype == RST_STREAM:
                    self.refused.discard(stream)
            elif ftype == PUSH_PROMISE:
                raise H2Error(PROTOCOL_ERROR, "a client sent PUSH_PROMISE")
            else:
                out.append(bytes(buf[pos:end]))
            pos = end
        del buf[:pos]
        return b"".join(out)

    def _header_frame(self, ftype: int, flags: int, stream: int, payload: bytes, out: list[bytes]) -> None:
        if ftype == CONTINUATION:
            if self.block is None or self.block[0] != stream:
                raise H2Error(PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
            self.block[3].append(payload)
        else:
            if stream == 0 or stream % 2 == 0:
                raise H2Error(PROTOCOL_ERROR, f"HEADERS on stream {stream} (a client opens odd streams)")
            pad = 0
            if flags & PADDED:
                if not payload:
                    raise H2Error(PROTOCOL_ERROR, "a padded HEADERS frame without its pad length")
                pad, payload = payload[0], payload[1:]
            prio = b""
            if flags & PRIORITY_FLAG:
                prio, payload = payload[:5], payload[5:]
            if pad:
                if pad > len(payload):
                    raise H2Error(PROTOCOL_ERROR, "more padding than frame")
                payload = payload[:-pad]
            self.block = [stream, flags, prio, [payload]]
        if sum(map(len, self.block[3])) > self.max_block:
            raise H2Error(PROTOCOL_ERROR, f"a header block over {self.max_block} bytes")
        if not flags & END_HEADERS:
            return
        stream, first_flags, prio, parts = self.block
        self.block = None
        raw = b"".join(parts)
        headers = self.decoded.get(raw)
        if headers is None:
            try:
                headers = self.decoder.decode(raw, raw=True)
            except hpack.HPACKError as e:
                raise H2Error(COMPRESSION_ERROR, f"the client's header block does not decode: {e}") from None
            if not _indexed_only(raw):  # (it may have changed the table: what was kept may mean something else now)
                self.decoded.clear()
            elif len(self.decoded) < ENCODED_MAX:
                self.decoded[raw] = headers
        new = stream > self.last_stream
        if new:
            self.last_stream = stream
        elif stream in self.refused:  # (trailers of a refused stream)
            return
        if new:
            routed = self.route(stream, headers)
            if type(routed) is Refusal:
                self.refused.add(stream)
                self.to_client.append(frame(HEADERS, END_STREAM | END_HEADERS, stream, response_block(
                    routed.status, [(b"x-polyfn-error", routed.code.encode()),
                                    (b"x-polyfn-error-message", _CONTROL.sub(b"", routed.message.encode())[:1000])])))
                if not first_flags & END_STREAM:  # it was still sending: it may stop now (RFC 9113 8.1)
                    self.to_client.append(frame(RST_STREAM, 0, stream, _HEAD.pack(NO_ERROR)))
                else:
                    self.refused.discard(stream)
                return
            headers = routed
            self.forwarded = stream
        key = tuple([(h[0], h[1], isinstance(h, hpack.NeverIndexedHeaderTuple)) for h in headers])
        block = self.encoded.get(key)
        if block is None:
            if len(self.encoded) >= ENCODED_MAX:
                self.encoded.clear()
            block = self.encoded[key] = self.encoder.encode(headers, huffman=False)
        if self.prefix:
            block, self.prefix = self.prefix + block, b""
        flags = (first_flags & (END_STREAM | PRIORITY_FLAG))
        room = MAX_FRAME - len(prio)
        first, rest = prio + block[:room], block[room:]
        if not rest:
            out.append(frame(HEADERS, flags | END_HEADERS, stream, first))
            return
        out.append(frame(HEADERS, flags, stream, first))
        while rest:
            piece, rest = rest[:MAX_FRAME], rest[MAX_FRAME:]
            out.append(frame(CONTINUATION, 0 if rest else END_HEADERS, stream, piece))


class ServerFrames:
    """Follows the program's frames to tell when the node may put one of its own in between (`at_boundary`)."""

    __slots__ = ("head", "in_block", "left", "started")

    def __init__(self) -> None:
        self.left = 0  # payload bytes of the current frame still to come
        self.head = b""  # a frame header cut across reads
        self.in_block = False  # inside a header block (HEADERS/PUSH_PROMISE … CONTINUATION with END_HEADERS)
        self.started = False  # the program's first frame (its SETTINGS) went

    def feed(self, data: Any) -> None:
        n = len(data)
        pos = 0
        while pos < n:
            if self.left:
                take = min(self.left, n - pos)
                self.left -= take
                pos += take
                continue
            need = 9 - len(self.head)
            head = self.head + bytes(data[pos:pos + need])
            pos += min(need, n - pos)
            if len(head) < 9:
                self.head = head
                return
            self.head = b""
            self.started = True
            self.left = int.from_bytes(head[:3], "big")
            ftype, flags = head[3], head[4]
            if ftype in (HEADERS, PUSH_PROMISE, CONTINUATION):
                self.in_block = not flags & END_HEADERS

    @property
    def at_boundary(self) -> bool:
        return self.started and not self.left and not self.head and not self.in_block


def error_connection(stream: int, status: int, code: str, message: str) -> bytes:
    """A whole HTTP/2 answer from the node on a connection it serves alone (nothing went to a program): its
    SETTINGS, the ack of the client's, the error response on `stream` (polyfn's JSON error shape) and GOAWAY."""
    import json

    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    block = response_block(status, [(b"content-type", b"application/json"), (b"x-polyfn-error", code.encode()),
                                    (b"content-length", str(len(body)).encode())])
    return (frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0) + frame(HEADERS, END_HEADERS, stream, block)
            + frame(DATA, END_STREAM, stream, body) + goaway(stream, NO_ERROR))
