"""Bad input to the S3 and DynamoDB faces: each request below was a 500, a dropped connection, or was stored and
then broke every later read of what it stored (found by fuzzing each API against a real node, seventeenth
session). Each now gets the error that API's own clients expect, and nothing it was refused for is kept."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .conftest import Server
from .storage_helpers import new_key, s3_client, storage_url


@pytest.fixture(scope="module")
def s3(server: Server) -> Iterator[dict[str, Any]]:
    key = new_key(server, "fuzz")
    client = s3_client(server, key, signature_version="s3v4")
    client.create_bucket(Bucket="fuzz")
    client.put_object(Bucket="fuzz", Key="obj", Body=b"0123456789")
    client.create_bucket(Bucket="fuzz-pub", ACL="public-read-write")
    client.create_bucket(Bucket="fuzz-lock", ObjectLockEnabledForBucket=True)
    yield {"url": storage_url(server), "key": key, "client": client}


def _s3(s3: dict[str, Any], method: str, path: str, query: str = "", headers: dict[str, str] | None = None,
        body: bytes = b"") -> httpx.Response:
    """A SigV4-signed request as sent, bytes the SDK would check first included."""
    url = s3["url"] + path + ("?" + query if query else "")
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    S3SigV4Auth(Credentials(s3["key"]["access_key_id"], s3["key"]["secret_access_key"]), "s3",
                "us-east-1").add_auth(req)
    return httpx.request(method, url, headers=dict(req.headers.items()), content=body, timeout=30)


def _code(r: httpx.Response) -> tuple[int, str]:
    text = r.text
    return r.status_code, text.split("<Code>", 1)[1].split("<", 1)[0] if "<Code>" in text else ""


def _form(fields: list[tuple[str, str]], file_headers: str = "") -> tuple[bytes, dict[str, str]]:
    parts = [f'--B\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields]
    parts.append(f'--B\r\nContent-Disposition: form-data; name="file"; filename="f.txt"\r\n{file_headers}\r\n'
                 .encode() + b"data\r\n--B--\r\n")
    return b"".join(parts), {"content-type": "multipart/form-data; boundary=B"}


def test_s3_policy_nested_too_deeply_is_malformed_policy(s3: dict[str, Any]) -> None:
    r = _s3(s3, "PUT", "/fuzz", "policy", body=b"[" * 5000 + b"]" * 5000)
    assert _code(r) == (400, "MalformedPolicy"), r.text


@pytest.mark.parametrize("query", ["response-content-type=text%2Fplain%0D%0AX-Evil%3A%201",
                                   "response-cache-control=%00", "response-expires=a%0Ab"])
def test_s3_response_override_with_control_characters_is_invalid_argument(s3: dict[str, Any], query: str) -> None:
    """It would go out as a header no HTTP server may send: the connection was dropped without an answer."""
    assert _code(_s3(s3, "GET", "/fuzz/obj", query)) == (400, "InvalidArgument")
    assert _s3(s3, "GET", "/fuzz/obj", "response-content-type=text%2Fplain").headers["content-type"] == "text/plain"


def test_s3_retention_dates_beyond_the_year_9999_are_refused_and_reads_keep_working(s3: dict[str, Any]) -> None:
    """A default retention of 10^20 days (or a retain-until date in the year 10000 by its offset) was taken; then
    every GET and HEAD of each object written after it was a 500 (its date cannot be written)."""
    c = s3["client"]
    c.put_bucket_versioning(Bucket="fuzz-lock", VersioningConfiguration={"Status": "Enabled"})
    for days in ("99999999999999999999", "36501"):
        body = (f"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
                f"<Mode>GOVERNANCE</Mode><Days>{days}</Days></DefaultRetention></Rule></ObjectLockConfiguration>")
        r = _s3(s3, "PUT", "/fuzz-lock", "object-lock", body=body.encode())
        assert _code(r) == (400, "InvalidRetentionPeriod"), r.text
    r = _s3(s3, "PUT", "/fuzz-lock/late", headers={"x-amz-object-lock-mode": "GOVERNANCE",
                                                   "x-amz-object-lock-retain-until-date": "9999-12-31T23:59:59-14:00"},
            body=b"x")
    assert _code(r) == (400, "InvalidArgument"), r.text
    c.put_object(Bucket="fuzz-lock", Key="after", Body=b"kept")
    assert c.get_object(Bucket="fuzz-lock", Key="after")["Body"].read() == b"kept"


def test_s3_signed_urls_with_absurd_expiry_or_signature_are_4xx(s3: dict[str, Any], server: Server) -> None:
    base = f"{s3['url']}/fuzz/obj"
    for scheme in ("AWSAccessKeyId", "OSSAccessKeyId"):  # an expiry no date can show (was a 500)
        r = httpx.get(f"{base}?{scheme}=polyfn-admin&Signature=x&Expires=-99999999999999999999")
        assert _code(r) == (403, "AccessDenied"), r.text
    url = s3["client"].generate_presigned_url("get_object", Params={"Bucket": "fuzz", "Key": "obj"})
    assert httpx.get(url).content == b"0123456789"
    for sig in ("%C3%A9", "%E4%B8%AD" * 10):  # a signature of non-ASCII characters is a wrong one (was a 500)
        forged = url.split("X-Amz-Signature=")[0] + "X-Amz-Signature=" + sig
        assert _code(httpx.get(forged)) == (403, "SignatureDoesNotMatch")
    req = AWSRequest(method="GET", url=base)
    S3SigV4Auth(Credentials(s3["key"]["access_key_id"], s3["key"]["secret_access_key"]), "s3", "us-east-1") \
        .add_auth(req)
    headers = dict(req.headers.items())
    headers["Authorization"] = headers["Authorization"].rsplit("=", 1)[0] + "=é"
    r = httpx.get(base, headers={k: v.encode() for k, v in headers.items()})
    assert _code(r) == (403, "SignatureDoesNotMatch"), r.text


@pytest.mark.parametrize("key,fields,file_headers", [
    ("ctype", [("Content-Type", "text/plain\r\nX-Evil: 1")], ""),
    ("cache", [("Cache-Control", "a\x00b")], ""),
    ("expires", [("Expires", "soon\r\n")], ""),
    ("encoding", [("Content-Encoding", "gzip\r\nx")], ""),
    ("metaname", [("x-amz-meta-a b", "v")], ""),
    ("metacolon", [("x-amz-meta-a:b", "v")], ""),
    ("metautf8", [("x-amz-meta-\u00e9", "v")], ""),
    ("filetype", [], "Content-Type: text/plain\x01x\r\n"),
    ("redirect", [("success_action_redirect", "http://example.com/\r\nSet-Cookie: a=b")], ""),
])
def test_s3_post_upload_fields_that_cannot_be_headers_are_refused_before_storing(
        s3: dict[str, Any], key: str, fields: list[tuple[str, str]], file_headers: str) -> None:
    """A browser form's field kept as the object's header (or a redirect) with a control character, or a metadata
    name that is no header name: before, the object was stored and every later GET/HEAD of it was a dropped
    connection (or the upload's own answer was)."""
    body, headers = _form([("key", f"post-{key}"), *fields], file_headers)
    r = httpx.post(f"{s3['url']}/fuzz-pub", content=body, headers=headers)
    assert _code(r) == (400, "InvalidArgument"), r.text
    assert _code(httpx.get(f"{s3['url']}/fuzz-pub/post-{key}"))[0] == 404


def test_s3_post_upload_key_with_control_characters_answers_an_encoded_location(s3: dict[str, Any]) -> None:
    body, headers = _form([("key", "line\r\nbreak")])
    r = httpx.post(f"{s3['url']}/fuzz-pub", content=body, headers=headers)
    assert r.status_code == 204 and r.headers["location"] == "/fuzz-pub/line%0D%0Abreak", r.text
    assert httpx.get(s3["url"] + "/fuzz-pub/" + quote("line\r\nbreak")).content == b"data"


@pytest.mark.parametrize("body,content_type,code", [
    (b"garbage", "multipart/form-data; boundary=B", "MalformedPOSTRequest"),
    (b"x", "multipart/form-data; boundary=" + "b" * 200, "MalformedPOSTRequest"),
    (b"--B\r\n" + b"X-" * 50000 + b"\r\n", "multipart/form-data; boundary=B", "MalformedPOSTRequest"),
    (_form([("key", "p"), ("policy", base64.b64encode(b"[" * 5000 + b"]" * 5000).decode())])[0],
     "multipart/form-data; boundary=B", "InvalidArgument"),
])
def test_s3_post_upload_malformed_body_or_policy_is_4xx(s3: dict[str, Any], body: bytes, content_type: str,
                                                       code: str) -> None:
    r = httpx.post(f"{s3['url']}/fuzz-pub", content=body, headers={"content-type": content_type})
    assert _code(r) == (400, code), r.text


def test_s3_post_policy_with_infinite_length_range_is_invalid_argument(s3: dict[str, Any]) -> None:
    p = s3["client"].generate_presigned_post("fuzz-pub", "inf", Conditions=[["content-length-range", 1e400, 2]])
    body, headers = _form(list(p["fields"].items()))
    assert _code(httpx.post(f"{s3['url']}/fuzz-pub", content=body, headers=headers)) == (400, "InvalidArgument")


# -- DynamoDB ---------------------------------------------------------------------------------------------


def _ddb(server: Server, op: str, body: dict[str, Any] | bytes) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = AWSRequest(method="POST", url=server.url + "/", data=data, headers={
        "content-type": "application/x-amz-json-1.0", "x-amz-target": f"DynamoDB_20120810.{op}"})
    SigV4Auth(Credentials("polyfn-admin", server.key), "dynamodb", "us-east-1").add_auth(req)
    r = httpx.post(server.url + "/", content=data, headers=dict(req.headers.items()), timeout=30)
    return r.status_code, (r.json().get("__type", "") if r.status_code < 500 else r.text).split("#")[-1]


@pytest.fixture(scope="module")
def table(server: Server) -> str:
    status, kind = _ddb(server, "CreateTable", {
        "TableName": "fuzz", "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]})
    assert status == 200, kind
    assert _ddb(server, "PutItem", {"TableName": "fuzz", "Item": {"pk": {"S": "a"}, "v": {"N": "1"}}})[0] == 200
    return "fuzz"


DEEP_COND = "(" * 500 + "v = :v" + ")" * 500
DYNAMODB_CASES = [  # (operation, body, error type): each was a 500 (but Limit: true, taken as 1)
    ("GetItem", b"[" * 5000 + b"]" * 5000, "SerializationException"),
    ("PutItem", b'{"a":' * 3000 + b"1" + b"}" * 3000, "SerializationException"),
    ("PutItem", {"TableName": "fuzz", "Item": {"pk": {"S": "b"}}, "ConditionExpression": DEEP_COND,
                 "ExpressionAttributeValues": {":v": {"N": "1"}}}, "ValidationException"),
    ("Scan", {"TableName": "fuzz", "FilterExpression": DEEP_COND, "ExpressionAttributeValues": {":v": {"N": "1"}}},
     "ValidationException"),
    ("TransactWriteItems", {"TransactItems": [{"Put": "x"}]}, "ValidationException"),
    ("TransactWriteItems", {"TransactItems": 1}, "SerializationException"),
    ("TransactGetItems", {"TransactItems": 1.5}, "SerializationException"),
    ("BatchWriteItem", {"RequestItems": {"fuzz": [{"PutRequest": "x"}]}}, "ValidationException"),
    ("BatchWriteItem", {"RequestItems": {"fuzz": [{"DeleteRequest": [1]}]}}, "ValidationException"),
    ("ExecuteStatement", {"Statement": 'SELECT * FROM "fuzz" WHERE pk = ?', "Parameters": 1e308},
     "SerializationException"),
    ("ListTables", {"ExclusiveStartTableName": []}, "SerializationException"),
    ("ListTables", {"ExclusiveStartTableName": 99999999999999999999}, "SerializationException"),
    ("Query", {"TableName": "fuzz", "KeyConditionExpression": "pk = :p", "Limit": True,
               "ExpressionAttributeValues": {":p": {"S": "a"}}}, "SerializationException"),
]


@pytest.mark.parametrize("op,body,kind", DYNAMODB_CASES)
def test_dynamodb_wrong_types_and_deep_nesting_are_4xx(server: Server, table: str, op: str, body: Any,
                                                       kind: str) -> None:
    assert _ddb(server, op, body) == (400, kind)
    got = _ddb(server, "GetItem", {"TableName": table, "Key": {"pk": {"S": "a"}}})
    assert got[0] == 200
    assert _ddb(server, "GetItem", {"TableName": table, "Key": {"pk": {"S": "b"}}}) == (200, "")



# -- the app platform (wx.cloud, Firebase) and Lambda's durable executions ---------------------------------


@pytest.fixture(scope="module")
def app_token(server: Server) -> str:
    assert server.api.post("/v1/apps", json={"id": "fuzz-app"}).status_code == 201
    server.deploy("fuzz-echo", {"handler.py": "def handler(event, context):\n    return event\n"}, auth="anonymous")
    return str(server.http.post("/app/fuzz-app/auth/anonymous").json()["access_token"])


DEEP_JSON = b"[" * 5000 + b"]" * 5000
IDT = "/identitytoolkit.googleapis.com/v1/accounts"


@pytest.mark.parametrize("path,body", [
    (IDT + ":signUp?key=fuzz-app", DEEP_JSON), (IDT + ":signInWithPassword?key=fuzz-app", b'{"email": ' + DEEP_JSON + b"}"),
    (IDT + ":lookup?key=fuzz-app", b'{"idToken": "\\ud800"}'), (IDT + ":update?key=fuzz-app", b'{"a":' * 3000 + b"1" + b"}" * 3000),
])
def test_firebase_auth_body_nested_too_deeply_or_with_a_lone_surrogate_is_invalid_json(
        server: Server, app_token: str, path: str, body: bytes) -> None:
    """The Identity Toolkit's own 400 (was a 500: a RecursionError, or the surrogate reaching the token decoder)."""
    r = server.http.post(path, content=body)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("INVALID_JSON"), r.text


def test_wx_call_function_data_nested_too_deeply_is_invalid_json(server: Server, app_token: str) -> None:
    r = server.http.post("/app/fuzz-app/call/fuzz-echo", content=DEEP_JSON,
                         headers={"authorization": f"Bearer {app_token}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
    r = server.http.post("/app/fuzz-app/call/fuzz-echo", json={"n": 1}, headers={"authorization": f"Bearer {app_token}"})
    assert r.status_code == 200 and r.json() == {"n": 1}, r.text


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


@pytest.mark.parametrize("marker", [_b64(b'"x"'), _b64(b"[1]"), _b64(b'["a", "b", "c"]'), _b64(b'[1e400, "x"]'),
                                    _b64(b'[99999999999999999999999, "x"]'), _b64(b'[1, "\\ud800"]'), _b64(b"[" * 3000)])
def test_durable_executions_marker_not_written_by_polyfn_is_invalid_parameter(
        server: Server, app_token: str, marker: str) -> None:
    """ListDurableExecutionsByFunction with a Marker of another shape: the API's own 400 (was a 500 from the
    store: an IndexError, an integer overflow, a surrogate it could not encode, a RecursionError)."""
    url = f"{server.url}/2025-12-01/functions/fuzz-echo/durable-executions?Marker={quote(marker)}"
    req = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials("polyfn-admin", server.key), "lambda", "us-east-1").add_auth(req)
    r = httpx.get(url, headers=dict(req.headers.items()))
    assert r.status_code == 400 and r.headers.get("x-amzn-errortype", "").startswith(
        "InvalidParameterValueException"), r.text


def test_wx_database_body_nested_too_deeply_is_invalid_param(server: Server) -> None:
    """wx-server-sdk's database face: WeChat's INVALID_PARAM (was a 500 from the JSON decoder's RecursionError)."""
    headers = {"authorization": f"Bearer polyfn-admin:{server.key}"}
    r = server.http.post("/wx/database/collection.get", content=DEEP_JSON, headers=headers)
    assert r.status_code == 400 and r.json()["errMsg"].startswith("collection.get:fail"), r.text
    r = server.http.post("/wx/database/collection.get", json={"collection": "nope"}, headers=headers)
    assert r.status_code == 404 and "-502005" in r.json()["errMsg"], r.text


@pytest.mark.parametrize("query", ["revision=1&expires=99999999999&signature=%C3%A9",
                                   "revision=99999999999999999999999&expires=99999999999&signature=x"])
def test_lambda_code_link_with_a_foreign_signature_or_revision_is_access_denied(
        server: Server, app_token: str, query: str) -> None:
    """GetFunction's Code.Location link, forged: the API's own 403 (was a 500: compare_digest's TypeError on a
    non-ASCII signature, the store's integer overflow on the revision)."""
    r = server.http.get(f"/2015-03-31/functions/fuzz-echo/code.zip?{query}")
    assert r.status_code == 403 and r.headers.get("x-amzn-errortype", "").startswith("AccessDeniedException"), r.text


@pytest.mark.parametrize("service,method,path,target,status,kind", [
    ("lambda", "GET", "/2015-03-31/functions/", "", 403, "InvalidSignatureException"),
    ("dynamodb", "POST", "/", "DynamoDB_20120810.ListTables", 400, "InvalidSignatureException"),
    ("states", "POST", "/", "AWSStepFunctions.ListStateMachines", 400, "InvalidSignatureException")])
def test_sigv4_signature_of_non_ascii_characters_is_a_wrong_signature(
        server: Server, service: str, method: str, path: str, target: str, status: int, kind: str) -> None:
    """The one SigV4 verifier (auth/sigv4.py) for every face: was a 500 (hmac.compare_digest's TypeError)."""
    headers = {"x-amz-target": target, "content-type": "application/x-amz-json-1.0"} if target else {}
    body = b"{}" if method == "POST" else b""
    req = AWSRequest(method=method, url=server.url + path, data=body, headers=headers)
    SigV4Auth(Credentials("polyfn-admin", server.key), service, "us-east-1").add_auth(req)
    signed = dict(req.headers.items())
    signed["Authorization"] = signed["Authorization"].rsplit("=", 1)[0] + "=é"
    r = httpx.request(method, server.url + path, headers={k: v.encode() for k, v in signed.items()}, content=body)
    assert r.status_code == status and kind in r.headers.get("x-amzn-errortype", "") + r.text, r.text
