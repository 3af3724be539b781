"""AWS request authentication for the S3 API: Signature V4 (header and presigned query) and, because
boto3's `generate_presigned_url` still produces it by default, Signature V2 (header and query).

Verification and signing share one canonicalisation, so the CLI and the `s3` proxy backend sign with the
same code the server verifies with. Everything takes `now` (epoch seconds) as an argument: no clocks here.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from polyfn.storage.errors import S3Error, access_denied

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = 15 * 60  # seconds a header-signed request's x-amz-date may differ from the server's clock
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600

#: Sub-resources that are part of a Signature V2 string to sign.
V2_SUBRESOURCES = frozenset({
    "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy",
    "requestPayment", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning", "versions",
    "website", "restore", "select", "select-type", "object-lock", "retention", "legal-hold",
    "response-content-type", "response-content-language", "response-expires", "response-cache-control",
    "response-content-disposition", "response-content-encoding",
})

#: The secret for an access key id, and the function that owns the key ("" for user keys); None if unknown.
SecretLookup = Callable[[str], "tuple[str, str] | None"]


@dataclass(frozen=True, slots=True)
class Identity:
    access_key_id: str
    function: str  # the function the key belongs to, "" for user keys
    payload_sha256: str | None  # hex digest the body must have, None when the payload is unsigned
    chunked: bool = False  # body uses aws-chunked encoding (STREAMING-* payload)
    oss: bool = False  # signed the Aliyun OSS way (oss2): answer in OSS's dialect


def _q(s: str) -> str:
    return quote(s, safe="-_.~")


def canonical_uri(raw_path: str) -> str:
    """The path as S3 canonicalises it: each byte URI-encoded once, '/' kept."""
    return quote(unquote(raw_path), safe="/~")


def canonical_query(pairs: list[tuple[str, str]], exclude: str = "") -> str:
    items = sorted((_q(k), _q(v)) for k, v in pairs if k != exclude)
    return "&".join(f"{k}={v}" for k, v in items)


def _canonical_headers(headers: Mapping[str, str], signed: list[str]) -> str:
    out = []
    for name in signed:
        value = headers.get(name)
        if value is None:
            raise S3Error(403, "SignatureDoesNotMatch", f"signed header {name!r} is missing from the request")
        out.append(f"{name}:{' '.join(value.split())}\n")
    return "".join(out)


_key_cache: dict[tuple[str, str, str, str], bytes] = {}


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    ck = (secret, date, region, service)
    key = _key_cache.get(ck)
    if key is None:
        k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
        k = hmac.new(k, region.encode(), hashlib.sha256).digest()
        k = hmac.new(k, service.encode(), hashlib.sha256).digest()
        key = hmac.new(k, b"aws4_request", hashlib.sha256).digest()
        if len(_key_cache) > 4096:
            _key_cache.clear()
        _key_cache[ck] = key
    return key


def _signature(secret: str, amz_date: str, scope: str, creq: str) -> str:
    date, region, service = scope.split("/")[:3]
    sts = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    return hmac.new(signing_key(secret, date, region, service), sts.encode(), hashlib.sha256).hexdigest()


def _parse_amz_date(value: str) -> float:
    try:
        return _dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.UTC).timestamp()
    except ValueError:
        raise S3Error(403, "AccessDenied", f"invalid X-Amz-Date {value!r}") from None


def amz_date(now: float) -> str:
    return _dt.datetime.fromtimestamp(now, _dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _lookup(lookup: SecretLookup, akid: str) -> tuple[str, str]:
    found = lookup(akid)
    if found is None:
        raise S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.",
                      AWSAccessKeyId=akid)
    return found


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
                 lookup: SecretLookup, now: float) -> Identity | None:
    """Verify the request's signature; None for an anonymous (unsigned) request. Raises `S3Error`."""
    auth = headers.get("authorization")
    if auth:
        if auth.startswith(ALGORITHM + " "):
            return _v4_header(method, raw_path, query, headers, auth, lookup, now)
        if auth.startswith("AWS "):
            return _v2(method, raw_path, query, headers, auth[4:], None, lookup, now)
        if auth.startswith("OSS "):
            return _oss(method, raw_path, query, headers, auth[4:], None, lookup, now)
        raise S3Error(400, "InvalidArgument", "Unsupported Authorization Type")
    names = {k for k, _ in query}
    if "X-Amz-Algorithm" in names:
        return _v4_query(method, raw_path, query, headers, lookup, now)
    if "OSSAccessKeyId" in names and "Signature" in names:
        q = dict(query)
        return _oss(method, raw_path, query, headers, f"{q['OSSAccessKeyId']}:{q['Signature']}", q.get("Expires"),
                    lookup, now)
    if "AWSAccessKeyId" in names and "Signature" in names:
        q = dict(query)
        return _v2(method, raw_path, query, headers, f"{q['AWSAccessKeyId']}:{q['Signature']}", q.get("Expires"),
                   lookup, now)
    return None


