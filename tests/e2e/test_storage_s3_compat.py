"""Answers S3 clients rely on, found by Ceph's s3-tests and fixed (docs/storage.md, "Conformance"), each with
boto3 (or a request signed by botocore) against `polyfn serve`: non-UTF-8 percent escapes are `InvalidURI`,
the public access block's four settings, GetObjectAttributes' parts, SSE-C keys on every request that reads
or completes an SSE-C object, POST policies' `starts-with ""`."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from .storage_helpers import code, new_key, s3_client, storage_info

pytestmark = pytest.mark.timeout(180)
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def key(server: Any) -> dict[str, str]:
    return new_key(server)


@pytest.fixture(scope="module")
def s3(server: Any, key: dict[str, str]) -> Any:
    return s3_client(server, key)


@pytest.fixture(scope="module")
def anon(server: Any) -> Any:
    return boto3.client("s3", endpoint_url=storage_info(server)["endpoint"], region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"c-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def test_non_utf8_escapes_are_invalid_uri_not_a_signature_error(server: Any, s3: Any, key: dict[str, str],
                                                                  bucket: str) -> None:
    """`?prefix=%ff` decodes to a byte that is not UTF-8: AWS answers 400 InvalidURI ("Couldn't parse the
    specified URI."), in a path as in a query, before it looks at the signature. It used to be decoded to
    U+FFFD, re-encoded for the canonical request, and answered 403 SignatureDoesNotMatch."""
    s3.put_object(Bucket=bucket, Key="é/x", Body=b"1")
    endpoint = storage_info(server)["endpoint"]
    creds = Credentials(key["access_key_id"], key["secret_access_key"])
    for path in (f"/{bucket}?prefix=%ff", f"/{bucket}?list-type=2&prefix=a%C3", f"/{bucket}/%AE%8A-",
                 f"/{bucket}?delimiter=%FF%FE"):
        req = AWSRequest(method="GET", url=endpoint + path)
        S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
        r = httpx.get(endpoint + path, headers=dict(req.headers.items()))
        assert r.status_code == 400, (path, r.text)
        assert "<Code>InvalidURI</Code>" in r.text and "parse the specified URI" in r.text, r.text
    # a prefix that is UTF-8 (boto3 encodes every str so) lists as before, the object untouched
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="é")["Contents"]] == ["é/x"]
    assert s3.get_object(Bucket=bucket, Key="é/x")["Body"].read() == b"1"


def test_public_access_block_settings_are_enforced(s3: Any, anon: Any, bucket: str) -> None:
    """Each of the four settings does what S3 says, not only BlockPublicAcls on ACL calls and BlockPublicPolicy."""
    pab = {"BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
           "RestrictPublicBuckets": False}
    # BlockPublicAcls: a PUT (or copy, or multipart start) with a public canned ACL is refused, nothing stored
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={**pab, "BlockPublicAcls": True})
    for canned in ("public-read", "public-read-write", "authenticated-read"):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="blocked", Body=b"x", ACL=canned)
        assert code(e) == (403, "AccessDenied")
        with pytest.raises(ClientError) as e:
            s3.create_multipart_upload(Bucket=bucket, Key="blocked", ACL=canned)
        assert code(e)[0] == 403
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="blocked")
    assert code(e)[0] == 404
    s3.put_object(Bucket=bucket, Key="private", Body=b"p", ACL="private")
    # IgnorePublicAcls: a public-read object (and bucket) stops being readable without a signature
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=pab)
    s3.put_object(Bucket=bucket, Key="open", Body=b"o", ACL="public-read")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert anon.get_object(Bucket=bucket, Key="open")["Body"].read() == b"o"
    assert [o["Key"] for o in anon.list_objects(Bucket=bucket)["Contents"]] == ["open", "private"]
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={**pab, "IgnorePublicAcls": True})
    for call in (lambda: anon.get_object(Bucket=bucket, Key="open"), lambda: anon.list_objects(Bucket=bucket)):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == (403, "AccessDenied")
    assert s3.get_object(Bucket=bucket, Key="open")["Body"].read() == b"o"  # the owner reads as before
    assert s3.get_object_acl(Bucket=bucket, Key="open")["Grants"]  # the ACL is kept, only not honoured
    # RestrictPublicBuckets: a policy that allows everyone no longer admits unsigned requests
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_bucket_policy(Bucket=bucket, Policy='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
                         f'"Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::{bucket}/*"}}]}}')
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=pab)
    assert anon.get_object(Bucket=bucket, Key="private")["Body"].read() == b"p"
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={**pab, "RestrictPublicBuckets": True})
    with pytest.raises(ClientError) as e:
        anon.get_object(Bucket=bucket, Key="private")
    assert code(e) == (403, "AccessDenied")
    assert s3.get_object(Bucket=bucket, Key="private")["Body"].read() == b"p"


def _multipart(s3: Any, bucket: str, key: str, sizes: list[int], **extra: Any) -> tuple[str, list[dict[str, Any]]]:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    parts = []
    for n, size in enumerate(sizes, 1):
        args = {k: v for k, v in extra.items() if k.startswith("SSECustomer")}
        if extra.get("ChecksumAlgorithm"):
            args["ChecksumAlgorithm"] = extra["ChecksumAlgorithm"]
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=bytes([n]) * size, **args)
        parts.append({"PartNumber": n, "ETag": r["ETag"], **{k: v for k, v in r.items() if k.startswith("Checksum")}})
    return up, parts


def test_get_object_attributes_lists_the_parts_of_a_multipart_object(s3: Any, bucket: str) -> None:
    """ObjectParts: the count under the name boto3 reads (`PartsCount`), each part's size and checksum, paged."""
    sizes = [5 * MIB, 5 * MIB, 1000]
    up, parts = _multipart(s3, bucket, "mp", sizes, ChecksumAlgorithm="SHA256")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts})
    attrs = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
    r = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=attrs)
    assert r["ObjectSize"] == sum(sizes) and r["StorageClass"] == "STANDARD"
    op = r["ObjectParts"]
    assert op["TotalPartsCount"] == 3 and op["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"], p["ChecksumSHA256"]) for p in op["Parts"]] == \
        [(p["PartNumber"], s, p["ChecksumSHA256"]) for p, s in zip(parts, sizes, strict=True)]
    page = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=attrs, MaxParts=1,
                                    PartNumberMarker=1)["ObjectParts"]
    assert (page["MaxParts"], page["PartNumberMarker"], page["IsTruncated"], page["NextPartNumberMarker"]) == \
        (1, 1, True, 2)
    assert [p["PartNumber"] for p in page["Parts"]] == [2]
    # a single-part PUT has no ObjectParts at all
    s3.put_object(Bucket=bucket, Key="plain", Body=b"abc")
    assert "ObjectParts" not in s3.get_object_attributes(Bucket=bucket, Key="plain", ObjectAttributes=attrs)


