"""AWS Lambda flavor: context object, API Gateway v1/v2 both ways (binary too), events, errors."""

from __future__ import annotations

import base64
import json

import pytest

from polyfn.events.cloudevent import TYPE_OBJECT_CREATED, TYPE_QUEUE_BATCH
from polyfn.runtimes.python.flavors import HandlerError

from .conftest import body_json, header

ECHO = """
def handler(event, context):
    return {"event": event, "ctx": {
        "aws_request_id": context.aws_request_id, "function_name": context.function_name,
        "function_version": context.function_version, "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb, "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name, "remaining": context.get_remaining_time_in_millis(),
        "identity": context.identity.cognito_identity_id, "client_context": context.client_context}}
"""

PROXY = """
import base64
def handler(event, context):
    if event["path"] == "/bin" if "path" in event else event["rawPath"] == "/bin":
        return {"statusCode": 201, "headers": {"Content-Type": "image/png"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    return {"statusCode": 202, "headers": {"X-One": "1"}, "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": "accepted", "isBase64Encoded": False}
"""


def test_context_object(load) -> None:
    fn = load("aws", ECHO)
    r = fn.event({"message": "hi"})
    assert r.status == 200 and r.error is None
    out = body_json(r)
    assert out["event"] == {"message": "hi"}
    ctx = out["ctx"]
    assert len(ctx["aws_request_id"]) == 32
    assert ctx["function_name"] == "fn-test" and ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == "arn:aws:lambda:us-east-1:000000000000:function:fn-test"
    assert ctx["memory_limit_in_mb"] == "128"  # a string, as in Lambda
    assert ctx["log_group_name"] == "/aws/lambda/fn-test" and "[$LATEST]" in ctx["log_stream_name"]
    assert 0 < ctx["remaining"] <= 30000
    assert ctx["identity"] is None and ctx["client_context"] is None


def test_lambda_env_vars(load) -> None:
    fn = load("aws", "import os\ndef handler(e, c):\n    return {k: os.environ.get(k) for k in "
              "['AWS_LAMBDA_FUNCTION_NAME', 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE', 'AWS_REGION']}\n")
    assert body_json(fn.event({})) == {"AWS_LAMBDA_FUNCTION_NAME": "fn-test",
                                       "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_REGION": "us-east-1"}


def test_apigw_v1_event(load) -> None:
    fn = load("aws", ECHO)
    r = fn.http("POST", "/a/b", b'{"x": 1}', "q=1&q=2&z=", {"Content-Type": "application/json", "X-Multi": "v"})
    ev = body_json(r)["event"]
    assert ev["httpMethod"] == "POST" and ev["path"] == "/a/b" and ev["resource"] == "/{proxy+}"
    assert ev["pathParameters"] == {"proxy": "a/b"}
    assert ev["queryStringParameters"] == {"q": "2", "z": ""}
    assert ev["multiValueQueryStringParameters"] == {"q": ["1", "2"], "z": [""]}
    assert ev["headers"]["content-type"] == "application/json" and ev["multiValueHeaders"]["x-multi"] == ["v"]
    assert ev["body"] == '{"x": 1}' and ev["isBase64Encoded"] is False
    rc = ev["requestContext"]
    assert rc["httpMethod"] == "POST" and rc["requestId"] and rc["identity"]["sourceIp"] == "127.0.0.1"
    assert rc["domainName"] == "fn.example" and isinstance(rc["requestTimeEpoch"], int)
    empty = body_json(fn.http("GET", "/"))["event"]
    assert empty["body"] is None and empty["queryStringParameters"] is None and empty["pathParameters"] is None


def test_apigw_v2_event_selected_by_env(load) -> None:
    fn = load("aws", ECHO, env={"POLYFN_AWS_HTTP_PAYLOAD": "2.0"})
    r = fn.http("GET", "/p", b"", "a=1&a=2", [("Cookie", "c1=x; c2=y"), ("X-A", "1"), ("X-A", "2")])
    ev = body_json(r)["event"]
    assert ev["version"] == "2.0" and ev["routeKey"] == "$default" and ev["rawPath"] == "/p"
    assert ev["rawQueryString"] == "a=1&a=2" and ev["queryStringParameters"] == {"a": "1,2"}
    assert ev["cookies"] == ["c1=x", "c2=y"] and "cookie" not in ev["headers"]
    assert ev["headers"]["x-a"] == "1,2"
    assert ev["requestContext"]["http"]["method"] == "GET" and ev["requestContext"]["http"]["path"] == "/p"
    assert "body" not in ev and ev["isBase64Encoded"] is False


def test_binary_request_body_is_base64(load) -> None:
    fn = load("aws", ECHO)
    data = bytes(range(256))
    ev = body_json(fn.http("POST", "/", data, headers={"Content-Type": "application/octet-stream"}))["event"]
    assert ev["isBase64Encoded"] is True and base64.b64decode(ev["body"]) == data


