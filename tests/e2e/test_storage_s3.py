"""Acceptance: boto3's S3 client, unmodified, against `polyfn serve`'s object store (local backend)."""

from __future__ import annotations

import hashlib
import io
import os
import time
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from .storage_helpers import new_key, s3_client, storage_info

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def s3(server: Any) -> Any:
    return s3_client(server)


def code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    err = exc.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]


def test_buckets_create_list_head_delete(s3: Any) -> None:
    s3.create_bucket(Bucket="bk-one")
    assert "bk-one" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket="bk-one")["ResponseMetadata"]["HTTPStatusCode"] == 200
    # us-east-1 answers 200 to the owner re-creating its bucket (S3's legacy region behaviour)
    assert s3.create_bucket(Bucket="bk-one")["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.delete_bucket(Bucket="bk-one")
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket="bk-one")
    assert code(e)[0] == 404
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket="Bad_Name")
    assert code(e) == (400, "InvalidBucketName")
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket="no-such-bucket")
    assert code(e) == (404, "NoSuchBucket")


def test_objects_put_get_head_delete_with_metadata(s3: Any) -> None:
    s3.create_bucket(Bucket="objs")
    body = b"hello object store"
    put = s3.put_object(Bucket="objs", Key="dir/a b+c.txt", Body=body, ContentType="text/plain; charset=utf-8",
                        Metadata={"owner": "alice", "purpose": "test"}, CacheControl="max-age=60")
    md5 = hashlib.md5(body).hexdigest()
    assert put["ETag"] == f'"{md5}"'
    got = s3.get_object(Bucket="objs", Key="dir/a b+c.txt")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/plain; charset=utf-8"
    assert got["Metadata"] == {"owner": "alice", "purpose": "test"}
    assert got["CacheControl"] == "max-age=60"
    assert got["ETag"] == f'"{md5}"'
    head = s3.head_object(Bucket="objs", Key="dir/a b+c.txt")
    assert head["ContentLength"] == len(body) and head["Metadata"]["owner"] == "alice"
    s3.delete_object(Bucket="objs", Key="dir/a b+c.txt")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="objs", Key="dir/a b+c.txt")
    assert code(e) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="objs", Key="dir/a b+c.txt")
    assert code(e)[0] == 404
    s3.delete_object(Bucket="objs", Key="never-existed")  # S3 answers 204 for a missing key too


def test_content_md5_checked(s3: Any) -> None:
    s3.create_bucket(Bucket="md5s")
    import base64

    good = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    s3.put_object(Bucket="md5s", Key="k", Body=b"abc", ContentMD5=good)
    bad = base64.b64encode(hashlib.md5(b"abd").digest()).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="md5s", Key="k2", Body=b"abc", ContentMD5=bad)
    assert code(e) == (400, "BadDigest")
    with pytest.raises(ClientError):
        s3.head_object(Bucket="md5s", Key="k2")


def test_ranged_get(s3: Any) -> None:
    s3.create_bucket(Bucket="ranges")
    data = bytes(range(256)) * 4
    s3.put_object(Bucket="ranges", Key="r", Body=data)
    r = s3.get_object(Bucket="ranges", Key="r", Range="bytes=10-19")
    assert r["Body"].read() == data[10:20]
    assert r["ContentRange"] == f"bytes 10-19/{len(data)}"
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert s3.get_object(Bucket="ranges", Key="r", Range="bytes=-5")["Body"].read() == data[-5:]
    assert s3.get_object(Bucket="ranges", Key="r", Range="bytes=1000-")["Body"].read() == data[1000:]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="ranges", Key="r", Range="bytes=5000-6000")
    assert code(e) == (416, "InvalidRange")


def test_copy_object_keeps_or_replaces_metadata(s3: Any) -> None:
    s3.create_bucket(Bucket="copies")
    s3.put_object(Bucket="copies", Key="src", Body=b"payload", ContentType="image/png", Metadata={"a": "1"})
    r = s3.copy_object(Bucket="copies", Key="dst", CopySource={"Bucket": "copies", "Key": "src"})
    assert r["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"payload").hexdigest()}"'
    got = s3.get_object(Bucket="copies", Key="dst")
    assert got["Body"].read() == b"payload" and got["ContentType"] == "image/png" and got["Metadata"] == {"a": "1"}
    s3.copy_object(Bucket="copies", Key="dst2", CopySource="copies/src", MetadataDirective="REPLACE",
                   ContentType="text/plain", Metadata={"b": "2"})
    got = s3.head_object(Bucket="copies", Key="dst2")
    assert got["ContentType"] == "text/plain" and got["Metadata"] == {"b": "2"}
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket="copies", Key="dst3", CopySource={"Bucket": "copies", "Key": "missing"})
    assert code(e) == (404, "NoSuchKey")


