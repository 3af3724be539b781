"""What a write request asks for, read from its headers: the new version's record (metadata, tags, ACL,
Object Lock), its body and what the body must match, and how it is to be encrypted. Shared by PutObject,
CopyObject, CreateMultipartUpload/UploadPart and POST uploads."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from polyfn.storage import acl, checksums, sse
from polyfn.storage.errors import S3Error, invalid_argument
from polyfn.storage.model import BucketInfo, ObjectInfo, PutChecks
from polyfn.storage.wire import Request, aws_chunked, body_chunks, e, parse_iso

if TYPE_CHECKING:
    from polyfn.storage.context import S3Context
    from polyfn.storage.sigv4 import Identity

PASS_HEADERS = ("cache-control", "content-disposition", "content-encoding", "content-language", "expires",
                "x-amz-website-redirect-location")
MAX_TAGS = 10
DEFAULT_KMS_KEY = "aws/s3"
STORAGE_CLASSES = ("STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
                   "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "OUTPOSTS", "SNOW", "EXPRESS_ONEZONE")


def invalid_tag(message: str) -> S3Error:
    return S3Error(400, "InvalidTag", message)


def check_tags(tags: list[tuple[str, str]], limit: int = MAX_TAGS) -> dict[str, str]:
    if len(tags) > limit:
        raise invalid_tag(f"Object tags cannot be greater than {limit}")
    out: dict[str, str] = {}
    for k, v in tags:
        if not k or len(k) > 128:
            raise invalid_tag("The TagKey you have provided is invalid")
        if len(v) > 256:
            raise invalid_tag("The TagValue you have provided is invalid")
        if k in out:
            raise invalid_tag("Cannot provide multiple Tags with the same key")
        out[k] = v
    return out


def tags_from_header(value: str) -> dict[str, str]:
    return check_tags(parse_qsl(value, keep_blank_values=True))


def tags_xml(tags: Mapping[str, str]) -> str:
    items = "".join(f"<Tag><Key>{e(k)}</Key><Value>{e(v)}</Value></Tag>" for k, v in sorted(tags.items()))
    return f"<TagSet>{items}</TagSet>"


def tags_header(tags: Mapping[str, str]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in tags.items())


#: an HTTP header name (RFC 9110 token): what a stored metadata name is answered as
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")


def header_safe(value: str) -> bool:
    """Whether `value` can go out as an HTTP header value: no control characters but tab. A request's own headers
    always can; a POST upload's form fields (kept as the object's headers, answered on every GET) need not."""
    return not any((ord(c) < 32 and c != "\t") or c == "\x7f" for c in value)


def metadata(h: Mapping[str, str]) -> dict[str, str]:
    meta = {}
    for k, v in h.items():
        if k.startswith("x-amz-meta-"):
            if not header_safe(v):
                raise invalid_argument("metadata values may not contain control characters")
            if not _TOKEN.fullmatch(k):  # (a form field's name: a header name with a space or ':' is no header)
                raise invalid_argument(f"{k!r} is not a valid metadata header name")
            meta[k[11:]] = v
    if sum(len(k) + len(v) for k, v in meta.items()) > 2048:
        raise S3Error(400, "MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size.")
    return meta


def kept_headers(h: Mapping[str, str]) -> dict[str, str]:
    kept = {k: h[k] for k in PASS_HEADERS if k in h and k != "content-encoding"}
    for k in (*kept, "content-type", "content-encoding"):
        if not header_safe(h.get(k, "")):
            raise invalid_argument(f"{k} may not contain control characters")
    # aws-chunked is how the body travelled, not what it is: keep only the object's own encodings
    encodings = [x.strip() for x in h.get("content-encoding", "").split(",") if x.strip() not in ("", "aws-chunked")]
    if encodings:
        kept["content-encoding"] = ", ".join(encodings)
    return kept


def lock_settings(h: Mapping[str, str], bucket: BucketInfo, now: float) -> tuple[str, float, bool]:
    """(mode, retain until, legal hold) of a new version: the request's headers or the bucket's default."""
    mode = h.get("x-amz-object-lock-mode", "")
    until_h = h.get("x-amz-object-lock-retain-until-date")
    hold = h.get("x-amz-object-lock-legal-hold", "")
    if (mode or until_h or hold) and not bucket.lock.get("enabled"):
        raise S3Error(400, "InvalidRequest", "Bucket is missing Object Lock Configuration")
    if bool(mode) != bool(until_h):
        raise invalid_argument("x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be "
                               "supplied")
    if mode and mode not in ("GOVERNANCE", "COMPLIANCE"):
        raise invalid_argument("Unknown wormMode directive.")
    if hold and hold not in ("ON", "OFF"):
        raise invalid_argument("Legal Hold must be either of 'ON' or 'OFF'")
    until = 0.0
    if until_h:
        parsed = parse_iso(until_h)
        if parsed is None:
            raise invalid_argument("The retain until date must be in ISO 8601 format")
        if parsed <= now:
            raise invalid_argument("The retain until date must be in the future!")
        until = float(int(parsed))  # kept to the second, as it is answered
    elif bucket.lock.get("mode"):
        mode = bucket.lock["mode"]
        until = now + 86400 * (bucket.lock.get("days") or 365 * (bucket.lock.get("years") or 0))
    return mode, until, hold == "ON"


def new_info(app: S3Context, req: Request, bucket: BucketInfo | None = None) -> ObjectInfo:
    """The record of a version a request creates (size, ETag and version are filled in when it is stored)."""
    h = req.headers
    bucket = bucket or app.backend.bucket(req.bucket)
    info = ObjectInfo(req.key, 0, "", app.clock(), h.get("content-type") or "binary/octet-stream", metadata(h),
                      kept_headers(h))
    if "x-amz-tagging" in h:
        info.tags = tags_from_header(h["x-amz-tagging"])
    grants = acl.from_headers(h, bucket.ownership)
    if grants is not None:
        acl.refuse_public(bucket, grants)
        info.acl = grants
    sc = h.get("x-amz-storage-class", "STANDARD")
    if sc not in STORAGE_CLASSES:
        raise S3Error(400, "InvalidStorageClass", "The storage class you specified is not valid")
    info.storage_class = sc
    info.lock_mode, info.lock_until, info.legal_hold = lock_settings(h, bucket, app.clock())
    return info


def payload(app: S3Context, req: Request, ident: Identity | None) -> tuple[AsyncIterator[bytes], PutChecks]:
    """The request body as plain chunks, and what it must match (length, MD5, SHA-256, checksums)."""
    h = req.headers
    chunked = (ident is not None and ident.chunked) or ("aws-chunked" in h.get("content-encoding", "")
                                                        and "x-amz-decoded-content-length" in h)
    length_h = h.get("x-amz-decoded-content-length") if chunked else h.get("content-length")
    length = None
    if length_h is not None:
        try:
            length = int(length_h)
        except ValueError:
            raise invalid_argument("Content-Length must be an integer") from None
        if length > app.max_object_size:
            raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size",
                          ProposedSize=str(length), MaxSizeAllowed=str(app.max_object_size))
    elif "transfer-encoding" not in h and not chunked:
        raise S3Error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
    given = checksums.from_headers(h)
    for algo, value in given.items():
        checksums.decode(algo, value)
    algo = checksums.declared(h)
    checks = PutChecks(h.get("content-md5"), ident.payload_sha256 if ident else None, length, given,
                       (algo,) if algo and algo not in given else ())
    chunks = body_chunks(req.receive)
    if chunked:
        checks.trailers = {}
        trailer = h.get("x-amz-trailer", "").strip().lower()
        if trailer.startswith(checksums.HEADER):
            checks.compute = (*checks.compute, checksums.algorithm(trailer[len(checksums.HEADER):]))
        chunks = aws_chunked(chunks, checks.trailers)
    return chunks, checks


def encryption(app: S3Context, h: Mapping[str, str], bucket: BucketInfo) -> tuple[bytes, dict[str, Any]] | None:
    """The data key and record of a new encrypted version, or None for plaintext: SSE-C when the request
    carries a customer key, SSE-S3 when it asks for AES256 or the bucket's default does; SSE-KMS is 501."""
    keys = app.backend.keys
    ckey = sse.customer_key(h)
    asked = h.get(sse.H_SSE)
    if ckey is not None:
        if asked:
            raise invalid_argument("Server Side Encryption with Customer provided key is incompatible with the "
                                   "encryption method specified")
        kind = "c"
    elif asked == "aws:kms":
        key_id = h.get("x-amz-server-side-encryption-aws-kms-key-id") or bucket.kms_key_id
        if not key_id:
            raise invalid_argument("Server Side Encryption with KMS managed key requires HTTP header "
                                   "x-amz-server-side-encryption-aws-kms-key-id")
        if keys is None:
            raise S3Error(501, "NotImplemented", "server-side encryption needs the node key")
        return keys.new("kms", key_id=key_id)
    elif "x-amz-server-side-encryption-aws-kms-key-id" in h:
        raise invalid_argument("x-amz-server-side-encryption-aws-kms-key-id needs x-amz-server-side-encryption: "
                               "aws:kms")
    elif asked is not None and asked != sse.AES256:
        raise invalid_argument("The encryption method specified is not supported")
    elif bucket.encryption == "aws:kms" and asked is None:
        if keys is None:
            raise S3Error(501, "NotImplemented", "server-side encryption needs the node key")
        return keys.new("kms", key_id=bucket.kms_key_id or DEFAULT_KMS_KEY)
    elif asked == sse.AES256 or bucket.encryption == sse.AES256:
        kind = "s3"
    else:
        return None
    if keys is None:
        raise S3Error(501, "NotImplemented", "server-side encryption needs the node key")
    return keys.new(kind, ckey)


def data_key(app: S3Context, h: Mapping[str, str], info: ObjectInfo, prefix: str = "") -> bytes | None:
    """The key to read an encrypted version with (SSE-C: from the request's headers), None for plaintext."""
    if not info.sse:
        if sse.customer_key(h, prefix or "x-amz-server-side-encryption-customer-") is not None:
            raise S3Error(400, "InvalidRequest", "The encryption parameters are not applicable to this object.")
        return None
    assert app.backend.keys is not None
    ckey = sse.customer_key(h, prefix or "x-amz-server-side-encryption-customer-")
    return app.backend.keys.unwrap(info.sse, ckey)


def sse_headers(info: ObjectInfo, h: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    if not info.sse:
        return []
    if info.sse.get("kind") == "c":
        return [(sse.H_ALG.encode(), b"AES256"), (sse.H_MD5.encode(), h.get(sse.H_MD5, "").encode())]
    if info.sse.get("kind") == "kms":
        return [(sse.H_SSE.encode(), b"aws:kms"),
                (b"x-amz-server-side-encryption-aws-kms-key-id", info.sse.get("key_id", "").encode())]
    return [(sse.H_SSE.encode(), b"AES256")]
