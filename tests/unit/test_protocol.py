"""The instance wire protocol: framing, strict decoding, limits."""

from __future__ import annotations

import msgspec
import pytest

from polyfn.protocol import (
    HEADER,
    FrameError,
    FrameReader,
    InitError,
    Invoke,
    LogLine,
    Ready,
    Result,
    encode,
    from_instance_decoder,
    to_instance_decoder,
)


def test_invoke_round_trip() -> None:
    inv = Invoke(7, "act", "http", 123.5, "POST", "/a", "x=1", [("h", "v")], b"\x00body", "text/plain", "t")
    frame = encode(inv)
    (size,) = HEADER.unpack(frame[:4])
    assert size == len(frame) - 4
    assert to_instance_decoder.decode(frame[4:]) == inv


@pytest.mark.parametrize("msg", [
    Result(1, 201, [("a", "b")], b"x", None, [LogLine(1.0, "stdout", "hi")], 0.5),
    Ready(42, 1.5, "info"),
    InitError({"errorType": "T", "errorMessage": "m", "stackTrace": []}, []),
])
def test_from_instance_union(msg: msgspec.Struct) -> None:
    assert from_instance_decoder.decode(encode(msg)[4:]) == msg


def test_log_lines_sent_as_plain_arrays_decode_to_structs() -> None:
    """Instances (Python, Node, the HTTP proxy) send log lines as [ts, stream, line] arrays."""
    sent = Result(1, 200, [], b"", None, [(1.0, "stdout", "hi")], 0.5)  # type: ignore[list-item]
    got = from_instance_decoder.decode(encode(sent)[4:])
    assert got.logs == [LogLine(1.0, "stdout", "hi")]
    with pytest.raises(msgspec.ValidationError):
        from_instance_decoder.decode(encode(Result(1, logs=[(1.0, "stdout")]))[4:])  # type: ignore[list-item]


def test_reader_splits_frames_across_chunks() -> None:
    frames = [encode(Ready(i, 0.0)) for i in range(5)]
    stream = b"".join(frames)
    reader = FrameReader()
    out: list[bytes] = []
    for i in range(0, len(stream), 3):
        out.extend(reader.feed(stream[i : i + 3]))
    assert [from_instance_decoder.decode(f).pid for f in out] == list(range(5))


def test_reader_rejects_oversized_frame() -> None:
    reader = FrameReader(max_frame=100)
    with pytest.raises(FrameError):
        reader.feed(HEADER.pack(101) + b"x")


@pytest.mark.parametrize("raw", [b"\xc1", msgspec.msgpack.encode(["nope", 1]), msgspec.msgpack.encode({"a": 1}),
                                 msgspec.msgpack.encode(["result", "not-an-int"])])
def test_garbage_is_a_decode_error(raw: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        from_instance_decoder.decode(raw)


def test_instance_cannot_send_an_invoke() -> None:
    with pytest.raises(msgspec.ValidationError):
        from_instance_decoder.decode(encode(Invoke(1, "a", "event", 0.0))[4:])
