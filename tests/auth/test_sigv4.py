"""The one SigV4 verifier (`polyfn.auth.sigv4`) against botocore's signers (the reference implementation), for
the Lambda service (header form, double-encoded path) — the S3 forms are in tests/storage/test_sigv4.py — and
the shared lookup preamble (unknown, revoked and hash-only keys)."""

from __future__ import annotations

import hashlib
import time
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from polyfn.auth import sigv4

SECRET = "s3cr3t/with+chars"
KEY = object()


def signed(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None,
           key_id: str = "polyfn-admin", secret: str = SECRET, region: str = "eu-west-1",
           service: str = "lambda") -> tuple[str, str, list[tuple[str, str]], dict[str, str], bytes]:
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(key_id, secret), service, region).add_auth(req)
    parts = urlsplit(url)
    hdrs = {k.lower(): v for k, v in req.headers.items()}
    hdrs["host"] = parts.netloc
    return method, parts.path, sigv4.parse_query(parts.query, plus_is_space=True), hdrs, body


def lookup(key_id: str) -> tuple[str | None, object] | None:
    return {"polyfn-admin": (SECRET, KEY), "LEGACY": (None, KEY)}.get(key_id)


def check(method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes,
          now: float | None = None, service: str = "lambda") -> sigv4.Verified:
    return sigv4.verify(method, path, query, headers, lookup, time.time() if now is None else now, service,
                        hashlib.sha256(body).hexdigest())


CASES = [
    ("GET", "http://127.0.0.1:8080/2015-03-31/functions/", b"", {}),
    ("POST", "http://localhost:9000/2015-03-31/functions", b'{"FunctionName": "x"}', {"Content-Type": "application/json"}),
    ("POST", "http://h/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af/invocations",
     b"{}", {"X-Amz-Invocation-Type": "Event", "X-Amz-Log-Type": "  Tail  "}),
    ("GET", "http://h/2015-03-31/functions?MaxItems=2&Marker=YWJj%3D%3D&FunctionVersion=ALL", b"", {}),
    ("GET", "http://h/a/./b/../c/", b"", {}),
]


@pytest.mark.parametrize(("method", "url", "body", "headers"), CASES)
def test_botocore_signatures_verify(method: str, url: str, body: bytes, headers: dict[str, str]) -> None:
    ok = check(*signed(method, url, body, headers))
    assert (ok.access_key_id, ok.region, ok.service, ok.key) == ("polyfn-admin", "eu-west-1", "lambda", KEY)


@pytest.mark.parametrize(("tamper", "reason"), [
    (lambda m, p, q, h, b: (m, p, q, h, b + b" "), sigv4.MISMATCH),
    (lambda m, p, q, h, b: ("PUT", p, q, h, b), sigv4.MISMATCH),
    (lambda m, p, q, h, b: (m, p + "x", q, h, b), sigv4.MISMATCH),
    (lambda m, p, q, h, b: (m, p, [*q, ("a", "b")], h, b), sigv4.MISMATCH),
    (lambda m, p, q, h, b: (m, p, q, {k: v for k, v in h.items() if k != "authorization"}, b), sigv4.MISSING),
    (lambda m, p, q, h, b: (m, p, q, {**h, "x-amz-date": "garbage"}, b), sigv4.BAD_DATE),
    (lambda m, p, q, h, b: (m, p, q, {**h, "authorization": "AWS4-HMAC-SHA256 Credential=x"}, b), sigv4.MALFORMED),
])
def test_tampering_is_refused(tamper, reason: str) -> None:  # type: ignore[no-untyped-def]
    parts = signed("POST", "http://h/2015-03-31/functions", b'{"a": 1}')
    with pytest.raises(sigv4.SigV4Error) as e:
        check(*tamper(*parts))
    assert e.value.reason == reason


def test_wrong_secret_unknown_legacy_key_service_and_clock() -> None:
    cases = [
        (signed("GET", "http://h/x", secret="other"), {}, sigv4.MISMATCH),
        (signed("GET", "http://h/x", key_id="AKIA"), {}, sigv4.UNKNOWN_KEY),
        (signed("GET", "http://h/x", key_id="LEGACY"), {}, sigv4.NO_SECRET),
        (signed("GET", "http://h/x", service="s3"), {}, sigv4.WRONG_SERVICE),
        (signed("GET", "http://h/x"), {"now": time.time() + 3600}, sigv4.SKEWED),
    ]
    for parts, kw, reason in cases:
        with pytest.raises(sigv4.SigV4Error) as e:
            check(*parts, **kw)
        assert e.value.reason == reason, (parts, e.value.message)
    with pytest.raises(sigv4.SigV4Error) as e:
        check(*signed("GET", "http://h/x", key_id="LEGACY"))
    assert "bearer" in e.value.message


