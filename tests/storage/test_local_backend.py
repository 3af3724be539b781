"""The local backend: key escaping, listing order, atomic writes."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from polyfn.storage.errors import S3Error
from polyfn.storage.local import LocalBackend, read_range
from polyfn.storage.model import BucketInfo, ObjectInfo, PutChecks


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    b = LocalBackend(tmp_path / "store", max_object_size=1 << 20)
    b.open()
    b.create_bucket(BucketInfo("bkt", 0.0))
    return b


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def put(b: LocalBackend, key: str, data: bytes = b"x", checks: PutChecks | None = None) -> ObjectInfo:
    return await b.put_object("bkt", key, chunks(data), ObjectInfo(key, 0, "", 0.0), checks or PutChecks())


@pytest.mark.parametrize("key", ["..", "../x", "a/../../b", "./.", "a//b", "/lead", "trail/", "ü/ß", "%2e%2e",
                                 "a.o", "a.o/b", "_", "x" * 200])
async def test_any_key_stays_inside_its_bucket(backend: LocalBackend, key: str) -> None:
    await put(backend, key, key.encode())
    path = backend.object_path("bkt", key)
    assert path.resolve().is_relative_to((backend.buckets / "bkt").resolve())
    assert path.exists()
    info, fd = backend.open_object("bkt", key)
    data = b"".join([c async for c in read_range(fd, 0, info.size)])
    assert data == key.encode() and info.key == key


@pytest.mark.parametrize("key, code", [("", "InvalidArgument"), ("a\x00b", "InvalidArgument"),
                                       ("k" * 1025, "KeyTooLongError")])
def test_bad_keys(backend: LocalBackend, key: str, code: str) -> None:
    with pytest.raises(S3Error) as e:
        backend.object_path("bkt", key)
    assert e.value.code == code


async def test_listing_order_matches_s3_byte_order(backend: LocalBackend) -> None:
    rng = random.Random(7)
    alphabet = ["a", "b", "/", "-", ".", "ü", "0", "~", " "]
    keys = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(150)}
    keys = {k for k in keys if k}
    for k in keys:
        await put(backend, k)
    want = sorted(keys, key=lambda k: k.encode())
    assert list(backend.iter_keys("bkt", "", "")) == want
    for after in (want[10], want[50], "b"):
        assert list(backend.iter_keys("bkt", "", after)) == [k for k in want if k > after]
    for prefix in ("a", "a/", "b-", "ü"):
        assert list(backend.iter_keys("bkt", prefix, "")) == [k for k in want if k.startswith(prefix)]
    # paging with a delimiter gives every key or common prefix exactly once
    seen: list[str] = []
    after = ""
    while True:
        objs, prefixes, truncated, last = backend.list_objects("bkt", "", "/", after, 7)
        seen += [o.key for o in objs] + prefixes
        if not truncated:
            break
        after = last
    expect = sorted({k if "/" not in k else k[: k.index("/") + 1] for k in keys})
    assert sorted(seen) == expect and len(seen) == len(set(seen))


async def test_failed_verification_leaves_nothing(backend: LocalBackend) -> None:
    await put(backend, "k", b"old")
    with pytest.raises(S3Error) as e:
        await put(backend, "k", b"new", PutChecks(sha256_hex="0" * 64))
    assert e.value.code == "XAmzContentSHA256Mismatch"
    with pytest.raises(S3Error) as e:
        await put(backend, "k", b"y" * ((1 << 20) + 1))
    assert e.value.code == "EntityTooLarge"
    with pytest.raises(S3Error) as e:
        await put(backend, "k", b"short", PutChecks(length=10))
    assert e.value.code == "IncompleteBody"
    assert backend.head_object("bkt", "k").size == 3
    assert list(backend.tmp.iterdir()) == []


async def test_stream_interrupted_mid_object(backend: LocalBackend) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"part"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await backend.put_object("bkt", "k", broken(), ObjectInfo("k", 0, "", 0.0), PutChecks())
    with pytest.raises(S3Error) as e:
        backend.head_object("bkt", "k")
    assert e.value.code == "NoSuchKey"
    assert list(backend.tmp.iterdir()) == []


async def test_delete_prunes_empty_prefix_dirs_and_bucket_rules(backend: LocalBackend) -> None:
    await put(backend, "a/b/c/d")
    assert (await backend.delete_object("bkt", "a/b/c/d")).existed is True
    assert (await backend.delete_object("bkt", "a/b/c/d")).existed is False
    assert [p.name for p in (backend.buckets / "bkt").iterdir()] == [".bucket"]
    await put(backend, "x")
    with pytest.raises(S3Error) as e:
        backend.delete_bucket("bkt")
    assert e.value.code == "BucketNotEmpty"
    await backend.delete_object("bkt", "x")
    backend.delete_bucket("bkt")
    with pytest.raises(S3Error) as e:
        backend.bucket("bkt")
    assert e.value.code == "NoSuchBucket"


def test_open_empties_tmp(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "s", 100)
    b.open()
    (b.tmp / "leftover").write_bytes(b"half an object")
    LocalBackend(tmp_path / "s", 100).open()
    assert list(b.tmp.iterdir()) == []
