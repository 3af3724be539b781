"""Aliyun's `oss2` SDK against the object store (OSS signature V1, path-style for an IP endpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from .. import needs
from .conftest import Server
from .storage_helpers import new_key, storage_info

oss2 = needs.module("oss2", reason="oss2 is not installed (pip install oss2)")
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def bucket(server: Server) -> Any:
    key = new_key(server, "oss")
    b = oss2.Bucket(oss2.Auth(key["access_key_id"], key["secret_access_key"]), storage_info(server)["endpoint"],
                    "oss-images")
    b.create_bucket()
    return b


def test_put_get_meta_list(bucket: Any) -> None:
    r = bucket.put_object("uploads/a b.jpg", b"hello", headers={"Content-Type": "image/jpeg", "x-oss-meta-who": "me"})
    assert r.status == 200 and r.etag == "5d41402abc4b2a76b9719d911017c592"
    got = bucket.get_object("uploads/a b.jpg")
    assert got.read() == b"hello" and got.content_type == "image/jpeg" and got.headers["x-oss-meta-who"] == "me"
    assert bucket.head_object("uploads/a b.jpg").content_length == 5
    for i in range(5):
        bucket.put_object(f"x/{i}", b"1")
    assert [o.key for o in oss2.ObjectIterator(bucket, max_keys=2)] == ["uploads/a b.jpg", *[f"x/{i}" for i in range(5)]]
    assert [o.key for o in oss2.ObjectIteratorV2(bucket, prefix="x/")] == [f"x/{i}" for i in range(5)]
    listed = list(oss2.ObjectIterator(bucket, delimiter="/"))
    assert sorted(o.key for o in listed) == ["uploads/", "x/"]
    bucket.copy_object("oss-images", "uploads/a b.jpg", "copy.jpg")
    assert bucket.get_object("copy.jpg").read() == b"hello"
    bucket.batch_delete_objects(["copy.jpg", "x/0"])
    assert not bucket.object_exists("copy.jpg") and bucket.object_exists("x/1")


def test_signed_urls_errors_and_resumable_upload(server: Server, bucket: Any, tmp_path: Path) -> None:
    bucket.put_object("k", b"v")
    assert httpx.get(bucket.sign_url("GET", "k", 60)).content == b"v"
    assert httpx.put(bucket.sign_url("PUT", "put.txt", 60), content=b"x").status_code == 200
    assert bucket.get_object("put.txt").read() == b"x"
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object("nope")
    key = new_key(server, "oss-bad")
    bad = oss2.Bucket(oss2.Auth(key["access_key_id"], "wrong"), storage_info(server)["endpoint"], "oss-images")
    with pytest.raises(oss2.exceptions.OssError) as e:
        bad.get_object("k")
    assert (e.value.status, e.value.code) == (403, "SignatureDoesNotMatch")
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * 40)
    oss2.resumable_upload(bucket, "multi.bin", str(src), multipart_threshold=1024, part_size=1024,
                          store=oss2.ResumableStore(root=str(tmp_path)))
    assert bucket.get_object("multi.bin").read() == src.read_bytes()
