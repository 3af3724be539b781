"""polyfn.streaming.ResponseStream: order, back-pressure on the instance's connection, how a stream ends, and the
invoker's hooks bound after the frames came; protocol chunk frames; the event-stream encoder against botocore."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from polyfn import protocol, streaming
from polyfn.streaming import ResponseStream


class Result:
    def __init__(self, error: dict[str, Any] | None = None):
        self.error = error


def _stream(pauses: list[bool]) -> ResponseStream:
    return ResponseStream(1, 200, [], pauses.append, asyncio.get_running_loop())


async def test_chunks_come_out_in_order_then_none() -> None:
    s = _stream([])
    s.feed(b"a")
    s.feed(memoryview(b"bc"))
    s.feed(b"")  # (nothing: not a chunk)
    s.end(Result())
    assert [bytes(await s.next()), bytes(await s.next()), await s.next()] == [b"a", b"bc", None]
    assert (s.bytes, s.chunks, s.ended, s.error) == (3, 2, streaming.COMPLETE, None)


async def test_a_reader_waits_for_the_next_chunk() -> None:
    s = _stream([])
    reader = asyncio.ensure_future(s.next())
    await asyncio.sleep(0)
    assert not reader.done()
    s.feed(b"x")
    assert await reader == b"x"


async def test_the_instance_is_paused_above_high_and_resumed_below_low() -> None:
    pauses: list[bool] = []
    s = _stream(pauses)
    piece = b"x" * (streaming.HIGH // 4)
    for _ in range(5):
        s.feed(piece)
    assert pauses == [True]
    while s.held >= streaming.LOW:
        await s.next()
    assert pauses == [True, False]


@pytest.mark.parametrize("how", [streaming.DISCONNECTED, streaming.IDLE])
async def test_cancel_drops_what_is_held_and_tells_the_invoker_once(how: str) -> None:
    s = _stream([])
    told: list[str] = []
    ended: list[str] = []
    s.bind(lambda st: ended.append(st.ended), lambda st, h: told.append(h))
    s.feed(b"held")
    s.cancel(how, {"code": "x"})
    s.cancel(how)
    assert told == [how] and await s.next() is None and s.held == 0
    s.feed(b"late")  # the function wrote on before its Result: counted, not held
    assert s.bytes == 8 and await s.next() is None
    s.end(Result())  # its Result: the invoker records how it ended (the cancel, not the Result)
    assert ended == [how]


async def test_an_error_result_ends_the_stream_with_the_error() -> None:
    s = _stream([])
    s.end(Result({"errorType": "ValueError"}))
    assert s.ended == streaming.ERROR and s.error == {"errorType": "ValueError"}


async def test_hooks_bound_after_the_result_came_run_at_once() -> None:
    s = _stream([])
    s.feed(b"x")
    s.end(Result())  # (head, chunks and result all in the read that carried the head)
    ended: list[ResponseStream] = []
    s.bind(ended.append, lambda st, h: None)
    assert ended == [s]


@pytest.mark.parametrize("size", [0, 5, 255, 256, 65535, 65536, 1 << 20])
def test_chunk_frames_decode_as_chunks(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = b"".join(bytes(p) for p in protocol.encode_chunk(42, data))
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    msg = protocol.from_instance_decoder.decode(frame[4:])
    assert type(msg) is protocol.Chunk and msg.id == 42 and bytes(msg.data) == data


def test_event_stream_messages_parse_with_botocore() -> None:
    from botocore.eventstream import EventStreamBuffer

    from polyfn.api.compat import eventstream

    buf = EventStreamBuffer()
    buf.add_data(eventstream.event("PayloadChunk", b"hello") + eventstream.event(
        "InvokeComplete", b'{"ErrorCode": "Unhandled"}', "application/json"))
    first, second = list(buf)
    assert first.headers[":event-type"] == "PayloadChunk" and first.payload == b"hello"
    assert second.headers[":content-type"] == "application/json" and second.payload == b'{"ErrorCode": "Unhandled"}'


@pytest.mark.parametrize("step", [1, 3, 1000, 65536, 70009, 1 << 20])
def test_the_frame_reader_gathers_large_frames_split_anywhere(step: int) -> None:
    big = bytes(range(256)) * 300  # over FrameReader.LARGE
    stream = b"".join([protocol.encode(protocol.Ready(1, 0.0)), *[bytes(p) for p in protocol.encode_chunk(2, big)],
                       protocol.encode(protocol.Ready(3, 0.0)), *[bytes(p) for p in protocol.encode_chunk(4, b"small")]])
    reader = protocol.FrameReader()
    out = []
    for i in range(0, len(stream), step):
        out += [protocol.from_instance_decoder.decode(f) for f in reader.feed(stream[i:i + step])]
    assert [type(m).__name__ for m in out] == ["Ready", "Chunk", "Ready", "Chunk"]
    assert bytes(out[1].data) == big and bytes(out[3].data) == b"small"


def test_readers_sharing_the_scratch_buffer_keep_their_own_partial_frames() -> None:
    a, b = protocol.FrameReader(), protocol.FrameReader()
    fa = protocol.encode(protocol.Ready(1, 0.0, "a" * 100))
    fb = protocol.encode(protocol.Ready(2, 0.0, "b" * 100))
    got: list[str] = []
    for i in range(0, len(fa), 7):  # interleaved reads of two connections
        for reader, frame in ((a, fa), (b, fb)):
            got += [protocol.from_instance_decoder.decode(f).info for f in reader.feed(frame[i:i + 7])]
    assert got == ["a" * 100, "b" * 100]
