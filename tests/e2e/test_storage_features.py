"""The S3 features beyond plain objects, each with boto3 (or a browser's raw request) against `polyfn serve`:
versioning, tagging, ACLs, UploadPartCopy and ?partNumber, repeated CompleteMultipartUpload, presigned POST
with bucket CORS, conditional requests, checksums, SSE-S3 (encrypted on disk) and SSE-C, Object Lock."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from .storage_helpers import code, s3_client, storage_info

pytestmark = pytest.mark.timeout(180)
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3(server: Any) -> Any:
    return s3_client(server)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"f-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def test_versioning_versions_delete_markers_and_restart(server: Any, s3: Any, bucket: str) -> None:
    # ListObjectVersions answers on an unversioned bucket too: every object is its null version
    s3.put_object(Bucket=bucket, Key="pre", Body=b"0")
    assert [(v["Key"], v["VersionId"]) for v in s3.list_object_versions(Bucket=bucket)["Versions"]] == [("pre", "null")]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    assert v1 != v2 and "null" not in (v1, v2)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    marker = s3.delete_object(Bucket=bucket, Key="k")
    assert marker["DeleteMarker"] is True
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert code(e) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k", VersionId=marker["VersionId"])
    assert code(e)[0] == 405
    listing = s3.list_object_versions(Bucket=bucket, Prefix="k")
    assert [v["VersionId"] for v in listing["Versions"]] == [v2, v1]
    assert [(m["VersionId"], m["IsLatest"]) for m in listing["DeleteMarkers"]] == [(marker["VersionId"], True)]
    # removing the marker brings v2 back; removing v2 by id makes v1 current
    s3.delete_object(Bucket=bucket, Key="k", VersionId=marker["VersionId"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v2)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"
    # suspended: new writes are the null version, replaced in place
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"n1")
    s3.put_object(Bucket=bucket, Key="k", Body=b"n2")
    ids = [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket, Prefix="k")["Versions"]]
    assert ids == ["null", v1]
    usage = {u["bucket"]: u for u in server.api.get("/v1/storage/usage").json()["buckets"]}[bucket]
    assert (usage["objects"], usage["bytes"]) == (3, len(b"0") + len(b"n2") + len(b"one"))  # every version
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert code(e) == (409, "BucketNotEmpty")


def test_versions_survive_a_restart(tmp_path: Path) -> None:
    from .conftest import start_server

    srv = start_server(tmp_path / "data")
    try:
        c = s3_client(srv)
        c.create_bucket(Bucket="keep")
        c.put_bucket_versioning(Bucket="keep", VersioningConfiguration={"Status": "Enabled"})
        v1 = c.put_object(Bucket="keep", Key="k", Body=b"one")["VersionId"]
        c.put_object(Bucket="keep", Key="k", Body=b"two")
    finally:
        srv.stop()
    srv = start_server(tmp_path / "data")
    try:
        c = s3_client(srv)
        assert c.get_object(Bucket="keep", Key="k", VersionId=v1)["Body"].read() == b"one"
        assert len(c.list_object_versions(Bucket="keep")["Versions"]) == 2
    finally:
        srv.stop()


def test_tagging_on_put_copy_and_subresource(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1&b=two")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "a", "Value": "1"},
                                                                      {"Key": "b", "Value": "two"}]
    assert s3.head_object(Bucket=bucket, Key="t")["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"
    s3.copy_object(Bucket=bucket, Key="c1", CopySource={"Bucket": bucket, "Key": "t"})
    s3.copy_object(Bucket=bucket, Key="c2", CopySource={"Bucket": bucket, "Key": "t"}, Tagging="z=9",
                   TaggingDirective="REPLACE")
    assert len(s3.get_object_tagging(Bucket=bucket, Key="c1")["TagSet"]) == 2
    assert s3.get_object_tagging(Bucket=bucket, Key="c2")["TagSet"] == [{"Key": "z", "Value": "9"}]
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    assert s3.get_object(Bucket=bucket, Key="t")["Body"].read() == b"x"
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"}
                                                                         for i in range(11)]})
    assert code(e) == (400, "InvalidTag")
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "web"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "team", "Value": "web"}]
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code(e) == (404, "NoSuchTagSet")


def test_public_read_object_is_readable_without_a_signature(server: Any, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="pub.jpg", Body=b"image", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="priv.jpg", Body=b"secret")
    anon = boto3.client("s3", endpoint_url=storage_info(server)["endpoint"], region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))
    assert anon.get_object(Bucket=bucket, Key="pub.jpg")["Body"].read() == b"image"
    with pytest.raises(ClientError) as e:
        anon.get_object(Bucket=bucket, Key="priv.jpg")
    assert code(e)[0] == 403
    grants = s3.get_object_acl(Bucket=bucket, Key="pub.jpg")["Grants"]
    assert {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"} in [g["Grantee"] for g in grants]
    s3.put_object_acl(Bucket=bucket, Key="pub.jpg", ACL="private")
    with pytest.raises(ClientError):
        anon.get_object(Bucket=bucket, Key="pub.jpg")
    assert s3.get_object(Bucket=bucket, Key="pub.jpg")["Body"].read() == b"image"
    with pytest.raises(ClientError) as e:
        anon.list_objects_v2(Bucket="no-such-bucket-here")
    assert code(e) == (404, "NoSuchBucket")


def test_upload_part_copy_part_number_and_repeated_complete(s3: Any, bucket: str) -> None:
    big = os.urandom(6 * MIB) + os.urandom(3 * MIB)
    s3.put_object(Bucket=bucket, Key="src", Body=big)
    # boto3's managed copy of a 9 MiB object with an 8 MiB threshold: CreateMultipartUpload + UploadPartCopy
    from boto3.s3.transfer import TransferConfig

    s3.copy({"Bucket": bucket, "Key": "src"}, bucket, "dst", Config=TransferConfig(multipart_threshold=5 * MIB,
                                                                                    multipart_chunksize=5 * MIB))
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == big and got["ETag"].endswith('-2"')
    first = s3.get_object(Bucket=bucket, Key="dst", PartNumber=1)
    assert first["ContentLength"] == 5 * MIB and first["PartsCount"] == 2
    assert first["Body"].read() == big[:5 * MIB]
    up = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="m", UploadId=up, PartNumber=1, Body=b"tail")
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    done = s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=up, MultipartUpload=parts)
    again = s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=up, MultipartUpload=parts)
    assert again["ETag"] == done["ETag"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="m", UploadId=up, PartNumber=2, Body=b"late")
    assert code(e) == (404, "NoSuchUpload")


def test_presigned_post_with_policy_and_bucket_cors(server: Any, s3: Any, bucket: str) -> None:
    endpoint = storage_info(server)["endpoint"]
    origin = "https://app.example.com"
    pre = httpx.options(f"{endpoint}/{bucket}", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 403  # no CORS rules yet
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": [origin], "AllowedMethods": ["POST", "GET"], "AllowedHeaders": ["*"], "MaxAgeSeconds": 60}]})
    pre = httpx.options(f"{endpoint}/{bucket}", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                         "Access-Control-Request-Headers": "content-type"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == origin
    other = httpx.options(f"{endpoint}/{bucket}", headers={"Origin": "https://evil.example",
                                                           "Access-Control-Request-Method": "POST"})
    assert other.status_code == 403
    post = s3.generate_presigned_post(bucket, "uploads/${filename}",
                                      Conditions=[["content-length-range", 1, 1000], ["starts-with", "$key", "uploads/"]],
                                      ExpiresIn=600)
    r = httpx.post(post["url"], data=post["fields"], files={"file": ("photo.jpg", b"jpeg bytes", "image/jpeg")},
                   headers={"Origin": origin})
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == origin
    got = s3.get_object(Bucket=bucket, Key="uploads/photo.jpg")
    assert got["Body"].read() == b"jpeg bytes"
    too_big = httpx.post(post["url"], data=post["fields"], files={"file": ("big.bin", b"x" * 2000)})
    assert too_big.status_code == 400 and b"EntityTooLarge" in too_big.content
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="uploads/big.bin")
    forged = {**post["fields"], "key": "elsewhere/x"}
    assert httpx.post(post["url"], data=forged, files={"file": ("x", b"x")}).status_code == 403
    created = httpx.post(post["url"], data={**post["fields"], "success_action_status": "201"},
                         files={"file": ("s.txt", b"s")})
    assert created.status_code in (201, 403)  # 403: the policy does not allow the extra field


def test_conditional_requests(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"v1")["ETag"]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert code(e)[0] == 412
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert code(e)[0] == 304
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=future)
    assert code(e)[0] == 304
    past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert code(e)[0] == 412
    # create-only writes
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="c", Body=b"v2", IfNoneMatch="*")
    assert code(e) == (412, "PreconditionFailed")
    s3.put_object(Bucket=bucket, Key="new", Body=b"n", IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"v1"
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="d", CopySource={"Bucket": bucket, "Key": "c"}, CopySourceIfMatch='"1"')
    assert code(e)[0] == 412


@pytest.mark.parametrize("algo", ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"])
def test_checksums_verified_and_returned(s3: Any, bucket: str, algo: str) -> None:
    r = s3.put_object(Bucket=bucket, Key=algo, Body=b"payload", ChecksumAlgorithm=algo)
    value = r[f"Checksum{algo}"]
    head = s3.head_object(Bucket=bucket, Key=algo, ChecksumMode="ENABLED")
    assert head[f"Checksum{algo}"] == value
    if algo in ("SHA1", "SHA256"):
        digest = hashlib.new(algo.lower(), b"payload").digest()
        assert base64.b64decode(value) == digest
    wrong = base64.b64encode(b"\0" * len(base64.b64decode(value))).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key=algo + "x", Body=b"payload", **{f"Checksum{algo}": wrong})
    assert code(e) == (400, "BadDigest")


def test_sse_s3_encrypts_at_rest_and_sse_c_needs_its_key(server: Any, s3: Any, bucket: str) -> None:
    secret = b"PLAINTEXT-MARKER-" * 1000
    r = s3.put_object(Bucket=bucket, Key="s3", Body=secret, ServerSideEncryption="AES256")
    assert r["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket=bucket, Key="s3", Range="bytes=5-40000")
    assert got["Body"].read() == secret[5:40001] and got["ServerSideEncryption"] == "AES256"
    on_disk = b"".join(p.read_bytes() for p in (server.data_dir / "storage" / "buckets" / bucket).rglob("*.o"))
    assert b"PLAINTEXT-MARKER" not in on_disk
    key = os.urandom(32)
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    s3.put_object(Bucket=bucket, Key="c", Body=b"customer data", **sse_c)
    assert s3.get_object(Bucket=bucket, Key="c", **sse_c)["Body"].read() == b"customer data"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c")
    assert code(e)[0] == 400
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", SSECustomerAlgorithm="AES256", SSECustomerKey=os.urandom(32))
    assert code(e)[0] == 400
    assert key not in b"".join(p.read_bytes() for p in (server.data_dir / "storage").rglob("*") if p.is_file())
    # SSE-KMS: key ids name keys of the node's own key service
    r = s3.put_object(Bucket=bucket, Key="kms", Body=b"kms data", ServerSideEncryption="aws:kms", SSEKMSKeyId="app-1")
    assert (r["ServerSideEncryption"], r["SSEKMSKeyId"]) == ("aws:kms", "app-1")
    got = s3.get_object(Bucket=bucket, Key="kms")
    assert got["Body"].read() == b"kms data" and got["SSEKMSKeyId"] == "app-1"


def test_object_lock_protects_versions(s3: Any) -> None:
    name = f"lock-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    v = s3.put_object(Bucket=name, Key="k", Body=b"kept")["VersionId"]
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    s3.put_object_retention(Bucket=name, Key="k", VersionId=v, Retention={"Mode": "GOVERNANCE",
                                                                          "RetainUntilDate": until})
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=name, Key="k", VersionId=v)
    assert code(e)[0] == 403
    s3.put_object_legal_hold(Bucket=name, Key="k", VersionId=v, LegalHold={"Status": "ON"})
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=name, Key="k", VersionId=v, BypassGovernanceRetention=True)
    s3.put_object_legal_hold(Bucket=name, Key="k", VersionId=v, LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=name, Key="k", VersionId=v, BypassGovernanceRetention=True)
    plain = f"plain-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=plain)
    s3.put_object(Bucket=plain, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.put_object_retention(Bucket=plain, Key="k", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    assert code(e) == (400, "InvalidRequest")


def test_delete_objects_over_1000_keys_is_malformed(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as e:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert code(e) == (400, "MalformedXML")