def _v4_header(method: str, raw_path: str, query: list[tuple[str, str]], headers: Mapping[str, str], auth: str,
               lookup: SecretLookup, now: float) -> Identity:
    fields: dict[str, str] = {}
    for part in auth[len(ALGORITHM) + 1:].split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    try:
        credential, signed, signature = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
        akid, scope = credential.split("/", 1)
        date, _region, service, term = scope.split("/")
    except (KeyError, ValueError):
        raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed") from None
    if term != "aws4_request" or service != "s3":
        raise S3Error(400, "AuthorizationHeaderMalformed", f"credential scope {scope!r} is not for s3/aws4_request")
    secret, function = _lookup(lookup, akid)
    when = headers.get("x-amz-date") or headers.get("date") or ""
    if not when.endswith("Z") or "T" not in when:
        raise access_denied("AWS authentication requires a valid x-amz-date header")
    ts = _parse_amz_date(when)
    if abs(now - ts) > MAX_SKEW:
        raise S3Error(403, "RequestTimeTooSkewed", "The difference between the request time and the current time "
                      "is too large.", RequestTime=when, ServerTime=amz_date(now))
    if when[:8] != date:
        raise S3Error(400, "AuthorizationHeaderMalformed", "credential date does not match x-amz-date")
    payload = headers.get("x-amz-content-sha256")
    if payload is None:
        raise S3Error(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
    signed_list = signed.split(";")
    creq = "\n".join([method, canonical_uri(raw_path), canonical_query(query),
                      _canonical_headers(headers, signed_list), signed, payload])
    if not hmac.compare_digest(_signature(secret, when, scope, creq), signature):
        raise _mismatch(akid)
    chunked = payload.startswith("STREAMING-")
    digest = None if payload == UNSIGNED or chunked else payload.lower()
    if digest is not None and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        raise S3Error(400, "InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-… or a "
                      "SHA-256 hex digest")
    return Identity(akid, function, digest, chunked)


def _v4_query(method: str, raw_path: str, query: list[tuple[str, str]], headers: Mapping[str, str],
              lookup: SecretLookup, now: float) -> Identity:
    q = dict(query)
    try:
        if q["X-Amz-Algorithm"] != ALGORITHM:
            raise S3Error(400, "InvalidArgument", "X-Amz-Algorithm must be AWS4-HMAC-SHA256")
        akid, scope = q["X-Amz-Credential"].split("/", 1)
        when, signed, signature = q["X-Amz-Date"], q["X-Amz-SignedHeaders"], q["X-Amz-Signature"]
        expires = int(q.get("X-Amz-Expires", "604800"))
    except (KeyError, ValueError):
        raise S3Error(400, "AuthorizationQueryParametersError", "presigned URL parameters are incomplete") from None
    if not 0 < expires <= MAX_PRESIGN_EXPIRES:
        raise S3Error(400, "AuthorizationQueryParametersError",
                      "X-Amz-Expires must be between 1 and 604800 seconds")
    secret, function = _lookup(lookup, akid)
    ts = _parse_amz_date(when)
    if now > ts + expires:
        raise S3Error(403, "AccessDenied", "Request has expired", Expires=amz_date(ts + expires),
                      ServerTime=amz_date(now))
    if ts - now > MAX_SKEW:
        raise S3Error(403, "AccessDenied", "Request is not valid yet")
    payload = q.get("X-Amz-Content-Sha256", UNSIGNED)
    creq = "\n".join([method, canonical_uri(raw_path), canonical_query(query, exclude="X-Amz-Signature"),
                      _canonical_headers(headers, signed.split(";")), signed, payload])
    if not hmac.compare_digest(_signature(secret, when, scope, creq), signature):
        raise _mismatch(akid)
    return Identity(akid, function, None)


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
        expires: str | None, lookup: SecretLookup, now: float) -> Identity:
    akid, _, signature = cred.rpartition(":")
    if not akid:
        raise S3Error(400, "InvalidArgument", "malformed Signature V2 credentials")
    secret, function = _lookup(lookup, akid)
    if expires is not None:
        try:
            exp = int(expires)
        except ValueError:
            raise S3Error(400, "InvalidArgument", "Expires must be an integer") from None
        if now > exp:
            raise S3Error(403, "AccessDenied", "Request has expired", Expires=amz_date(exp), ServerTime=amz_date(now))
        date = expires
    else:
        date = "" if "x-amz-date" in headers else headers.get("date", "")
        when = headers.get("x-amz-date") or headers.get("date", "")
        try:
            import email.utils

            ts = email.utils.parsedate_to_datetime(when).timestamp()
        except (TypeError, ValueError):
            raise access_denied("AWS authentication requires a valid Date or x-amz-date header") from None
        if abs(now - ts) > MAX_SKEW:
            raise S3Error(403, "RequestTimeTooSkewed", "The difference between the request time and the current "
                          "time is too large.")
    try:
        given = base64.b64decode(signature)
    except ValueError:
        raise _mismatch(akid) from None
    for path in dict.fromkeys((raw_path, canonical_uri(raw_path))):
        sts = _v2_string(method, path, query, headers, date)
        if hmac.compare_digest(hmac.new(secret.encode(), sts.encode(), hashlib.sha1).digest(), given):
            return Identity(akid, function, None)
    raise _mismatch(akid)


