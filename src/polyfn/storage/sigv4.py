"""AWS request authentication for the S3 API: Signature V4 (header and presigned query; verified by the one
V4 verifier, `polyfn.auth.sigv4`) and the S3-only schemes: Signature V2 (header and query, because boto3's
`generate_presigned_url` still produces it by default) and Aliyun OSS V1. Every scheme starts with the same
lookup preamble (`auth.sigv4.resolve`) against the node's one key store; V4 errors are mapped to S3's codes here.

Everything takes `now` (epoch seconds) as an argument: no clocks here.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from polyfn.auth import sigv4 as v4
from polyfn.auth.sigv4 import (  # noqa: F401  (re-exported: the SDK and the proxy backend sign with these)
    ALGORITHM,
    UNSIGNED,
    Lookup,
    amz_date,
    canonical_query,
    canonical_uri,
    presign_query,
    sign_headers,
)
from polyfn.storage.errors import S3Error, access_denied

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = v4.MAX_SKEW

#: Sub-resources that are part of a Signature V2 string to sign.
V2_SUBRESOURCES = frozenset({
    "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy",
    "requestPayment", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning", "versions",
    "website", "restore", "select", "select-type", "object-lock", "retention", "legal-hold",
    "response-content-type", "response-content-language", "response-expires", "response-cache-control",
    "response-content-disposition", "response-content-encoding",
})


@dataclass(frozen=True, slots=True)
class Identity:
    access_key_id: str
    function: str  # the function that owns the key (per-function instance keys), "" for other keys
    payload_sha256: str | None  # hex digest the body must have, None when the payload is unsigned
    chunked: bool = False  # body uses aws-chunked encoding (STREAMING-* payload)
    oss: bool = False  # signed the Aliyun OSS way (oss2): answer in OSS's dialect
    key: Any = None  # the key's record (scope checks)


def _owner(key: Any) -> str:
    return (getattr(key, "owner", None) or "") if key is not None else ""


#: auth.sigv4 reasons → (status, S3 error code)
_S3_CODES = {
    v4.MALFORMED: (400, "AuthorizationHeaderMalformed"),
    v4.WRONG_SERVICE: (400, "AuthorizationHeaderMalformed"),
    v4.UNKNOWN_KEY: (403, "InvalidAccessKeyId"),
    v4.NO_SECRET: (403, "InvalidAccessKeyId"),
    v4.BAD_DATE: (403, "AccessDenied"),
    v4.SKEWED: (403, "RequestTimeTooSkewed"),
    v4.EXPIRED: (403, "AccessDenied"),
    v4.NOT_YET_VALID: (403, "AccessDenied"),
    v4.QUERY_PARAMS: (400, "AuthorizationQueryParametersError"),
    v4.EXPIRES_RANGE: (403, "AuthorizationQueryParametersError"),
    v4.MISSING_PAYLOAD_HASH: (400, "InvalidRequest"),
    v4.PAYLOAD_MISMATCH: (400, "XAmzContentSHA256Mismatch"),
    v4.MISMATCH: (403, "SignatureDoesNotMatch"),
    v4.MISSING: (403, "AccessDenied"),
}


def s3_error(e: v4.SigV4Error) -> S3Error:
    status, code = _S3_CODES.get(e.reason, (403, "AccessDenied"))
    message = e.message
    if e.reason == v4.SKEWED:
        message = "The difference between the request time and the current time is too large."
    return S3Error(status, code, message, **e.extra)


def _resolve(lookup: Lookup, akid: str) -> tuple[str, Any]:
    try:
        return v4.resolve(lookup, akid)
    except v4.SigV4Error as e:
        raise s3_error(e) from None


def _mismatch(akid: str) -> S3Error:
    return S3Error(403, "SignatureDoesNotMatch",
                   "The request signature we calculated does not match the signature you provided. "
                   "Check your key and signing method.", AWSAccessKeyId=akid)


def access_key_id(headers: Mapping[str, str], q: Mapping[str, str]) -> str:
    """The access key id a request claims (any scheme), without verifying anything; "" if none."""
    auth = headers.get("authorization", "")
    if auth.startswith(ALGORITHM):
        i = auth.find("Credential=")
        return auth[i + 11:].split("/", 1)[0] if i >= 0 else ""
    if auth.startswith(("AWS ", "OSS ")):
        return auth[4:].rpartition(":")[0]
    cred = q.get("X-Amz-Credential")
    if cred:
        return cred.split("/", 1)[0]
    return q.get("AWSAccessKeyId") or q.get("OSSAccessKeyId") or ""


def authenticate(method: str, raw_path: str, query: list[tuple[str, str]], headers: Mapping[str, str],
                 lookup: Lookup, now: float) -> Identity | None:
    """Verify the request's signature; None for an anonymous (unsigned) request. Raises `S3Error`."""
    auth = headers.get("authorization")
    names = {k for k, _ in query}
    if (auth and auth.startswith(ALGORITHM + " ")) or (not auth and "X-Amz-Algorithm" in names):
        try:
            ok = v4.verify(method, raw_path, query, headers, lookup, now, "s3")
        except v4.SigV4Error as e:
            raise s3_error(e) from None
        chunked = ok.payload.startswith("STREAMING-")
        digest = None if ok.payload == UNSIGNED or chunked else ok.payload.lower()
        if digest is not None and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
            raise S3Error(400, "InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-… or a "
                          "SHA-256 hex digest")
        return Identity(ok.access_key_id, _owner(ok.key), digest, chunked, key=ok.key)
    if auth:
        if auth.startswith("AWS "):
            return _v2(method, raw_path, query, headers, auth[4:], None, lookup, now)
        if auth.startswith("OSS "):
            return _oss(method, raw_path, query, headers, auth[4:], None, lookup, now)
        raise S3Error(400, "InvalidArgument", "Unsupported Authorization Type")
    if "OSSAccessKeyId" in names and "Signature" in names:
        q = dict(query)
        return _oss(method, raw_path, query, headers, f"{q['OSSAccessKeyId']}:{q['Signature']}", q.get("Expires"),
                    lookup, now)
    if "AWSAccessKeyId" in names and "Signature" in names:
        q = dict(query)
        return _v2(method, raw_path, query, headers, f"{q['AWSAccessKeyId']}:{q['Signature']}", q.get("Expires"),
                   lookup, now)
    return None


