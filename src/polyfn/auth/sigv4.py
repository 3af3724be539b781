"""AWS Signature Version 4: the one verifier (and signer) for every API that speaks it.

The S3 API (service `s3`: header and presigned-query forms) and the Lambda API (service `lambda`: header
form) both verify here, against the one key store (`auth.keys.KeyRing.signing_credentials`). What differs
between the two is kept to two switches: the canonical URI (S3 encodes the decoded path once; every other
service normalises dot segments and encodes the raw path once more, as botocore does), and how the payload
hash is known (Lambda has read the body; S3 verifies before streaming it and checks the digest later).

Errors are `SigV4Error(reason, message)` with a small set of reasons; each API maps a reason to the error
its clients expect (`storage/sigv4.py`: S3 XML codes, `api/compat/lambda_wire.py`: `x-amzn-ErrorType`).
Pure functions: the caller passes `now` (epoch seconds). botocore's signers are the reference: the tests
sign real requests with them.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_SKEW = 15 * 60  # seconds between a header-signed request's date and ours (AWS's window)
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600

#: access key id → (secret or None when the key cannot sign, the key's record); None when unknown/revoked.
Lookup = Callable[[str], "tuple[str | None, Any] | None"]

# Reasons a request is refused (each API maps them to its own error codes).
MISSING = "missing"  # no Authorization header
MALFORMED = "malformed"  # Authorization / credential scope unparsable
WRONG_SERVICE = "wrong_service"
UNKNOWN_KEY = "unknown_key"  # no such key, or revoked
NO_SECRET = "no_secret"  # a legacy key stored only as a hash: bearer auth only
BAD_DATE = "bad_date"
SKEWED = "skewed"
EXPIRED = "expired"  # presigned URL past X-Amz-Expires
NOT_YET_VALID = "not_yet_valid"
QUERY_PARAMS = "query_params"  # presigned parameters incomplete
EXPIRES_RANGE = "expires_range"  # X-Amz-Expires outside 1 s … 7 days
MISSING_PAYLOAD_HASH = "missing_payload_hash"
PAYLOAD_MISMATCH = "payload_mismatch"
MISMATCH = "mismatch"  # the signature itself


class SigV4Error(Exception):
    def __init__(self, reason: str, message: str, **extra: str):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.extra = extra


@dataclass(frozen=True, slots=True)
class Verified:
    access_key_id: str
    key: Any  # what the lookup returned beside the secret (a KeyRecord for the node's key ring)
    region: str
    service: str
    payload: str  # the payload hash the request declared (or the body's digest), UNSIGNED-PAYLOAD, STREAMING-…


def resolve(lookup: Lookup, akid: str) -> tuple[str, Any]:
    """The shared preamble of every scheme (V4, and S3's V2 and OSS V1): the key's secret and record."""
    found = lookup(akid)
    if found is None:
        raise SigV4Error(UNKNOWN_KEY, "The AWS Access Key Id you provided does not exist in our records.",
                         AWSAccessKeyId=akid)
    secret, key = found
    if secret is None:
        raise SigV4Error(NO_SECRET, f"key {akid} was created before keys could sign requests: it works as a "
                         "bearer API key only; create a new key (`polyfn keys create`) for SigV4 clients",
                         AWSAccessKeyId=akid)
    return secret, key


# -- canonical request --------------------------------------------------------------------------------


def _q(s: str) -> str:
    return quote(s, safe="-_.~")


def remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal, keeping a trailing slash (botocore's `normalize_url_path`)."""
    if not path:
        return "/"
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
        else:
            out.append(seg)
    result = "/" + "/".join(out)
    if path.endswith("/") and result != "/":
        result += "/"
    return result


@functools.lru_cache(maxsize=4096)  # (pure; a client repeats its paths: one per WebSocket connection it posts to)
def canonical_uri(raw_path: str, service: str = "s3") -> str:
    """S3: each byte of the decoded path encoded once, '/' kept. Other services: the raw (encoded) path with
    dot segments removed, encoded once more."""
    if raw_path == "/":  # (every JSON-protocol request: DynamoDB, Step Functions, STS)
        return "/"
    if service == "s3":
        return quote(unquote(raw_path), safe="/~")
    return quote(remove_dot_segments(raw_path), safe="/~")


def parse_query(raw_query: str, plus_is_space: bool = False) -> list[tuple[str, str]]:
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        if part:
            k, _, v = part.partition("=")
            if plus_is_space:
                k, v = k.replace("+", " "), v.replace("+", " ")
            pairs.append((unquote(k), unquote(v)))
    return pairs


def canonical_query(pairs: list[tuple[str, str]], exclude: str = "") -> str:
    items = sorted((_q(k), _q(v)) for k, v in pairs if k != exclude)
    return "&".join(f"{k}={v}" for k, v in items)


def canonical_headers(headers: Mapping[str, str], signed: list[str]) -> str:
    """`headers` has lower-case names; repeated headers already joined with ','."""
    out = []
    for name in signed:
        value = headers.get(name)
        if value is None:
            raise SigV4Error(MISMATCH, f"signed header {name!r} is missing from the request")
        out.append(f"{name}:{' '.join(value.split())}\n")
    return "".join(out)


_key_cache: dict[tuple[str, str, str, str], bytes] = {}


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    ck = (secret, date, region, service)
    key = _key_cache.get(ck)
    if key is None:
        k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
        for part in (region, service, "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        key = k
        if len(_key_cache) > 4096:
            _key_cache.clear()
        _key_cache[ck] = key
    return key


_mac_cache: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
_SHA256 = hashlib.sha256()  # (copied: a new hash object without looking the algorithm up)


def signing_mac(secret: str, date: str, region: str, service: str) -> tuple[Any, Any]:
    """HMAC-SHA256 under `signing_key(...)` made ahead: the SHA-256 states after its inner and outer padded key
    (RFC 2104), to be copied per message (`sign`). `hmac.digest(key, msg, "sha256")` looked the algorithm up in
    OpenSSL 3's provider tables on every call: ~7 µs, against ~1 µs for the copies."""
    ck = (secret, date, region, service)
    pads = _mac_cache.get(ck)
    if pads is None:
        key = signing_key(secret, date, region, service).ljust(64, b"\0")  # (32 bytes: never over a block)
        inner, outer = _SHA256.copy(), _SHA256.copy()
        inner.update(bytes(b ^ 0x36 for b in key))
        outer.update(bytes(b ^ 0x5C for b in key))
        pads = (inner, outer)
        if len(_mac_cache) > 4096:
            _mac_cache.clear()
        _mac_cache[ck] = pads
    return pads


def sign(pads: tuple[Any, Any], msg: bytes) -> str:
    """The hex HMAC-SHA256 of `msg` under the key `pads` was made from (`signing_mac`)."""
    inner = pads[0].copy()
    inner.update(msg)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.hexdigest()  # type: ignore[no-any-return]


def signature(secret: str, amz_date: str, scope: str, creq: str) -> str:
    date, region, service = scope.split("/")[:3]
    sts = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    return sign(signing_mac(secret, date, region, service), sts.encode())


#: the instants a datetime can name (years 1 to 9999): a client's date or expiry beyond them is shown as the edge
_FIRST, _LAST = -62135596800, 253402300799


def amz_date(now: float) -> str:
    """`now` in basic ISO 8601; an instant beyond the years 1-9999 (an `Expires` or `X-Amz-Date` a client made up,
    answered back in an error) as the nearest edge (before: an OverflowError, a 500)."""
    return _dt.datetime.fromtimestamp(min(max(now, _FIRST), _LAST), _dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def same(computed: str, given: str) -> bool:
    """Whether a signature a client gave is the one computed, in constant time. As bytes: `hmac.compare_digest`
    refuses a str with non-ASCII characters (a TypeError, a 500), and a signature of them is only a wrong one."""
    return hmac.compare_digest(computed.encode(), given.encode("utf-8", "surrogateescape"))


@functools.lru_cache(maxsize=256)  # a busy client sends the same second many times; strptime is slow
def parse_amz_date(value: str) -> float:
    try:
        return _dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.UTC).timestamp()
    except ValueError:
        raise SigV4Error(BAD_DATE, f"X-Amz-Date {value!r} is missing or not YYYYMMDDTHHMMSSZ") from None


def _date_header(value: str) -> str:
    """A request signed with only `Date` (RFC 1123, or already the basic ISO 8601 form): the timestamp of the
    string to sign is that date in basic ISO 8601."""
    import email.utils

    try:
        return amz_date(email.utils.parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError):
        return value


def claimed_key_id(authorization: str) -> str:
    """The access key id a V4 `Authorization` header names, unverified ("" if none)."""
    i = authorization.find("Credential=") if authorization.startswith(ALGORITHM) else -1
    return authorization[i + 11:].split("/", 1)[0] if i >= 0 else ""


def _mismatch(akid: str) -> SigV4Error:
    return SigV4Error(MISMATCH, "The request signature we calculated does not match the signature you provided. "
                      "Check your key and signing method.", AWSAccessKeyId=akid)


# -- verification -------------------------------------------------------------------------------------


def _fields(auth: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    if auth.startswith(ALGORITHM + " "):
        for part in auth[len(ALGORITHM) + 1:].split(","):
            k, _, v = part.strip().partition("=")
            fields[k] = v
    return fields


@functools.lru_cache(maxsize=1024)  # (a client sends the same header but its signature on every request)
def _credential(head: str) -> tuple[str, str, str, str, str, str, str]:
    """(access key id, scope, signed headers, date, region, service, terminator) of an `Authorization` header
    (or of its part before `Signature=`)."""
    fields = _fields(head)
    try:
        credential, signed = fields["Credential"], fields["SignedHeaders"]
        if "Signature" not in fields and not head.rstrip().endswith(","):
            raise KeyError("Signature")
        akid, scope = credential.split("/", 1)
        date, region, svc, term = scope.split("/")
    except (KeyError, ValueError):
        raise SigV4Error(MALFORMED, "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
                         f"parameters with the {ALGORITHM} algorithm (Credential=ID/YYYYMMDD/REGION/SERVICE/"
                         "aws4_request)") from None
    return akid, scope, signed, date, region, svc, term


@functools.lru_cache(maxsize=1024)
def _signed_list(signed: str) -> list[str]:
    return signed.split(";")


def verify(method: str, raw_path: str, query: list[tuple[str, str]], headers: Mapping[str, str],
           lookup: Lookup, now: float, service: str, body_sha256: str | None = None) -> Verified:
    """Verify a header-signed (`Authorization: AWS4-HMAC-SHA256 …`) or presigned (`X-Amz-Algorithm` in the
    query) request for `service`. `headers`: lower-case names. `body_sha256`: the body's digest when the
    caller has read it (then a declared `x-amz-content-sha256` must match it), else None (S3 streams)."""
    auth = headers.get("authorization", "")
    if not auth:
        if any(k == "X-Amz-Algorithm" for k, _ in query):
            return _verify_query(method, raw_path, query, headers, lookup, now, service)
        raise SigV4Error(MISSING, "Missing Authentication Token")
    head, mark, sig = auth.rpartition("Signature=")
    if mark and auth.startswith(ALGORITHM + " ") and "," not in sig:  # (the usual header: the signature last)
        akid, scope, signed, date, region, svc, term = _credential(head)
        sig = sig.strip()
    else:
        akid, scope, signed, date, region, svc, term = _credential(auth)
        sig = _fields(auth).get("Signature", "")
    if term != "aws4_request":
        raise SigV4Error(MALFORMED, f"credential scope {scope!r} does not end with aws4_request")
    if svc != service:
        raise SigV4Error(WRONG_SERVICE, f"Credential should be scoped to correct service: '{service}'")
    secret, key = resolve(lookup, akid)
    when = headers.get("x-amz-date") or _date_header(headers.get("date", ""))
    ts = parse_amz_date(when)
    if abs(now - ts) > MAX_SKEW:
        raise SigV4Error(SKEWED, "Signature expired: the request time is more than 15 minutes away from the "
                         "server's time", RequestTime=when, ServerTime=amz_date(now))
    if when[:8] != date:
        raise SigV4Error(MALFORMED, "the credential date does not match X-Amz-Date")
    signed_list = _signed_list(signed)
    if "host" not in signed_list:
        raise SigV4Error(MISMATCH, "the Host header must be signed")
    declared = headers.get("x-amz-content-sha256")
    if declared is None:
        if body_sha256 is None:
            raise SigV4Error(MISSING_PAYLOAD_HASH, "Missing required header for this request: x-amz-content-sha256")
        payload = body_sha256
    else:
        payload = declared
        if (body_sha256 is not None and declared != body_sha256 and declared != UNSIGNED
                and not declared.startswith("STREAMING-")):
            raise SigV4Error(PAYLOAD_MISMATCH, "X-Amz-Content-SHA256 does not match the request body")
    creq = "\n".join([method.upper(), canonical_uri(raw_path, service), canonical_query(query) if query else "",
                      canonical_headers(headers, signed_list), signed, payload])
    sts = f"{ALGORITHM}\n{when}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    if not same(sign(signing_mac(secret, date, region, svc), sts.encode()), sig):
        raise _mismatch(akid)
    return Verified(akid, key, region, svc, payload)


def _verify_query(method: str, raw_path: str, query: list[tuple[str, str]], headers: Mapping[str, str],
                  lookup: Lookup, now: float, service: str) -> Verified:
    q = dict(query)
    try:
        if q["X-Amz-Algorithm"] != ALGORITHM:
            raise SigV4Error(QUERY_PARAMS, "X-Amz-Algorithm must be AWS4-HMAC-SHA256")
        akid, scope = q["X-Amz-Credential"].split("/", 1)
        _date, region, svc, _term = scope.split("/")
        when, signed, sig = q["X-Amz-Date"], q["X-Amz-SignedHeaders"], q["X-Amz-Signature"]
        expires = int(q.get("X-Amz-Expires", "604800"))
    except (KeyError, ValueError):
        raise SigV4Error(QUERY_PARAMS, "presigned URL parameters are incomplete") from None
    if svc != service:
        raise SigV4Error(WRONG_SERVICE, f"Credential should be scoped to correct service: '{service}'")
    if not 0 < expires <= MAX_PRESIGN_EXPIRES:
        raise SigV4Error(EXPIRES_RANGE, "X-Amz-Expires must be less than a week (in seconds) that is 604800 "
                         "and greater than 0")
    secret, key = resolve(lookup, akid)
    ts = parse_amz_date(when)
    if now > ts + expires:
        raise SigV4Error(EXPIRED, "Request has expired", Expires=amz_date(ts + expires), ServerTime=amz_date(now))
    if ts - now > MAX_SKEW:
        raise SigV4Error(NOT_YET_VALID, "Request is not valid yet")
    payload = q.get("X-Amz-Content-Sha256", UNSIGNED)
    creq = "\n".join([method.upper(), canonical_uri(raw_path, service), canonical_query(query, "X-Amz-Signature"),
                      canonical_headers(headers, signed.split(";")), signed, payload])
    if not same(signature(secret, when, scope, creq), sig):
        raise _mismatch(akid)
    return Verified(akid, key, region, svc, UNSIGNED)


# -- signing (CLI, SDK, the s3 proxy backend) ------------------------------------------------------------


def sign_headers(method: str, url_path: str, query: list[tuple[str, str]], headers: dict[str, str],
                 access_key: str, secret: str, region: str, now: float, payload: str = UNSIGNED,
                 service: str = "s3") -> dict[str, str]:
    """Headers (lower-case names) to add to a request so that it carries a SigV4 header signature.

    `headers` must include `host`; `url_path` is the encoded path exactly as it will be sent.
    """
    when = amz_date(now)
    out = {**{k.lower(): v for k, v in headers.items()}, "x-amz-date": when, "x-amz-content-sha256": payload}
    signed = sorted(out)
    scope = f"{when[:8]}/{region}/{service}/aws4_request"
    creq = "\n".join([method, canonical_uri(url_path, service), canonical_query(query),
                      canonical_headers(out, signed), ";".join(signed), payload])
    sig = signature(secret, when, scope, creq)
    out["authorization"] = f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(signed)}, Signature={sig}"
    return out


def presign_query(method: str, url_path: str, host: str, access_key: str, secret: str, region: str, now: float,
                  expires: int, extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """Query parameters of an S3 SigV4 presigned URL for `method url_path` (signed header: host only)."""
    when = amz_date(now)
    scope = f"{when[:8]}/{region}/s3/aws4_request"
    query = [*(extra or []), ("X-Amz-Algorithm", ALGORITHM), ("X-Amz-Credential", f"{access_key}/{scope}"),
             ("X-Amz-Date", when), ("X-Amz-Expires", str(expires)), ("X-Amz-SignedHeaders", "host")]
    creq = "\n".join([method, canonical_uri(url_path), canonical_query(query), f"host:{host}\n", "host", UNSIGNED])
    return [*query, ("X-Amz-Signature", signature(secret, when, scope, creq))]