def test_signer_and_verifier_agree_for_any_service() -> None:
    now = time.time()
    for service in ("lambda", "s3"):
        h = sigv4.sign_headers("POST", "/2015-03-31/functions/f/invocations", [("Qualifier", "live")],
                               {"host": "h:1"}, "polyfn-admin", SECRET, "us-east-1", now,
                               payload=hashlib.sha256(b"{}").hexdigest(), service=service)
        ok = check("POST", "/2015-03-31/functions/f/invocations", [("Qualifier", "live")], h, b"{}", now, service)
        assert ok.service == service


def test_canonical_pieces() -> None:
    assert sigv4.remove_dot_segments("/a/./b/../c/") == "/a/c/"
    assert sigv4.remove_dot_segments("") == "/"
    assert sigv4.canonical_uri("/f/arn%3Ax", "lambda") == "/f/arn%253Ax"
    assert sigv4.canonical_uri("/b/some%20key", "s3") == "/b/some%20key"
    assert sigv4.canonical_query(sigv4.parse_query("b=2&a=1&a=0&c")) == "a=0&a=1&b=2&c="
    assert sigv4.canonical_query(sigv4.parse_query("k=a%20b+c", plus_is_space=True)) == "k=a%20b%20c"
    assert sigv4.claimed_key_id("AWS4-HMAC-SHA256 Credential=PFAKX/2024/r/s/aws4_request, S=1") == "PFAKX"


def test_the_authorization_header_in_any_field_order_and_spacing() -> None:
    """The header's part before `Signature=` is parsed once per client (remembered); a header whose signature is
    not last, or spaced otherwise, is read the same; one without a signature or a credential is malformed."""
    m, p, q, h, b = signed("POST", "https://x.example/2015-03-31/functions/f/invocations", b"{}")
    auth = h["authorization"]
    fields = dict(part.strip().split("=", 1) for part in auth[len(sigv4.ALGORITHM) + 1:].split(","))
    for i in range(2):  # (the second time from what was remembered)
        assert check(m, p, q, h, b).key is KEY, i
    alg = sigv4.ALGORITHM
    variants = [f"{alg} Signature={fields['Signature']}, Credential={fields['Credential']}, "
                f"SignedHeaders={fields['SignedHeaders']}",
                f"{alg} Credential={fields['Credential']},SignedHeaders={fields['SignedHeaders']},"
                f"Signature={fields['Signature']}"]
    for v in variants:
        assert check(m, p, q, {**h, "authorization": v}, b).key is KEY, v
    wrong = fields["Signature"][:-1] + ("0" if fields["Signature"][-1] != "0" else "1")
    for v, reason in [(f"{alg} Credential={fields['Credential']}, SignedHeaders={fields['SignedHeaders']}",
                       sigv4.MALFORMED),
                      (f"{alg} SignedHeaders={fields['SignedHeaders']}, Signature={fields['Signature']}",
                       sigv4.MALFORMED),
                      (f"{alg} Credential={fields['Credential']}, SignedHeaders={fields['SignedHeaders']} "
                       f"Signature={fields['Signature']}", sigv4.MALFORMED),
                      (f"{alg} Credential={fields['Credential']}, SignedHeaders={fields['SignedHeaders']}, "
                       f"Signature={wrong}", sigv4.MISMATCH)]:
        for _ in range(2):
            with pytest.raises(sigv4.SigV4Error) as e:
                check(m, p, q, {**h, "authorization": v}, b)
            assert e.value.reason == reason, v


def test_the_keyed_hmac_made_ahead_is_hmac_sha256() -> None:
    """`sign(signing_mac(...), msg)` (the padded key's SHA-256 states copied per message) is HMAC-SHA256 under
    the derived signing key, for any secret and message length (over a block, empty)."""
    import hmac
    import random

    rnd = random.Random(3)
    for _ in range(300):
        secret = "".join(rnd.choice("abcXYZ/+09") for _ in range(rnd.randint(1, 90)))
        scope = (f"202612{rnd.randint(10, 31)}", rnd.choice(["us-east-1", "eu-west-3"]), rnd.choice(["s3", "dynamodb"]))
        msg = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 300)))
        want = hmac.new(sigv4.signing_key(secret, *scope), msg, hashlib.sha256).hexdigest()
        assert sigv4.sign(sigv4.signing_mac(secret, *scope), msg) == want
        assert sigv4.sign(sigv4.signing_mac(secret, *scope), msg) == want  # (the states are copied, not used up)