def _check_expires_or_date(expires: str | None, date: str, now: float, what: str) -> str:
    """The date string of a V2/OSS string to sign, after the expiry (query form) or skew (header form) check."""
    if expires is not None:
        try:
            exp = int(expires)
        except ValueError:
            raise S3Error(400, "InvalidArgument", "Expires must be an integer") from None
        if now > exp:
            raise S3Error(403, "AccessDenied", "Request has expired", Expires=amz_date(exp), ServerTime=amz_date(now))
        return expires
    try:
        ts = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        raise access_denied(f"{what} authentication requires a valid Date header") from None
    if abs(now - ts) > MAX_SKEW:
        raise S3Error(403, "RequestTimeTooSkewed", "The difference between the request time and the current "
                      "time is too large.")
    return date


def _v2_string(method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str],
               date: str) -> str:
    amz = sorted((k, " ".join(v.split())) for k, v in headers.items() if k.startswith("x-amz-") and k != "x-amz-date")
    sub = sorted((k, v) for k, v in query if k in V2_SUBRESOURCES)
    resource = path
    if sub:
        resource += "?" + "&".join(f"{k}={v}" if v != "" else k for k, v in sub)
    lines = [method, headers.get("content-md5", ""), headers.get("content-type", ""), date]
    return "\n".join(lines) + "\n" + "".join(f"{k}:{v}\n" for k, v in amz) + resource


def _v2(method: str, raw_path: str, query: list[tuple[str, str]], headers: Mapping[str, str], cred: str,
        expires: str | None, lookup: Lookup, now: float) -> Identity:
    akid, _, signature = cred.rpartition(":")
    if not akid:
        raise S3Error(400, "InvalidArgument", "malformed Signature V2 credentials")
    secret, key = _resolve(lookup, akid)
    _check_expires_or_date(expires, headers.get("x-amz-date") or headers.get("date", ""), now, "AWS")
    date = expires if expires is not None else ("" if "x-amz-date" in headers else headers.get("date", ""))
    try:
        given = base64.b64decode(signature)
    except ValueError:
        raise _mismatch(akid) from None
    paths = (raw_path, canonical_uri(raw_path))
    if raw_path.count("/") == 1:  # a bucket-level request: botocore signs `/bucket/`, some clients `/bucket`
        paths += (raw_path + "/", canonical_uri(raw_path) + "/")
    elif raw_path.count("/") == 2 and raw_path.endswith("/"):
        paths += (raw_path[:-1],)
    for path in dict.fromkeys(paths):
        sts = _v2_string(method, path, query, headers, date)
        if hmac.compare_digest(hmac.new(secret.encode(), sts.encode(), hashlib.sha1).digest(), given):
            return Identity(akid, _owner(key), None, key=key)
    raise _mismatch(akid)


#: Sub-resources that are part of an OSS (V1) string to sign (oss2's list, the ones this store can meet).
OSS_SUBRESOURCES = frozenset({
    "acl", "uploadId", "uploads", "partNumber", "delete", "location", "response-content-type",
    "response-content-language", "response-cache-control", "response-content-encoding", "response-expires",
    "response-content-disposition", "continuation-token", "versioning", "versionId", "tagging", "cors",
    "lifecycle", "website", "bucketInfo", "objectMeta", "stat", "security-token", "policy", "referer",
})


def _oss(method: str, raw_path: str, query: list[tuple[str, str]], headers: Mapping[str, str], cred: str,
         expires: str | None, lookup: Lookup, now: float) -> Identity:
    """Aliyun OSS signature V1 (what `oss2.Auth` sends): HMAC-SHA1 like S3's V2 with `x-oss-` headers and the
    decoded key in the resource."""
    akid, _, signature = cred.rpartition(":")
    if not akid:
        raise S3Error(400, "InvalidArgument", "malformed OSS credentials")
    secret, key = _resolve(lookup, akid)
    date = _check_expires_or_date(expires, headers.get("x-oss-date") or headers.get("date", ""), now, "OSS")
    oss_headers = sorted((k, v) for k, v in headers.items() if k.startswith("x-oss-"))
    sub = sorted((k, v) for k, v in query if k in OSS_SUBRESOURCES)
    resource = unquote(raw_path)
    if sub:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in sub)
    sts = "\n".join([method, headers.get("content-md5", ""), headers.get("content-type", ""), date,
                     "".join(f"{k}:{v}\n" for k, v in oss_headers) + resource])
    try:
        given = base64.b64decode(signature)
    except ValueError:
        raise _mismatch(akid) from None
    if not hmac.compare_digest(hmac.new(secret.encode(), sts.encode(), hashlib.sha1).digest(), given):
        raise _mismatch(akid)
    return Identity(akid, _owner(key), None, oss=True, key=key)
