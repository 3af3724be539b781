"""No request alters an object it was not meant to write: every sub-resource on an object is either its own
operation or a refusal, never a fall-through to PutObject/DeleteObject (boto3 against `polyfn serve`).

Each case calls the sub-resource operation on an existing object, then checks that the object still has
its bytes, its ETag and its metadata. A call may succeed (the operation is implemented) or be refused
with an S3 error; it must never answer 200 after replacing or deleting the object.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from .storage_helpers import new_key, s3_client, storage_info

pytestmark = pytest.mark.timeout(120)

BODY = b"the precious bytes" * 100
FUTURE = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def s3(server: Any) -> Any:
    return s3_client(server)


@pytest.fixture
def obj(s3: Any) -> tuple[str, str, str]:
    bucket = f"sub-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=BODY, Metadata={"owner": "ann"})["ETag"]
    return bucket, "k", etag


def assert_intact(s3: Any, bucket: str, key: str, etag: str) -> None:
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == BODY
    assert got["ETag"] == etag
    assert got["Metadata"] == {"owner": "ann"}


SUBRESOURCE_CALLS: dict[str, Callable[[Any, str, str], Any]] = {
    "put_object_acl": lambda s3, b, k: s3.put_object_acl(Bucket=b, Key=k, ACL="private"),
    "put_object_tagging": lambda s3, b, k: s3.put_object_tagging(
        Bucket=b, Key=k, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}),
    "delete_object_tagging": lambda s3, b, k: s3.delete_object_tagging(Bucket=b, Key=k),
    "put_object_retention": lambda s3, b, k: s3.put_object_retention(
        Bucket=b, Key=k, Retention={"Mode": "GOVERNANCE", "RetainUntilDate": FUTURE}),
    "put_object_legal_hold": lambda s3, b, k: s3.put_object_legal_hold(Bucket=b, Key=k, LegalHold={"Status": "ON"}),
    "get_object_tagging": lambda s3, b, k: s3.get_object_tagging(Bucket=b, Key=k),
    "get_object_acl": lambda s3, b, k: s3.get_object_acl(Bucket=b, Key=k),
    "get_object_retention": lambda s3, b, k: s3.get_object_retention(Bucket=b, Key=k),
    "get_object_legal_hold": lambda s3, b, k: s3.get_object_legal_hold(Bucket=b, Key=k),
    "restore_object": lambda s3, b, k: s3.restore_object(Bucket=b, Key=k, RestoreRequest={"Days": 1}),
}


@pytest.mark.parametrize("call", sorted(SUBRESOURCE_CALLS))
def test_subresource_call_leaves_the_object_alone(s3: Any, obj: tuple[str, str, str], call: str) -> None:
    bucket, key, etag = obj
    try:
        SUBRESOURCE_CALLS[call](s3, bucket, key)
    except ClientError as e:  # a refusal is fine; it must be S3's, never a server fault
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        assert status in (400, 403, 404, 405, 409, 501), (call, e.response)
    assert_intact(s3, bucket, key, etag)


def _signed(server: Any, method: str, url: str, body: bytes = b"") -> httpx.Response:
    key = new_key(server, "raw")
    req = AWSRequest(method=method, url=url, data=body, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    SigV4Auth(Credentials(key["access_key_id"], key["secret_access_key"]), "s3", "us-east-1").add_auth(req)
    return httpx.request(method, url, headers=dict(req.headers), content=body, timeout=30)


@pytest.mark.parametrize("method, query", [
    ("PUT", "frobnicate"), ("DELETE", "frobnicate"), ("PUT", "frobnicate=1"), ("POST", "frobnicate"),
    ("PUT", "torrent"), ("DELETE", "torrent"), ("PUT", "attributes"), ("DELETE", "select"),
    ("PUT", "website"), ("DELETE", "cors&x=1"),
])
def test_unknown_or_unimplemented_subresource_is_refused(server: Any, s3: Any, obj: tuple[str, str, str],
                                                         method: str, query: str) -> None:
    """A sub-resource the store does not implement (or does not know) is refused before the object is
    touched: 501 NotImplemented for S3's own sub-resources, 405 for one S3 has but not with this method, 400
    for names S3 does not have."""
    bucket, key, etag = obj
    url = f"{storage_info(server)['endpoint']}/{bucket}/{key}?{query}"
    r = _signed(server, method, url, b"<Tagging/>" if method != "DELETE" else b"")
    assert r.status_code in (400, 405, 501), r.text
    assert b"<Code>" in r.content
    assert_intact(s3, bucket, key, etag)
