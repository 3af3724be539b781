"""The pure decisions behind the S3 API: conditional requests, CORS rules, bucket policies, checksums, ACLs."""

from __future__ import annotations

import base64
import json
import zlib

import pytest

from polyfn.storage import acl, checksums, conditions, cors, policy
from polyfn.storage.errors import S3Error
from polyfn.storage.model import ObjectInfo

MTIME = 1_700_000_000.0
BEFORE, AFTER = "Mon, 13 Nov 2023 00:00:00 GMT", "Wed, 15 Nov 2023 00:00:00 GMT"


@pytest.mark.parametrize("headers, want", [
    ({}, None),
    ({"if-match": '"e1"'}, None),
    ({"if-match": '"other"'}, 412),
    ({"if-none-match": '"e1"'}, 304),
    ({"if-none-match": "*"}, 304),
    ({"if-modified-since": AFTER}, 304),
    ({"if-modified-since": BEFORE}, None),
    ({"if-unmodified-since": BEFORE}, 412),
    ({"if-match": '"e1"', "if-unmodified-since": BEFORE}, None),  # If-Match held: the date is not looked at
    ({"if-none-match": '"x"', "if-modified-since": AFTER}, None),
])
def test_read_conditions(headers: dict[str, str], want: int | None) -> None:
    try:
        got = conditions.check_read(headers, "e1", MTIME)
    except S3Error as e:
        got = e.status
    assert got == want


def test_write_conditions() -> None:
    cur = ObjectInfo("k", 1, "e1", MTIME)
    conditions.check_write({"if-none-match": "*"}, None, "b", "k")
    with pytest.raises(S3Error) as e:
        conditions.check_write({"if-none-match": "*"}, cur, "b", "k")
    assert e.value.status == 412
    with pytest.raises(S3Error) as e:
        conditions.check_write({"if-match": '"e1"'}, None, "b", "k")
    assert e.value.code == "NoSuchKey"
    conditions.check_write({"if-match": '"e1"'}, cur, "b", "k")


def test_cors_rules_match_origin_method_headers() -> None:
    rules = [{"origins": ["*.example.com"], "methods": ["GET"], "headers": ["x-*"], "expose": [], "max_age": 5},
             {"origins": ["*"], "methods": ["PUT"], "headers": [], "expose": ["ETag"], "max_age": None}]
    assert cors.match(rules, "https://a.example.com", "GET", ("x-token",)) is rules[0]
    assert cors.match(rules, "https://a.example.com", "GET", ("authorization",)) is None
    assert cors.match(rules, "https://evil.org", "GET", ()) is None
    assert cors.match(rules, "https://evil.org", "PUT", ()) is rules[1]
    hdrs = dict(cors.response_headers(rules[0], "https://a.example.com"))
    assert hdrs[b"access-control-allow-origin"] == b"https://a.example.com"
    assert dict(cors.response_headers(rules[1], "https://x"))[b"access-control-allow-origin"] == b"*"


def test_policy_deny_allow_and_conditions() -> None:
    doc = policy.parse(json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/public/*"},
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*",
         "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}}]}))
    plain: dict = {}
    encrypted = {"s3:x-amz-server-side-encryption": lambda: "AES256"}
    assert policy.evaluate(doc, "s3:GetObject", "arn:aws:s3:::b/public/a.jpg", True, plain) == "allow"
    assert policy.evaluate(doc, "s3:GetObject", "arn:aws:s3:::b/private/a", True, plain) == ""
    assert policy.evaluate(doc, "s3:PutObject", "arn:aws:s3:::b/k", False, plain) == "deny"
    assert policy.evaluate(doc, "s3:PutObject", "arn:aws:s3:::b/k", False, encrypted) == ""
    assert policy.is_public(doc)
    assert policy.action_of("HeadObject", False) == "s3:GetObject"
    assert policy.action_of("GetObject", True) == "s3:GetObjectVersion"
    for bad in ("not json", "{}", json.dumps({"Statement": [{"Effect": "Maybe"}]}),
                json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*",
                                           "Resource": "bucket"}]})):
        with pytest.raises(S3Error) as e:
            policy.parse(bad)
        assert e.value.code == "MalformedPolicy"


def test_multipart_checksums() -> None:
    parts = [b"a" * 100, b"b" * 50, b"c" * 7]
    values = [base64.b64encode(zlib.crc32(p).to_bytes(4, "big")).decode() for p in parts]
    whole = base64.b64encode(zlib.crc32(b"".join(parts)).to_bytes(4, "big")).decode()
    assert checksums.full_object("crc32", values, [len(p) for p in parts]) == whole
    assert checksums.composite("crc32", values).endswith("-3")
    with pytest.raises(S3Error):
        checksums.algorithm("md5")
    with pytest.raises(S3Error) as e:
        checksums.from_headers({"x-amz-checksum-crc32": "x", "x-amz-checksum-sha1": "y"})
    assert e.value.code == "InvalidRequest"


def test_acl_headers_and_xml() -> None:
    assert acl.from_headers({"x-amz-acl": "public-read"})[0][1].endswith("/AllUsers")
    assert acl.from_headers({}) is None
    grants = acl.from_headers({"x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'})
    assert grants == [("uri", "http://acs.amazonaws.com/groups/global/AllUsers", "READ")]
    assert acl.granted(grants, "READ", None) and not acl.granted(grants, "WRITE", None)
    with pytest.raises(S3Error) as e:
        acl.from_headers({"x-amz-acl": "public-read"}, "BucketOwnerEnforced")
    assert e.value.code == "AccessControlListNotSupported"
    with pytest.raises(S3Error) as e:
        acl.from_headers({"x-amz-grant-read": 'id="someone-else"'})
    assert e.value.code == "InvalidArgument"