def test_list_v2_prefix_delimiter_pagination(s3: Any) -> None:
    s3.create_bucket(Bucket="lists")
    keys = ["a", "a-b", "a/1", "a/2", "a/sub/x", "b/1", "b/2", "c", "ü/1", "sp ace", "z%25"]
    for k in keys:
        s3.put_object(Bucket="lists", Key=k, Body=k.encode())
    listed = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket="lists", PaginationConfig={"PageSize": 3}) for o in page.get("Contents", [])]
    assert listed == sorted(keys, key=lambda k: k.encode())
    r = s3.list_objects_v2(Bucket="lists", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["a", "a-b", "c", "sp ace", "z%25"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "b/", "ü/"]
    r = s3.list_objects_v2(Bucket="lists", Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/sub/"]
    r = s3.list_objects_v2(Bucket="lists", StartAfter="b/1")
    assert [o["Key"] for o in r["Contents"]][:2] == ["b/2", "c"]
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket="lists", Delimiter="/",
                                                               PaginationConfig={"PageSize": 2}))
    assert len(pages) > 2
    flat = [x for p in pages for x in [o["Key"] for o in p.get("Contents", [])] +
            [c["Prefix"] for c in p.get("CommonPrefixes", [])]]
    assert sorted(flat) == sorted(["a", "a-b", "c", "sp ace", "z%25", "a/", "b/", "ü/"])
    v1 = s3.list_objects(Bucket="lists", Prefix="b/")
    assert [o["Key"] for o in v1["Contents"]] == ["b/1", "b/2"]


def test_multipart_upload(s3: Any) -> None:
    s3.create_bucket(Bucket="multi")
    part = 5 * 1024 * 1024
    data = os.urandom(part * 2 + 1234)
    up = s3.create_multipart_upload(Bucket="multi", Key="big.bin", ContentType="application/x-test",
                                    Metadata={"kind": "multi"})
    uid = up["UploadId"]
    etags = []
    for i in range(3):
        chunk = data[i * part:(i + 1) * part]
        etags.append(s3.upload_part(Bucket="multi", Key="big.bin", UploadId=uid, PartNumber=i + 1, Body=chunk)["ETag"])
    assert [p["PartNumber"] for p in s3.list_parts(Bucket="multi", Key="big.bin", UploadId=uid)["Parts"]] == [1, 2, 3]
    assert uid in [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="multi").get("Uploads", [])]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket="multi", Key="big.bin", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": etags[1]}]})
    assert code(e) == (400, "InvalidPart")
    done = s3.complete_multipart_upload(Bucket="multi", Key="big.bin", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": i + 1, "ETag": t} for i, t in enumerate(etags)]})
    want = hashlib.md5(b"".join(bytes.fromhex(t.strip('"')) for t in etags)).hexdigest() + "-3"
    assert done["ETag"] == f'"{want}"'
    got = s3.get_object(Bucket="multi", Key="big.bin")
    assert got["Body"].read() == data and got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"kind": "multi"}
    # boto3's managed transfer (upload_fileobj / download_fileobj) uses multipart on its own
    s3.upload_fileobj(io.BytesIO(data), "multi", "managed.bin")
    buf = io.BytesIO()
    s3.download_fileobj("multi", "managed.bin", buf)
    assert buf.getvalue() == data
    # abort
    uid2 = s3.create_multipart_upload(Bucket="multi", Key="aborted")["UploadId"]
    s3.upload_part(Bucket="multi", Key="aborted", UploadId=uid2, PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket="multi", Key="aborted", UploadId=uid2)
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket="multi", Key="aborted", UploadId=uid2, PartNumber=2, Body=b"x")
    assert code(e) == (404, "NoSuchUpload")
    # parts below 5 MiB (except the last) are refused, like S3
    uid3 = s3.create_multipart_upload(Bucket="multi", Key="small")["UploadId"]
    t1 = s3.upload_part(Bucket="multi", Key="small", UploadId=uid3, PartNumber=1, Body=b"a")["ETag"]
    t2 = s3.upload_part(Bucket="multi", Key="small", UploadId=uid3, PartNumber=2, Body=b"b")["ETag"]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket="multi", Key="small", UploadId=uid3, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": t1}, {"PartNumber": 2, "ETag": t2}]})
    assert code(e) == (400, "EntityTooSmall")


