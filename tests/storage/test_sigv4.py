"""Signature verification against requests signed by botocore itself (no server), with a fake clock."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import HmacV1QueryAuth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from polyfn.storage import sigv4
from polyfn.storage.errors import S3Error
from polyfn.storage.wire import parse_query
from polyfn.store.security import KeyRecord

KEYS = {"AKIDTEST": ("secret-one", KeyRecord(id="AKIDTEST", secret_sha256="", scope="invoke")),
        "AKIDFUNC": ("secret-two", KeyRecord(id="AKIDFUNC", secret_sha256="", scope="invoke", owner="thumbnail")),
        "AKIDOLD": (None, KeyRecord(id="AKIDOLD", secret_sha256="", scope="admin"))}


def lookup(akid: str) -> tuple[str | None, KeyRecord] | None:
    return KEYS.get(akid)


def verify(req: AWSRequest, now: float | None = None) -> sigv4.Identity | None:
    u = urlsplit(req.url)
    headers = {k.lower(): v for k, v in req.headers.items()}
    headers.setdefault("host", u.netloc)
    return sigv4.authenticate(req.method, u.path, parse_query(u.query.encode()), headers, lookup,
                              time.time() if now is None else now)


def header_signed(method: str = "PUT", url: str = "http://127.0.0.1:9000/b/some%20key.txt", body: bytes = b"hi",
                  akid: str = "AKIDTEST", secret: str = "secret-one", extra: dict[str, str] | None = None) -> AWSRequest:
    req = AWSRequest(method, url, data=body, headers={"Content-Type": "text/plain", **(extra or {})})
    S3SigV4Auth(Credentials(akid, secret), "s3", "us-east-1").add_auth(req)
    return req


def test_header_signature_roundtrip_and_payload_hash() -> None:
    ident = verify(header_signed())
    assert ident is not None and ident.access_key_id == "AKIDTEST" and ident.function == ""
    import hashlib

    assert ident.payload_sha256 == hashlib.sha256(b"hi").hexdigest()
    func = verify(header_signed(akid="AKIDFUNC", secret="secret-two"))
    assert func is not None and func.function == "thumbnail"


@pytest.mark.parametrize("mutate, code", [
    (lambda r: r.headers.__setitem__("Content-Type", "image/png"), "SignatureDoesNotMatch"),
    (lambda r: setattr(r, "url", r.url.replace("some%20key", "other")), "SignatureDoesNotMatch"),
    (lambda r: setattr(r, "method", "DELETE"), "SignatureDoesNotMatch"),
])
def test_tampered_requests_are_refused(mutate: Any, code: str) -> None:
    req = header_signed()
    mutate(req)
    with pytest.raises(S3Error) as e:
        verify(req)
    assert (e.value.status, e.value.code) == (403, code)


def test_wrong_secret_unknown_key_and_clock_skew() -> None:
    with pytest.raises(S3Error) as e:
        verify(header_signed(secret="nope"))
    assert e.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as e:
        verify(header_signed(akid="AKIDNONE"))
    assert (e.value.status, e.value.code) == (403, "InvalidAccessKeyId")
    with pytest.raises(S3Error) as e:
        verify(header_signed(), now=time.time() + 3600)
    assert e.value.code == "RequestTimeTooSkewed"
    with pytest.raises(S3Error) as e:  # a key kept only as a hash (made before 0007) cannot sign
        verify(header_signed(akid="AKIDOLD", secret="whatever"))
    assert (e.value.status, e.value.code) == (403, "InvalidAccessKeyId") and "bearer" in e.value.message


def test_presigned_v4_expiry() -> None:
    req = AWSRequest("GET", "http://127.0.0.1:9000/b/k")
    S3SigV4QueryAuth(Credentials("AKIDTEST", "secret-one"), "s3", "us-east-1", expires=60).add_auth(req)
    t0 = time.time()
    assert verify(req, now=t0 + 30) is not None
    with pytest.raises(S3Error) as e:
        verify(req, now=t0 + 120)
    assert (e.value.status, e.value.code, e.value.message) == (403, "AccessDenied", "Request has expired")


def test_presigned_v2_as_boto3_makes_by_default() -> None:
    req = AWSRequest("GET", "http://127.0.0.1:9000/b/a%20b.jpg")
    HmacV1QueryAuth(Credentials("AKIDTEST", "secret-one"), expires=60).add_auth(req)
    t0 = time.time()
    assert verify(req, now=t0) is not None
    with pytest.raises(S3Error) as e:
        verify(req, now=t0 + 120)
    assert e.value.message == "Request has expired"
    bad = AWSRequest("GET", req.url.replace("a%20b.jpg", "c.jpg"))
    with pytest.raises(S3Error) as e:
        verify(bad, now=t0)
    assert e.value.code == "SignatureDoesNotMatch"


def test_unsigned_request_is_anonymous() -> None:
    assert sigv4.authenticate("GET", "/b/k", [], {"host": "x"}, lookup, time.time()) is None


def test_our_signer_is_verified_by_our_verifier() -> None:
    now = time.time()
    h = sigv4.sign_headers("PUT", "/b/%C3%BC%20x", [("partNumber", "1"), ("uploadId", "u")],
                           {"host": "h:1", "content-length": "3"}, "AKIDTEST", "secret-one", "us-east-1", now)
    ident = sigv4.authenticate("PUT", "/b/%C3%BC%20x", [("partNumber", "1"), ("uploadId", "u")], h, lookup, now)
    assert ident is not None and ident.payload_sha256 is None
    q = sigv4.presign_query("GET", "/b/k", "h:1", "AKIDTEST", "secret-one", "us-east-1", now, 10)
    assert sigv4.authenticate("GET", "/b/k", q, {"host": "h:1"}, lookup, now + 5) is not None
    with pytest.raises(S3Error):
        sigv4.authenticate("GET", "/b/k", q, {"host": "h:1"}, lookup, now + 11)
