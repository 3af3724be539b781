"""Pieces of the S3 API module that boto3 over plain HTTP does not exercise: aws-chunked bodies, ranges."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from polyfn.storage.api import _parse_range, aws_chunked, parse_query
from polyfn.storage.errors import S3Error


def encode_chunked(data: bytes, size: int, trailer: bytes = b"") -> bytes:
    out = b""
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out += f"{len(piece):x};chunk-signature={'0' * 64}\r\n".encode() + piece + b"\r\n"
    return out + b"0;chunk-signature=" + b"0" * 64 + b"\r\n" + trailer + b"\r\n"


async def split(raw: bytes, n: int) -> AsyncIterator[bytes]:
    for i in range(0, len(raw), n):
        yield raw[i:i + n]


@pytest.mark.parametrize("chunk, frame", [(1000, 7), (1000, 100000), (8192, 1), (3, 5)])
async def test_aws_chunked_decodes_any_framing(chunk: int, frame: int) -> None:
    data = bytes(range(256)) * 40
    raw = encode_chunked(data, chunk, b"x-amz-checksum-crc32:AAAAAA==\r\n")
    out = b"".join([c async for c in aws_chunked(split(raw, frame))])
    assert out == data


async def test_aws_chunked_truncated_is_an_error() -> None:
    raw = encode_chunked(b"a" * 100, 40)[:70]
    with pytest.raises(S3Error) as e:
        _ = [c async for c in aws_chunked(split(raw, 10))]
    assert e.value.code == "IncompleteBody"


@pytest.mark.parametrize("header, size, want", [
    ("bytes=0-9", 100, (0, 10, 206)), ("bytes=90-", 100, (90, 100, 206)), ("bytes=-10", 100, (90, 100, 206)),
    ("bytes=-500", 100, (0, 100, 206)), ("bytes=50-1000", 100, (50, 100, 206)), ("bytes=5-2", 100, (0, 100, 200)),
    ("bytes=0-1,5-6", 100, (0, 100, 200)), ("items=0-1", 100, (0, 100, 200)), ("bytes=x-y", 100, (0, 100, 200)),
])
def test_ranges(header: str, size: int, want: tuple[int, int, int]) -> None:
    assert _parse_range(header, size) == want


def test_unsatisfiable_range() -> None:
    with pytest.raises(S3Error) as e:
        _parse_range("bytes=100-", 100)
    assert (e.value.status, e.value.code) == (416, "InvalidRange")


def test_query_keeps_plus_and_blank_values() -> None:
    assert parse_query(b"uploads&prefix=a%2Bb+c&x=") == [("uploads", ""), ("prefix", "a+b+c"), ("x", "")]