def test_presigned_get_and_put(server: Any, s3: Any) -> None:
    s3.create_bucket(Bucket="presign")
    s3.put_object(Bucket="presign", Key="photo.jpg", Body=b"jpeg bytes")
    v4 = s3_client(server, signature_version="s3v4")
    for client in (s3, v4):  # boto3's default presigner (SigV2 query) and SigV4
        url = client.generate_presigned_url("get_object", Params={"Bucket": "presign", "Key": "photo.jpg"},
                                            ExpiresIn=300)
        r = httpx.get(url)
        assert r.status_code == 200 and r.content == b"jpeg bytes"
        put = client.generate_presigned_url("put_object", Params={"Bucket": "presign", "Key": "up.bin"},
                                            ExpiresIn=300)
        assert httpx.put(put, content=b"from a browser").status_code == 200
        assert s3.get_object(Bucket="presign", Key="up.bin")["Body"].read() == b"from a browser"
        # the URL is for that object only
        other = url.replace("photo.jpg", "up.bin")
        r = httpx.get(other)
        assert r.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in r.content


def test_presigned_url_expired(server: Any) -> None:
    v4 = s3_client(server, signature_version="s3v4")
    v4.create_bucket(Bucket="expiry")
    v4.put_object(Bucket="expiry", Key="k", Body=b"x")
    v2 = s3_client(server)
    urls = [c.generate_presigned_url("get_object", Params={"Bucket": "expiry", "Key": "k"}, ExpiresIn=1)
            for c in (v4, v2)]
    time.sleep(2.2)
    for url in urls:
        r = httpx.get(url)
        assert r.status_code == 403, r.text
        assert b"<Code>AccessDenied</Code>" in r.content and b"Request has expired" in r.content


def test_bad_signature_and_unknown_key(server: Any) -> None:
    info = storage_info(server)
    good = new_key(server)
    s3 = s3_client(server, good)
    s3.create_bucket(Bucket="auth")
    wrong = s3_client(server, {"access_key_id": good["access_key_id"], "secret_access_key": "not-the-secret"})
    with pytest.raises(ClientError) as e:
        wrong.list_objects_v2(Bucket="auth")
    assert code(e) == (403, "SignatureDoesNotMatch")
    unknown = s3_client(server, {"access_key_id": "PFSNOPE", "secret_access_key": "x"})
    with pytest.raises(ClientError) as e:
        unknown.put_object(Bucket="auth", Key="k", Body=b"x")
    assert code(e) == (403, "InvalidAccessKeyId")
    # a deleted key stops working
    assert server.api.delete(f"/v1/storage/keys/{good['access_key_id']}").status_code == 200
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket="auth")
    assert code(e) == (403, "InvalidAccessKeyId")
    # tampering with a signed body: the payload hash no longer matches
    r = httpx.put(f"{info['endpoint']}/auth/k", content=b"x")
    assert r.status_code == 403 and b"<Code>AccessDenied</Code>" in r.content


def test_unsigned_requests_only_on_public_read_buckets(server: Any, s3: Any) -> None:
    endpoint = storage_info(server)["endpoint"]
    s3.create_bucket(Bucket="private-b")
    s3.put_object(Bucket="private-b", Key="k", Body=b"secret")
    s3.create_bucket(Bucket="public-b", ACL="public-read")
    s3.put_object(Bucket="public-b", Key="k", Body=b"for everyone")
    assert httpx.get(f"{endpoint}/private-b/k").status_code == 403
    assert httpx.get(f"{endpoint}/public-b/k").content == b"for everyone"
    assert httpx.get(f"{endpoint}/public-b", params={"list-type": "2"}).status_code == 200
    assert httpx.put(f"{endpoint}/public-b/new", content=b"x").status_code == 403  # writes always need a key
    assert httpx.delete(f"{endpoint}/public-b/k").status_code == 403
    s3.put_bucket_acl(Bucket="public-b", ACL="private")
    assert httpx.get(f"{endpoint}/public-b/k").status_code == 403
    s3.put_bucket_acl(Bucket="private-b", ACL="public-read")
    assert httpx.get(f"{endpoint}/private-b/k").content == b"secret"
    grants = s3.get_bucket_acl(Bucket="private-b")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in grants)