#: Sub-resources that are part of an OSS (V1) string to sign (oss2's list, the ones this store can meet).
OSS_SUBRESOURCES = frozenset({
    "acl", "uploadId", "uploads", "partNumber", "delete", "location", "response-content-type",
    "response-content-language", "response-cache-control", "response-content-encoding", "response-expires",
    "response-content-disposition", "continuation-token", "versioning", "versionId", "tagging", "cors",
    "lifecycle", "website", "bucketInfo", "objectMeta", "stat", "security-token", "policy", "referer",
})


def _oss(method: str, raw_path: str, query: list[tuple[str, str]], headers: Mapping[str, str], cred: str,
         expires: str | None, lookup: SecretLookup, now: float) -> Identity:
    """Aliyun OSS signature V1 (what `oss2.Auth` sends): HMAC-SHA1 like S3's V2 with `x-oss-` headers and the
    decoded key in the resource."""
    akid, _, signature = cred.rpartition(":")
    if not akid:
        raise S3Error(400, "InvalidArgument", "malformed OSS credentials")
    secret, function = _lookup(lookup, akid)
    if expires is not None:
        try:
            exp = int(expires)
        except ValueError:
            raise S3Error(400, "InvalidArgument", "Expires must be an integer") from None
        if now > exp:
            raise S3Error(403, "AccessDenied", "Request has expired", Expires=amz_date(exp), ServerTime=amz_date(now))
        date = expires
    else:
        date = headers.get("x-oss-date") or headers.get("date", "")
        import email.utils

        try:
            ts = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            raise access_denied("OSS authentication requires a valid Date header") from None
        if abs(now - ts) > MAX_SKEW:
            raise S3Error(403, "RequestTimeTooSkewed", "The difference between the request time and the current "
                          "time is too large.")
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
    return Identity(akid, function, None, oss=True)


# -- signing (CLI, proxy backend) ---------------------------------------------------------------------


def sign_headers(method: str, url_path: str, query: list[tuple[str, str]], headers: dict[str, str],
                 access_key: str, secret: str, region: str, now: float, payload: str = UNSIGNED) -> dict[str, str]:
    """Headers (lower-case names) to add to a request so that it carries a SigV4 header signature.

    `headers` must include `host`; `url_path` is the encoded path exactly as it will be sent.
    """
    when = amz_date(now)
    out = {**{k.lower(): v for k, v in headers.items()}, "x-amz-date": when, "x-amz-content-sha256": payload}
    signed = sorted(out)
    scope = f"{when[:8]}/{region}/s3/aws4_request"
    creq = "\n".join([method, canonical_uri(url_path), canonical_query(query),
                      _canonical_headers(out, signed), ";".join(signed), payload])
    sig = _signature(secret, when, scope, creq)
    out["authorization"] = f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(signed)}, Signature={sig}"
    return out


def presign_query(method: str, url_path: str, host: str, access_key: str, secret: str, region: str, now: float,
                  expires: int, extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """Query parameters of a SigV4 presigned URL for `method url_path` (signed header: host only)."""
    when = amz_date(now)
    scope = f"{when[:8]}/{region}/s3/aws4_request"
    query = [*(extra or []), ("X-Amz-Algorithm", ALGORITHM), ("X-Amz-Credential", f"{access_key}/{scope}"),
             ("X-Amz-Date", when), ("X-Amz-Expires", str(expires)), ("X-Amz-SignedHeaders", "host")]
    creq = "\n".join([method, canonical_uri(url_path), canonical_query(query), f"host:{host}\n", "host", UNSIGNED])
    return [*query, ("X-Amz-Signature", _signature(secret, when, scope, creq))]
