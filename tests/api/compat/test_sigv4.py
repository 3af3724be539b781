"""SigV4 verification against botocore's signer (the reference implementation)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from polyfn.api.compat import sigv4

SECRET = "s3cr3t/with+chars"


def signed(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None,
           key_id: str = "polyfn-admin", secret: str = SECRET, region: str = "eu-west-1",
           service: str = "lambda") -> tuple[str, str, str, list[tuple[str, str]], bytes]:
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(key_id, secret), service, region).add_auth(req)
    parts = urlsplit(url)
    hdrs = [(k, v) for k, v in req.headers.items()]
    hdrs.append(("Host", parts.netloc))
    return method, parts.path, parts.query, hdrs, body


def lookup(key_id: str) -> str | None:
    return SECRET if key_id == "polyfn-admin" else None


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
    ident = sigv4.verify(*signed(method, url, body, headers), lookup=lookup, now=time.time(), service="lambda")
    assert (ident.access_key_id, ident.region, ident.service) == ("polyfn-admin", "eu-west-1", "lambda")


@pytest.mark.parametrize(("tamper", "code"), [
    (lambda m, p, q, h, b: (m, p, q, h, b + b" "), "InvalidSignatureException"),
    (lambda m, p, q, h, b: ("PUT", p, q, h, b), "InvalidSignatureException"),
    (lambda m, p, q, h, b: (m, p + "x", q, h, b), "InvalidSignatureException"),
    (lambda m, p, q, h, b: (m, p, q + "&a=b", h, b), "InvalidSignatureException"),
    (lambda m, p, q, h, b: (m, p, q, [(k, v) for k, v in h if k.lower() != "authorization"], b),
     "MissingAuthenticationTokenException"),
    (lambda m, p, q, h, b: (m, p, q, [(k, v if k.lower() != "x-amz-date" else "garbage") for k, v in h], b),
     "IncompleteSignatureException"),
])
def test_tampering_is_refused(tamper, code: str) -> None:  # type: ignore[no-untyped-def]
    parts = signed("POST", "http://h/2015-03-31/functions", b'{"a": 1}')
    with pytest.raises(sigv4.SigV4Error) as e:
        sigv4.verify(*tamper(*parts), lookup=lookup, now=time.time(), service="lambda")
    assert e.value.code == code


def test_wrong_secret_unknown_key_service_and_clock() -> None:
    with pytest.raises(sigv4.SigV4Error) as e:
        sigv4.verify(*signed("GET", "http://h/x", secret="other"), lookup=lookup, now=time.time())
    assert e.value.code == "InvalidSignatureException"
    with pytest.raises(sigv4.SigV4Error) as e:
        sigv4.verify(*signed("GET", "http://h/x", key_id="AKIA"), lookup=lookup, now=time.time())
    assert e.value.code == "UnrecognizedClientException"
    with pytest.raises(sigv4.SigV4Error) as e:
        sigv4.verify(*signed("GET", "http://h/x", service="s3"), lookup=lookup, now=time.time(), service="lambda")
    assert e.value.code == "InvalidSignatureException"
    with pytest.raises(sigv4.SigV4Error) as e:
        sigv4.verify(*signed("GET", "http://h/x"), lookup=lookup, now=time.time() + 3600)
    assert "expired" in e.value.message


def test_canonical_pieces() -> None:
    assert sigv4.remove_dot_segments("/a/./b/../c/") == "/a/c/"
    assert sigv4.remove_dot_segments("") == "/"
    assert sigv4.canonical_uri("/f/arn%3Ax") == "/f/arn%253Ax"
    assert sigv4.canonical_query("b=2&a=1&a=0&c") == "a=0&a=1&b=2&c="
    assert sigv4.canonical_query("k=a%20b+c") == "k=a%20b%20c"