def test_delete_non_empty_bucket_refused(s3: Any) -> None:
    s3.create_bucket(Bucket="full")
    s3.put_object(Bucket="full", Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket="full")
    assert code(e) == (409, "BucketNotEmpty")
    assert s3.get_object(Bucket="full", Key="k")["Body"].read() == b"x"
    s3.delete_objects(Bucket="full", Delete={"Objects": [{"Key": "k"}]})
    s3.delete_bucket(Bucket="full")


def test_keys_with_dot_dot_and_nul(server: Any, s3: Any) -> None:
    s3.create_bucket(Bucket="keys")
    for key in ("../../escape", "a/../b", "./x", "..", "a//b/", "%2e%2e/y"):
        s3.put_object(Bucket="keys", Key=key, Body=key.encode())
        assert s3.get_object(Bucket="keys", Key=key)["Body"].read() == key.encode()
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket="keys")["Contents"]}
    assert listed == {"../../escape", "a/../b", "./x", "..", "a//b/", "%2e%2e/y"}
    root = server.data_dir / "storage"
    escaped = [p for p in root.rglob("*") if p.is_file() and "escape" in p.name]
    assert escaped and all(str(p).startswith(str(root / "buckets" / "keys")) for p in escaped)
    assert not (server.data_dir / "escape").exists() and not (root / "escape").exists()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="keys", Key="nul\x00byte", Body=b"x")
    assert code(e)[0] == 400


def test_concurrent_writers_last_wins_never_torn(s3: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    s3.create_bucket(Bucket="race")
    bodies = [bytes([65 + i]) * (512 * 1024) for i in range(8)]

    def put(b: bytes) -> None:
        s3.put_object(Bucket="race", Key="same", Body=b)

    def get() -> bytes:
        return s3.get_object(Bucket="race", Key="same")["Body"].read()

    s3.put_object(Bucket="race", Key="same", Body=bodies[0])
    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(put, b) for b in bodies] + [pool.submit(get) for _ in range(8)]
        reads = [f.result() for f in futs[len(bodies):]]
    for r in [*reads, get()]:
        assert r in bodies, "a reader saw a mix of two writes"
    head = s3.head_object(Bucket="race", Key="same")
    assert head["ETag"].strip('"') == hashlib.md5(get()).hexdigest()


def test_checksum_crc32_verified(s3: Any) -> None:
    s3.create_bucket(Bucket="crc")
    s3.put_object(Bucket="crc", Key="k", Body=b"data", ChecksumAlgorithm="CRC32")
    assert s3.get_object(Bucket="crc", Key="k")["Body"].read() == b"data"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="crc", Key="k2", Body=b"data", ChecksumCRC32="AAAAAA==")
    assert code(e) == (400, "BadDigest")
    with pytest.raises(ClientError):
        s3.head_object(Bucket="crc", Key="k2")


def test_aws_chunked_streaming_upload(server: Any, s3: Any) -> None:
    """A STREAMING-UNSIGNED-PAYLOAD-TRAILER upload (what AWS SDKs send over HTTPS) is stored decoded, and its
    trailing checksum is verified."""
    import base64
    import gzip
    import zlib

    from polyfn.storage import sigv4

    info = storage_info(server)
    key = new_key(server)
    s3.create_bucket(Bucket="chunked")
    data = gzip.compress(os.urandom(50_000))
    body = b""
    for i in range(0, len(data), 16384):
        piece = data[i:i + 16384]
        body += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big"))
    host = info["endpoint"].split("//", 1)[1]

    def put(trailer: bytes) -> httpx.Response:
        full = body + b"0\r\nx-amz-checksum-crc32:" + trailer + b"\r\n\r\n"
        headers = sigv4.sign_headers("PUT", "/chunked/z.gz", [], {
            "host": host, "content-encoding": "gzip,aws-chunked", "x-amz-decoded-content-length": str(len(data)),
            "content-length": str(len(full)), "x-amz-trailer": "x-amz-checksum-crc32"},
            key["access_key_id"], key["secret_access_key"], "us-east-1", time.time(),
            payload="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        return httpx.put(f"{info['endpoint']}/chunked/z.gz", headers=headers, content=full)

    bad = put(b"AAAAAA==")
    assert bad.status_code == 400 and b"<Code>BadDigest</Code>" in bad.content
    r = put(crc)
    assert r.status_code == 200, r.text
    got = s3.get_object(Bucket="chunked", Key="z.gz")
    assert got["Body"].read() == data and got["ContentEncoding"] == "gzip"
    assert r.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
