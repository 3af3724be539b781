"""AWS Signature Version 4 verification (header form), as botocore signs requests.

Pure functions: `verify(request parts, lookup, now)` recomputes the signature with the secret that
`lookup(access_key_id)` returns and compares in constant time. botocore's `SigV4Auth` is the reference;
the tests sign real requests with boto3 and check them here.

The canonical request is built from what arrived on the wire: the raw (still percent-encoded) path,
encoded once more as botocore does for every service but S3; the query pairs decoded and re-encoded with
the unreserved set, sorted; the headers the client listed in `SignedHeaders`, values whitespace-trimmed and
repeated values joined with `,`; the payload hash (`X-Amz-Content-SHA256` when sent, checked against the body).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = 15 * 60  # seconds between the client's X-Amz-Date and ours (AWS's own window)
UNSIGNED = ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+)\s*,\s*SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*"
    r"Signature=(?P<sig>[0-9a-f]{64})\s*$"
)


class SigV4Error(Exception):
    """Why a request is not authenticated; `code` is the AWS error type a client expects."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Identity:
    access_key_id: str
    region: str
    service: str


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


def canonical_uri(raw_path: str) -> str:
    return quote(remove_dot_segments(raw_path), safe="/~")


def canonical_query(raw_query: str) -> str:
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        if not part:
            continue
        k, _, v = part.partition("=")
        pairs.append((quote(unquote(k.replace("+", " ")), safe="-_.~"),
                      quote(unquote(v.replace("+", " ")), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_headers(headers: list[tuple[str, str]], signed: list[str]) -> str:
    values: dict[str, list[str]] = {}
    for k, v in headers:
        values.setdefault(k.lower(), []).append(" ".join(v.split()))
    lines = []
    for name in signed:
        if name not in values:
            raise SigV4Error("IncompleteSignatureException", f"signed header {name!r} is missing from the request")
        lines.append(f"{name}:{','.join(values[name])}")
    return "\n".join(lines) + "\n"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    return "\n".join((ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()))


def verify(method: str, raw_path: str, raw_query: str, headers: list[tuple[str, str]], body: bytes,
           lookup: Callable[[str], str | None], now: float, service: str | None = None) -> Identity:
    """Return who signed the request, or raise SigV4Error (with the AWS error code to send back)."""
    hmap = {k.lower(): v for k, v in headers}
    auth = hmap.get("authorization", "")
    if not auth:
        raise SigV4Error("MissingAuthenticationTokenException", "Missing Authentication Token")
    m = _AUTH_RE.match(auth.strip())
    if not m:
        raise SigV4Error("IncompleteSignatureException",
                         "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
                         f"parameters with the {ALGORITHM} algorithm")
    cred = m["cred"].split("/")
    if len(cred) != 5 or cred[4] != "aws4_request":
        raise SigV4Error("IncompleteSignatureException",
                         "Credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request")
    key_id, date, region, svc, _ = cred
    if service is not None and svc != service:
        raise SigV4Error("InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'")
    amz_date = hmap.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise SigV4Error("IncompleteSignatureException", "X-Amz-Date header is missing or not YYYYMMDDTHHMMSSZ") from None
    if not amz_date.startswith(date):
        raise SigV4Error("InvalidSignatureException", "the credential date does not match X-Amz-Date")
    if abs(now - signed_at) > MAX_SKEW:
        raise SigV4Error("InvalidSignatureException", "Signature expired: the request time is more than 15 minutes "
                         "away from the server's time")
    secret = lookup(key_id)
    if secret is None:
        raise SigV4Error("UnrecognizedClientException", "The security token included in the request is invalid.")
    signed = m["signed"].split(";")
    if "host" not in signed:
        raise SigV4Error("InvalidSignatureException", "the Host header must be signed")
    body_hash = hashlib.sha256(body).hexdigest()
    declared = hmap.get("x-amz-content-sha256")
    if declared is not None and declared not in UNSIGNED and declared != body_hash:
        raise SigV4Error("InvalidSignatureException", "X-Amz-Content-SHA256 does not match the request body")
    payload = declared if declared is not None else body_hash
    creq = "\n".join((method.upper(), canonical_uri(raw_path), canonical_query(raw_query),
                      canonical_headers(headers, signed), ";".join(signed), payload))
    scope = f"{date}/{region}/{svc}/aws4_request"
    expected = hmac.new(signing_key(secret, date, region, svc), string_to_sign(amz_date, scope, creq).encode(),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, m["sig"]):
        raise SigV4Error("InvalidSignatureException",
                         "The request signature we calculated does not match the signature you provided. "
                         "Check your AWS Secret Access Key and signing method.")
    return Identity(key_id, region, svc)