def _sse_c(raw: bytes) -> dict[str, str]:
    """SSE-C arguments as given to every call (boto3 encodes a raw key itself only for some operations)."""
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": base64.b64encode(raw).decode(),
            "SSECustomerKeyMD5": base64.b64encode(hashlib.md5(raw).digest()).decode()}


SSE_C, OTHER_KEY = _sse_c(b"k" * 32), _sse_c(b"o" * 32)


def test_sse_c_objects_need_their_key_for_attributes_parts_and_completion(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="secret", Body=b"A" * 1000, **SSE_C)
    with pytest.raises(ClientError) as e:  # (GetObjectAttributes used to answer an SSE-C object without its key)
        s3.get_object_attributes(Bucket=bucket, Key="secret", ObjectAttributes=["ETag", "ObjectSize"])
    assert code(e)[0] == 400
    r = s3.get_object_attributes(Bucket=bucket, Key="secret", ObjectAttributes=["ETag", "ObjectSize"], **SSE_C)
    assert r["ObjectSize"] == 1000
    # CompleteMultipartUpload of an SSE-C upload: without the key, or with another, 400 and the upload is kept
    sizes = [5 * MIB, 100]
    up, parts = _multipart(s3, bucket, "mp", sizes, **SSE_C)
    for wrong in ({}, OTHER_KEY):
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts},
                                         **wrong)
        assert code(e)[0] == 400
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="mp", UploadId=up)["Parts"]] == [1, 2]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts}, **SSE_C)
    body = s3.get_object(Bucket=bucket, Key="mp", **SSE_C)["Body"].read()
    assert hashlib.md5(body).digest() == hashlib.md5(b"\x01" * sizes[0] + b"\x02" * sizes[1]).digest()
    # a part the object does not have is InvalidPart, whether or not the request carries the key
    for args in ({}, SSE_C):
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key="mp", PartNumber=5, **args)
        assert code(e) == (400, "InvalidPart")


def test_post_policy_starts_with_empty_allows_an_absent_field(s3: Any, bucket: str) -> None:
    """`["starts-with", "$field", ""]` allows any value, none included; with a bucket's default encryption the
    object is encrypted all the same."""
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    post = s3.generate_presigned_post(bucket, "foo.txt", Fields={"Content-Type": "text/plain"}, Conditions=[
        ["starts-with", "$x-amz-server-side-encryption", ""], ["starts-with", "$Content-Type", "text/"]])
    r = httpx.post(post["url"], data=post["fields"], files={"file": ("foo.txt", b"bar")})
    assert r.status_code == 204, r.text
    got = s3.get_object(Bucket=bucket, Key="foo.txt")
    assert got["Body"].read() == b"bar" and got["ServerSideEncryption"] == "AES256"
    # a non-empty starts-with still needs the field
    post = s3.generate_presigned_post(bucket, "bar.txt", Conditions=[["starts-with", "$x-amz-meta-tag", "a"]])
    assert httpx.post(post["url"], data=post["fields"], files={"file": ("bar.txt", b"x")}).status_code == 403
