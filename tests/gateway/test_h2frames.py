"""gateway/h2frames.py with the `h2` package on both sides: a real client's bytes in, a real server reading what
the filter forwards (and a real client reading what the node answers itself)."""

from __future__ import annotations

import struct
from typing import Any

import h2.config
import h2.connection
import h2.events
import hpack
import pytest

from polyfn.gateway.h2frames import (
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    HEADERS,
    PREFACE,
    PROTOCOL_ERROR,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    ClientFrames,
    H2Error,
    Refusal,
    ServerFrames,
    error_connection,
    frame,
)


def client() -> h2.connection.H2Connection:
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    return c


def server() -> h2.connection.H2Connection:
    s = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    s.initiate_connection()
    s.data_to_send()
    return s


def strip_fn(stream: int, headers: list[tuple[bytes, bytes]]) -> Any:
    """The gateway's route in small: /fn/ok/… goes on without its prefix, anything else is refused."""
    path = dict(headers)[b":path"]
    if not path.startswith(b"/fn/ok"):
        return Refusal(421, "h2c_other_function", "bound to ok")
    return [(k, path[6:] or b"/" if k == b":path" else v) for k, v in headers]


def request(c: h2.connection.H2Connection, path: str, *extra: tuple[str, str], end: bool = True, **kw: Any) -> int:
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "n"), *extra],
                   end_stream=end, **kw)
    return sid


def requests_seen(s: h2.connection.H2Connection, data: bytes) -> list[Any]:
    return [e for e in s.receive_data(data) if isinstance(e, h2.events.RequestReceived)]


@pytest.mark.parametrize("piece", [1, 7, 9, 100, 1 << 20])
def test_the_program_gets_the_streams_with_paths_rewritten_however_the_bytes_are_cut(piece: int) -> None:
    c, s = client(), server()
    request(c, "/fn/ok/a?x=1", ("x-big", "v" * 40000))  # over 16 KiB: HEADERS + CONTINUATION both ways
    request(c, "/fn/ok", ("x-big", "v" * 40000))
    wire = c.data_to_send()
    f = ClientFrames(strip_fn)
    out = b"".join(f.feed(wire[i:i + piece]) for i in range(0, len(wire), piece))
    assert out.startswith(PREFACE)
    seen = requests_seen(s, out)
    assert [dict(e.headers)[":path"] for e in seen] == ["/a?x=1", "/"]
    assert all(dict(e.headers)["x-big"] == "v" * 40000 for e in seen)
    assert f.forwarded == 3 and not f.to_client


def test_a_refused_stream_is_answered_by_the_node_and_never_reaches_the_program() -> None:
    c, s = client(), server()
    request(c, "/fn/ok/1", ("x-same", "same"))
    refused = request(c, "/fn/other/x", ("x-same", "same"), end=False)
    c.send_data(refused, b"z" * 5000, end_stream=True)
    later = request(c, "/fn/ok/2", ("x-same", "same"))  # (its block refers to entries the refused one added)
    f = ClientFrames(strip_fn)
    out = f.feed(c.data_to_send())
    assert [dict(e.headers)[":path"] for e in requests_seen(s, out)] == ["/1", "/2"]
    assert later == 5 and f.forwarded == 5
    # what the client gets from the node, read by the client itself
    answered = [e for e in c.receive_data(frame(SETTINGS, 0, 0) + b"".join(f.to_client))]
    response = next(e for e in answered if isinstance(e, h2.events.ResponseReceived))
    assert response.stream_id == refused and dict(response.headers)[":status"] == "421"
    assert dict(response.headers)["x-polyfn-error"] == "h2c_other_function"
    assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == refused for e in answered)
    kinds = [(fr[3], int.from_bytes(fr[9:13], "big") if fr[3] != HEADERS else None)
             for fr in _frames(b"".join(f.to_client))]
    assert kinds == [(HEADERS, None), (RST_STREAM, 0), (WINDOW_UPDATE, 5000)]  # its DATA's window, given back


