"""Pieces of the S3 API module that boto3 over plain HTTP does not exercise: aws-chunked bodies, ranges,
virtual-host parsing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from polyfn.storage.errors import S3Error
from polyfn.storage.wire import Request, aws_chunked, parse_query, virtual_bucket
from polyfn.storage.wire import parse_range as _parse_range


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


@pytest.mark.parametrize("host, domains, bucket", [
    ("images.localhost:9000", ("localhost",), "images"),
    ("Images.LocalHost", ("localhost",), "images"),
    ("my.dotted.bucket.localhost:80", ("localhost",), "my.dotted.bucket"),
    ("localhost:9000", ("localhost",), ""),  # the domain itself: path style
    ("127.0.0.1:9000", ("localhost",), ""),
    ("[::1]:9000", ("localhost",), ""),
    ("imageslocalhost:9000", ("localhost",), ""),  # not a sub-domain
    ("photos.s3.example.com", ("localhost", "s3.example.com"), "photos"),
    ("photos.s3.example.com.", ("s3.example.com",), "photos"),  # fully qualified
    ("photos.example.com", ("s3.example.com",), ""),
    ("", ("localhost",), ""),
])
def test_virtual_host_bucket(host: str, domains: tuple[str, ...], bucket: str) -> None:
    assert virtual_bucket(host, domains) == bucket


def test_virtual_host_request_is_routed_like_path_style() -> None:
    def scope(host: str, path: str) -> dict[str, object]:
        return {"method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
                "headers": [(b"host", host.encode())], "client": ("127.0.0.1", 1)}

    v = Request(scope("images.localhost:9000", "/a%20b/c.txt"), None, ("localhost",))
    p = Request(scope("localhost:9000", "/images/a%20b/c.txt"), None, ("localhost",))
    assert (v.bucket, v.key, v.raw_path) == (p.bucket, p.key, p.raw_path) == ("images", "a b/c.txt",
                                                                               "/images/a%20b/c.txt")
    assert v.sent_path == "/a%20b/c.txt"  # what a SigV4 signature covers
    bucket_only = Request(scope("images.localhost", "/"), None, ("localhost",))
    assert (bucket_only.bucket, bucket_only.key) == ("images", "")


def test_storage_domain_setting() -> None:
    from polyfn.config import Settings

    assert Settings().storage_domains == ("localhost",)
    assert Settings(storage_domain="localhost,S3.Example.com.").storage_domains == ("localhost", "s3.example.com")
    with pytest.raises(ValueError):
        Settings(storage_domain="bad domain")
