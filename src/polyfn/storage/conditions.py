"""Conditional requests, decided from the request's headers and the current version (pure).

Reads (GET/HEAD; S3's order): `If-Match` false → 412; `If-Unmodified-Since` false → 412 unless `If-Match`
held; `If-None-Match` matching → 304; `If-Modified-Since` not modified → 304 unless `If-None-Match` was
given and did not match. Writes (PutObject, CompleteMultipartUpload, CopyObject's target): `If-None-Match: *`
→ 412 when the key exists (create-only writes); `If-Match` → 412 unless the current ETag matches (404 when
there is none). Copies check the source with the `x-amz-copy-source-if-*` set.
"""

from __future__ import annotations

from collections.abc import Mapping

from polyfn.storage.errors import S3Error, no_such_key
from polyfn.storage.model import ObjectInfo
from polyfn.storage.wire import parse_http_date

NOT_MODIFIED = 304


def _failed(condition: str) -> S3Error:
    return S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                   Condition=condition)


def etag_matches(header: str, etag: str) -> bool:
    return any(t.strip() in ("*", etag, f'"{etag}"') or t.strip().removeprefix("W/").strip('"') == etag
               for t in header.split(","))


def _since(header: str | None) -> float | None:
    return parse_http_date(header) if header else None


def check_read(h: Mapping[str, str], etag: str, mtime: float, prefix: str = "if-") -> int | None:
    """None to go on, or NOT_MODIFIED; raises 412. `prefix` "x-amz-copy-source-if-" checks a copy source
    (where every failure is a 412)."""
    im, inm = h.get(prefix + "match"), h.get(prefix + "none-match")
    ims, ius = _since(h.get(prefix + "modified-since")), _since(h.get(prefix + "unmodified-since"))
    whole = int(mtime)
    if im is not None and not etag_matches(im, etag):
        raise _failed("If-Match")
    if ius is not None and im is None and whole > ius:
        raise _failed("If-Unmodified-Since")
    copy = prefix != "if-"
    if inm is not None and etag_matches(inm, etag):
        if copy:
            raise _failed("If-None-Match")
        return NOT_MODIFIED
    if ims is not None and whole <= ims and (inm is None or copy):
        if copy:
            raise _failed("If-Modified-Since")
        return NOT_MODIFIED
    return None


def check_write(h: Mapping[str, str], current: ObjectInfo | None, bucket: str, key: str) -> None:
    """Preconditions of a write against the key's current version (None: there is none)."""
    inm, im = h.get("if-none-match"), h.get("if-match")
    if inm is not None:
        if inm.strip() != "*":
            raise S3Error(501, "NotImplemented", "If-None-Match on a write only takes '*'")
        if current is not None:
            raise _failed("If-None-Match")
    if im is not None:
        if current is None:
            raise no_such_key(bucket, key)
        if not etag_matches(im, current.etag):
            raise _failed("If-Match")