def test_trailers_and_frames_of_a_refused_stream_are_dropped_too() -> None:
    c = client()
    sid = request(c, "/fn/nope", end=False)
    c.send_data(sid, b"abc")
    c.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    f = ClientFrames(strip_fn)
    out = f.feed(c.data_to_send())
    assert out == client().data_to_send()  # (the preface and SETTINGS only: forwarded as they were)
    assert sid in f.refused


def _frames(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 3], "big")
        out.append(data[pos:pos + 9 + n])
        pos += 9 + n
    return out


@pytest.mark.parametrize("wire, code", [
    (b"GET / HTTP/1.1\r\n\r\n" + b"x" * 10, PROTOCOL_ERROR),  # not the preface
    (PREFACE + frame(CONTINUATION, END_HEADERS, 1, b"\x82"), PROTOCOL_ERROR),  # CONTINUATION with no HEADERS
    (PREFACE + frame(HEADERS, 0, 1, b"\x82") + frame(DATA, 0, 1, b"x"), PROTOCOL_ERROR),  # a block interrupted
    (PREFACE + frame(HEADERS, END_HEADERS, 2, b"\x82"), PROTOCOL_ERROR),  # an even stream from a client
    (PREFACE + frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff"), COMPRESSION_ERROR),  # not HPACK
])
def test_a_client_that_breaks_http2_ends_the_connection(wire: bytes, code: int) -> None:
    with pytest.raises(H2Error) as e:
        ClientFrames(strip_fn).feed(wire)
    assert e.value.code == code


def test_the_node_may_speak_only_between_the_programs_frames() -> None:
    s = server()
    s.data_to_send()
    sf = ServerFrames()
    assert not sf.at_boundary  # (nothing before the program's SETTINGS)
    settings = frame(SETTINGS, 0, 0, struct.pack("!HI", 3, 100))
    sf.feed(settings[:4])
    assert not sf.at_boundary
    sf.feed(settings[4:])
    assert sf.at_boundary
    block = hpack.Encoder().encode([(":status", "200")])
    sf.feed(frame(HEADERS, 0, 1, block[:1]))  # a header block not ended yet
    assert not sf.at_boundary
    sf.feed(frame(CONTINUATION, END_HEADERS, 1, block[1:]) + frame(DATA, 0, 1, b"abc")[:10])
    assert not sf.at_boundary
    sf.feed(b"bc")
    assert sf.at_boundary


def test_the_nodes_own_answer_is_whole_http2() -> None:
    c = client()
    sid = request(c, "/x")
    c.data_to_send()
    events = c.receive_data(error_connection(sid, 400, "h2c_unsupported", "no"))
    response = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
    assert dict(response.headers)[":status"] == "400"
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert b'"h2c_unsupported"' in body
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in events)


def test_repeated_blocks_are_decoded_once_yet_always_mean_what_the_client_meant() -> None:
    c, s = client(), server()
    paths = ["a", "a", "b", "a", "b", "b", "c", "a"] + [f"n{i}" for i in range(300)] + ["a", "a"]
    f = ClientFrames(strip_fn)
    s.receive_data(f.feed(c.data_to_send()))
    seen = []
    for p in paths:  # (the same bytes mean another path once the client's table has moved on)
        request(c, f"/fn/ok/{p}", ("x-token", "t"))
        for e in requests_seen(s, f.feed(c.data_to_send())):
            seen.append(dict(e.headers)[":path"])
            s.send_headers(e.stream_id, [(":status", "200")], end_stream=True)  # (the stream ends)
    assert seen == [f"/{p}" for p in paths]
    assert len(f.encoded) <= 256 and len(f.decoded) <= 256


@pytest.mark.parametrize("block, indexed", [
    (b"\x82\x86\x84", True),  # static indexes
    (b"\xbe\xbf", True),  # dynamic ones
    (b"\xff\x80\x01", True),  # an index in two more bytes
    (b"\x82\x44\x01/", False),  # a literal with incremental indexing (:path)
    (b"\x3f\xe1\x1f", False),  # a table size update
    (b"\x82\x04\x01/", False),  # a literal without indexing: (not cached either way)
])
def test_indexed_only(block: bytes, indexed: bool) -> None:
    from polyfn.gateway.h2frames import _indexed_only

    assert _indexed_only(block) is indexed