def test_proxy_response_mapping_and_binary_response(load) -> None:
    fn = load("aws", PROXY)
    r = fn.http("GET", "/x")
    assert r.status == 202 and r.body == b"accepted"
    assert header(r, "x-one") == "1" and [v for k, v in r.headers if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert header(r, "content-type") == "application/json"  # API Gateway's default
    b = fn.http("GET", "/bin")
    assert b.status == 201 and b.body == bytes(range(256)) and header(b, "content-type") == "image/png"


def test_non_proxy_result_is_json_200(load) -> None:
    fn = load("aws", "def handler(e, c):\n    return {'message': 'hi'}\n")
    r = fn.http("GET", "/")
    assert r.status == 200 and body_json(r) == {"message": "hi"}


def test_error_shape(load) -> None:
    fn = load("aws", "def handler(e, c):\n    raise ValueError('boom')\n")
    r = fn.event({})
    assert r.status == 500
    err = body_json(r)
    assert list(err) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert err["errorType"] == "ValueError" and err["errorMessage"] == "boom" and len(err["requestId"]) == 32
    assert any("handler.py" in line for line in err["stackTrace"])
    assert r.error == err


def test_marshal_error(load) -> None:
    fn = load("aws", "def handler(e, c):\n    return {1, 2}\n")
    r = fn.event({})
    assert r.status == 500 and body_json(r)["errorType"] == "Runtime.MarshalError"


def test_async_handler(load) -> None:
    fn = load("aws", "import asyncio\nasync def handler(e, c):\n    await asyncio.sleep(0)\n    return e['n'] * 2\n")
    assert fn.adapter.is_async
    r = fn.event({"n": 21})
    assert r.status == 200 and r.body == b"42"


def test_wrong_arity_names_the_convention(load) -> None:
    with pytest.raises(HandlerError) as e:
        load("aws", "def handler(event):\n    return 1\n")
    assert e.value.error_type == "Runtime.HandlerSignature"
    assert "AWS Lambda `def handler(event, context)`" in e.value.message


def test_s3_and_sqs_events_from_cloudevents(load) -> None:
    fn = load("aws", "def handler(e, c):\n    return e\n")
    s3 = body_json(fn.cloudevent(TYPE_OBJECT_CREATED, {"bucket": "b", "key": "Happy Face.jpg", "size": 3}))
    rec = s3["Records"][0]
    assert rec["eventSource"] == "aws:s3" and rec["eventName"] == "ObjectCreated:Put"
    assert rec["s3"]["bucket"]["name"] == "b" and rec["s3"]["object"]["key"] == "Happy+Face.jpg"
    sqs = body_json(fn.cloudevent(TYPE_QUEUE_BATCH, {"topic": "q", "messages": [
        {"id": "m1", "body": "hello", "attributes": {}, "sent_at": 1.5, "attempt": 1}]}))
    assert sqs["Records"][0]["body"] == "hello" and sqs["Records"][0]["eventSource"] == "aws:sqs"
    assert json.loads(json.dumps(sqs))["Records"][0]["messageId"] == "m1"


def test_v1_headers_match_in_any_case(load) -> None:
    fn = load("aws", "def handler(event, context):\n    h = event['headers']\n"
              "    return [h['Content-Type'], h.get('X-CUSTOM'), 'user-agent' in h, event['multiValueHeaders']['X-Custom']]\n")
    r = fn.http("POST", "/", b"{}", headers={"Content-Type": "application/json", "x-custom": "1"})
    assert body_json(r) == ["application/json", "1", False, ["1"]]


USER = {"app": "shop", "appid": "shop", "uid": "u1", "openid": "u1", "unionid": "", "email": "a@x.io",
        "provider": "password", "claims": {"sub": "u1", "email": "a@x.io"}, "token": "t"}


@pytest.mark.parametrize("v2", [False, True])
def test_signed_in_user_as_authorizer_claims_and_cognito_identity(load, v2: bool) -> None:
    """A verified app user (polyfn.apps) reaches AWS code where API Gateway's JWT/Cognito authorizers put it."""
    fn = load("aws", """
def handler(event, context):
    rc = event.get("requestContext") or {}
    return {"authorizer": rc.get("authorizer"), "id": context.identity.cognito_identity_id,
            "pool": context.identity.cognito_identity_pool_id}
""", env={"AWS_LAMBDA_PAYLOAD_VERSION": "2.0"} if v2 else {})
    out = body_json(fn.http("GET", "/", identity=USER))
    want = {"jwt": {"claims": USER["claims"], "scopes": None}} if v2 else {"claims": USER["claims"], "principalId": "u1"}
    assert out == {"authorizer": want, "id": "u1", "pool": "shop"}
    assert body_json(fn.event({}, identity=USER))["id"] == "u1"
    assert body_json(fn.http("GET", "/")) == {"authorizer": None, "id": None, "pool": None}


def test_native_context_identity(load) -> None:
    fn = load("native", "def handler(event, context):\n    return context.identity\n")
    assert body_json(fn.event({}, identity=USER))["uid"] == "u1"
    assert body_json(fn.event({})) is None
