"""Pure pieces of the compat APIs: key lookup, Lambda names and configuration, OpenWhisk results."""

from __future__ import annotations

import base64
import json

import pytest

from polyfn.api.compat import keys, lambda_wire, openwhisk_activations, openwhisk_web
from polyfn.auth.keys import KeyRing, digest
from polyfn.invoker import Outcome
from polyfn.model import FunctionInfo, FunctionSpec
from polyfn.store.security import KeyRecord


def _ring() -> KeyRing:
    """A key ring with the admin key and a deploy key, in memory (no database)."""
    ring = KeyRing(store=None)  # type: ignore[arg-type]
    for rec in (KeyRecord(id="PFAKADMINX", secret_sha256=digest("pfk_secret"), scope="admin"),
                KeyRecord(id="PFAKDEPLOY", secret_sha256=digest("dep"), scope="deploy")):
        ring._by_digest[rec.secret_sha256] = ring._by_id[rec.id] = rec
    ring.admin_id = "PFAKADMINX"
    return ring


RING = _ring()  # check_basic takes the key ring alone (services.Keys), not the node


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(("header", "who"), [
    (basic("admin", "pfk_secret"), "PFAKADMINX"),
    (basic("polyfn-admin", "pfk_secret"), "PFAKADMINX"),
    (basic("PFAKADMINX", "pfk_secret"), "PFAKADMINX"),
    (basic("PFAKDEPLOY", "dep"), None),  # a deploy key is not enough for admin-scope basic auth
    (basic("admin", "pfk_secreT"), None),
    (basic("someone", "pfk_secret"), None),
    ("Basic !!!", None),
    ("Bearer pfk_secret", None),
    ("Basic " + base64.b64encode(b"no-colon").decode(), None),
    ("", None),
])
def test_check_basic(header: str, who: str | None) -> None:
    assert keys.check_basic(RING, header) == who  # type: ignore[arg-type]
    if header == basic("PFAKDEPLOY", "dep"):
        assert keys.check_basic(RING, header, "deploy") == "PFAKDEPLOY"  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "want"), [
    ("fn", ("fn", None)),
    ("fn:$LATEST", ("fn", "$LATEST")),
    ("My_Fn:prod", ("My_Fn", "prod")),
    ("123456789012:function:fn", ("fn", None)),
    ("arn:aws:lambda:eu-west-1:123456789012:function:fn:7", ("fn", "7")),
    ("arn:aws-cn:lambda:cn-north-1:123456789012:function:fn", ("fn", None)),
])
def test_parse_function_name(value: str, want: tuple[str, str | None]) -> None:
    assert lambda_wire.parse_function_name(value) == want


@pytest.mark.parametrize("value", ["", "a b", "arn:aws:s3:::bucket", "x" * 65])
def test_parse_function_name_rejects(value: str) -> None:
    with pytest.raises(lambda_wire.LambdaError) as e:
        lambda_wire.parse_function_name(value)
    assert e.value.status == 400


@pytest.mark.parametrize(("name", "want"), [("fn", "fn"), ("My_Fn", "my-fn"), ("9lives", "fn-9lives")])
def test_polyfn_name(name: str, want: str) -> None:
    assert lambda_wire.polyfn_name(name) == want


def info(**spec: object) -> FunctionInfo:
    return FunctionInfo(name="my-fn", revision=3, created_at=0.0, updated_at=1700000000.5,
                        spec=FunctionSpec(name="my-fn", **spec), code_sha256="ab" * 32)  # type: ignore[arg-type]


def test_configuration_shape() -> None:
    cfg = lambda_wire.configuration(info(timeout=2.6, memory=256, env={"A": "1"},
                                        annotations={lambda_wire.A_NAME: "My_Fn"}), "us-west-2")
    assert cfg["FunctionName"] == "My_Fn"
    assert cfg["FunctionArn"] == "arn:aws:lambda:us-west-2:000000000000:function:My_Fn"
    assert cfg["Timeout"] == 3 and cfg["MemorySize"] == 256
    assert cfg["Environment"] == {"Variables": {"A": "1"}}
    assert cfg["LastModified"] == "2023-11-14T22:13:20.500+0000"
    assert cfg["State"] == "Active" and cfg["LastUpdateStatus"] == "Successful"
    assert base64.b64decode(cfg["CodeSha256"]) == bytes.fromhex("ab" * 32)
    assert cfg["RevisionId"] == lambda_wire.revision_id(info())


def test_recorded_zip_digest_is_used_only_for_the_same_code() -> None:
    same = info(annotations={lambda_wire.A_ZIP: "ab" * 32 + ":c2hh:1234"})
    other = info(annotations={lambda_wire.A_ZIP: "cd" * 32 + ":c2hh:1234"})
    assert (lambda_wire.configuration(same, "r")["CodeSha256"], lambda_wire.configuration(same, "r")["CodeSize"]) == ("c2hh", 1234)
    assert lambda_wire.configuration(other, "r")["CodeSize"] == 0


@pytest.mark.parametrize(("headers", "body", "want"), [
    ([], b'{"a": 1}', (200, {"a": 1})),
    ([], b'{"error": "x"}', (502, {"error": "x"})),
    ([(b"x-polyfn-function-error", b"Unhandled")], b'{"errorMessage": "boom"}', (502, {"error": "An error has occurred: boom"})),
    ([(b"x-polyfn-error", b"function_timeout")], b'{"error": {}}', (502, {"error": "The action exceeded its time limits of 60000 milliseconds."})),
    ([(b"x-polyfn-error", b"function_not_found")], b"{}", (404, {"error": "The requested resource does not exist."})),
])
def test_openwhisk_results(headers: list[tuple[bytes, bytes]], body: bytes, want: tuple[int, object]) -> None:
    assert openwhisk_activations.blocking_result(Outcome(200, headers, body), info()) == want


def test_openwhisk_http_result() -> None:
    r = openwhisk_web.http_result({"statusCode": 201, "headers": {"content-type": "image/png"},
                                "body": base64.b64encode(b"\x89PNG").decode()})
    assert (r.status_code, r.body) == (201, b"\x89PNG")
    r = openwhisk_web.http_result({"body": {"k": 1}})
    assert r.status_code == 200 and json.loads(r.body) == {"k": 1}
    assert openwhisk_web.http_result({}).status_code == 204
    assert openwhisk_web.http_result([1]).status_code == 502
