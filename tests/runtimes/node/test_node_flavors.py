"""Each Node.js flavor through the real bootstrap: context object, HTTP mapping both ways (binary bodies
included), error shape, async and callback forms, a runtime error, and handler-not-found naming the
vendor convention."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from .nodeharness import init_error, needs_node, ready, start

pytestmark = needs_node

BIN = bytes(range(256))


def j(res: Any) -> Any:
    return json.loads(res.body)


def run_one(tmp_path: Path, files: dict[str, str], flavor: str, handler: str, **inv: Any) -> Any:
    inst = start(tmp_path, files, flavor, handler)
    try:
        ready(inst)
        return inst.invoke(**inv)
    finally:
        inst.close()


# --- bootstrap-level behaviour --------------------------------------------------------------------------


def test_ready_and_logs_per_invocation(tmp_path: Path) -> None:
    inst = start(tmp_path, {"index.js": """
console.log('at init');
exports.handler = async (event) => { console.log('run', event.n); console.error('err', event.n); return event.n; };
"""}, "native", "index.handler")
    try:
        assert "node" in ready(inst).info
        r1 = inst.invoke(kind="event", body=b'{"n": 1}', content_type="application/json")
        assert j(r1) == 1
        assert [ln[2] for ln in r1.logs] == ["at init", "run 1", "err 1"]
        assert [ln[1] for ln in r1.logs] == ["stdout", "stdout", "stderr"]
        r2 = inst.invoke(kind="event", body=b'{"n": 2}')
        assert [ln[2] for ln in r2.logs] == ["run 2", "err 2"]
    finally:
        inst.close()


def test_concurrent_invocations_keep_their_own_logs(tmp_path: Path) -> None:
    inst = start(tmp_path, {"index.js": """
exports.handler = async (event) => {
  console.log('start', event.n);
  await new Promise((r) => setTimeout(r, event.wait));
  console.log('end', event.n);
  return event.n;
};
"""}, "native", "index.handler", concurrency=4)
    try:
        ready(inst)
        a = inst.send(kind="event", body=b'{"n": "a", "wait": 150}')
        b = inst.send(kind="event", body=b'{"n": "b", "wait": 10}')
        results = {r.id: r for r in (inst.read(), inst.read())}
        assert [ln[2] for ln in results[a].logs] == ["start a", "end a"]
        assert [ln[2] for ln in results[b].logs] == ["start b", "end b"]
    finally:
        inst.close()


def test_long_log_lines_are_truncated_and_counted(tmp_path: Path) -> None:
    r = run_one(tmp_path, {"index.js": """
exports.handler = async () => { console.log('x'.repeat(500)); for (let i = 0; i < 80; i++) console.log(i); return 1; };
"""}, "native", "index.handler", kind="event")
    assert r.logs[0][2].startswith("x" * 200) and "truncated 300 chars" in r.logs[0][2]
    assert len(r.logs) == 51 and "more lines dropped" in r.logs[-1][2]


@pytest.mark.parametrize(("files", "handler", "etype", "needle"), [
    ({"index.js": "exports.handler = async () => 1;"}, "missing.handler", "Runtime.ImportModuleError", "missing.js"),
    ({"index.js": "exports.handler = async () => {"}, "index.handler", "Runtime.UserCodeSyntaxError", "index.js"),
    ({"index.js": "throw new TypeError('boom at import');"}, "index.handler", "Runtime.ImportModuleError", "boom at import"),
    ({"index.js": "require('left-pad-not-here'); exports.handler = 1;"}, "index.handler", "Runtime.ImportModuleError",
     "left-pad-not-here"),
    ({"index.js": "exports.other = async () => 1;"}, "index.handler", "Runtime.HandlerNotFound", "AWS Lambda"),
])
def test_init_errors_are_typed(tmp_path: Path, files: dict[str, str], handler: str, etype: str, needle: str) -> None:
    inst = start(tmp_path, files, "aws", handler)
    try:
        err = init_error(inst)
        assert err["errorType"] == etype
        assert needle in err["errorMessage"]
        assert inst.proc.wait(5) == 0  # reported once, then the process exits
    finally:
        inst.close()


@pytest.mark.parametrize(("flavor", "word"), [
    ("aws", "AWS Lambda"), ("gcp", "Google Cloud Functions"), ("azure", "Azure Functions"), ("aliyun", "Alibaba"),
    ("tencent", "Tencent"), ("openfaas", "OpenFaaS"), ("kubeless", "Kubeless"), ("openwhisk", "OpenWhisk"),
    ("wechat", "WeChat"), ("native", "native"),
])
def test_handler_not_found_names_the_convention(tmp_path: Path, flavor: str, word: str) -> None:
    inst = start(tmp_path, {"index.js": "exports.somethingElse = () => 1;"}, flavor, "index.nothere")
    try:
        err = init_error(inst)
        assert err["errorType"] == "Runtime.HandlerNotFound"
        assert word in err["errorMessage"] and "somethingElse" in err["errorMessage"]
    finally:
        inst.close()


def test_unhandled_rejection_does_not_kill_the_instance(tmp_path: Path) -> None:
    inst = start(tmp_path, {"index.js": """
exports.handler = async () => { Promise.reject(new Error('stray')); return 'ok'; };
"""}, "native", "index.handler")
    try:
        ready(inst)
        assert inst.invoke(kind="event").body == b"ok"
        assert inst.invoke(kind="event").body == b"ok"
    finally:
        inst.close()


# --- aws ------------------------------------------------------------------------------------------------------


def test_aws_context_and_api_gateway_event(tmp_path: Path) -> None:
    r = run_one(tmp_path, {"index.js": """
exports.handler = async (event, context) => ({
  statusCode: 201,
  headers: { 'x-out': 'yes' },
  body: JSON.stringify({
    ctx: { id: context.awsRequestId, fn: context.functionName, mem: context.memoryLimitInMB,
           arn: context.invokedFunctionArn, rem: context.getRemainingTimeInMillis() > 0,
           waits: context.callbackWaitsForEmptyEventLoop, group: context.logGroupName },
    ev: { m: event.httpMethod, p: event.path, q: event.queryStringParameters, mq: event.multiValueQueryStringParameters,
          h: event.headers['X-Test'], b: event.body, b64: event.isBase64Encoded, rid: event.requestContext.requestId },
  }),
});
"""}, "aws", "index.handler", method="PUT", path="/a/b", query="x=1&x=2&y=3",
        headers=[("X-Test", "t"), ("content-type", "application/json")], body=b'{"k": 1}', content_type="application/json")
    assert r.status == 201 and ("x-out", "yes") in r.headers
    out = j(r)
    assert out["ctx"] == {"id": "act1", "fn": "fn", "mem": "128", "arn": "arn:aws:lambda:us-east-1:000000000000:function:fn",
                          "rem": True, "waits": True, "group": "/aws/lambda/fn"}
    assert out["ev"] == {"m": "PUT", "p": "/a/b", "q": {"x": "2", "y": "3"}, "mq": {"x": ["1", "2"], "y": ["3"]},
                         "h": "t", "b": '{"k": 1}', "b64": False, "rid": "act1"}


def test_aws_signed_in_user_as_authorizer_claims_and_cognito_identity(tmp_path: Path) -> None:
    inst = start(tmp_path, {"index.js": """
exports.handler = async (event, context) => ({
  identity: context.identity || null,
  authorizer: event.requestContext ? event.requestContext.authorizer || null : 'no requestContext',
});
"""}, "aws", "index.handler")
    try:
        ready(inst)
        out = j(inst.invoke(method="GET", identity=WX_USER))
        assert out["identity"] == {"cognitoIdentityId": "u1", "cognitoIdentityPoolId": "my-env"}
        assert out["authorizer"] == {"claims": {"sub": "u1"}, "principalId": "u1"}
        out = j(inst.invoke(kind="event", body=b"{}", identity=WX_USER))
        assert out["identity"]["cognitoIdentityId"] == "u1" and out["authorizer"] == "no requestContext"
        out = j(inst.invoke(method="GET"))
        assert out == {"identity": None, "authorizer": None}
    finally:
        inst.close()


def test_aws_binary_both_ways_and_callback_form(tmp_path: Path) -> None:
    r = run_one(tmp_path, {"index.js": """
exports.handler = function (event, context, callback) {
  const raw = Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8');
  setTimeout(() => callback(null, { statusCode: 200, headers: { 'content-type': 'image/png' },
    body: Buffer.from(raw.reverse()).toString('base64'), isBase64Encoded: true }), 5);
};
"""}, "aws", "index.handler", body=BIN, content_type="image/png")
    assert r.status == 200 and r.body == BIN[::-1]
    assert ("content-type", "image/png") in r.headers


def test_aws_payload_v2_and_plain_values(tmp_path: Path) -> None:
    inst = start(tmp_path, {"index.js": """
exports.handler = async (event) => event.version ? { v: event.version, path: event.rawPath, cookies: event.cookies } : event;
"""}, "aws", "index.handler", env={"AWS_LAMBDA_PAYLOAD_VERSION": "2.0"})
    try:
        ready(inst)
        r = inst.invoke(method="GET", path="/z", headers=[("cookie", "a=1; b=2")])
        assert r.status == 200 and j(r) == {"v": "2.0", "path": "/z", "cookies": ["a=1", "b=2"]}
        assert j(inst.invoke(kind="event", body=b'{"plain": true}')) == {"plain": True}
    finally:
        inst.close()


def test_aws_errors_async_callback_and_legacy(tmp_path: Path) -> None:
    inst = start(tmp_path, {"index.js": """
class MyError extends Error { constructor(m) { super(m); this.name = 'MyError'; } }
exports.throws = async () => { throw new MyError('bad thing'); };
exports.cb = (event, context, callback) => callback(new Error('via callback'));
exports.succeed = (event, context) => { context.succeed({ legacy: true }); };
exports.str = (event, context, callback) => callback('just a string');
"""}, "aws", "index.throws")
    try:
        ready(inst)
        r = inst.invoke(kind="event")
        assert r.status == 500
        assert r.error["errorType"] == "MyError" and r.error["errorMessage"] == "bad thing"
        assert any("index.js" in line for line in r.error["trace"])
        assert not any("bootstrap" in line or "flavors" in line for line in r.error["trace"])
        assert j(r) == r.error
        r = inst.invoke(kind="http", method="GET")
        assert r.status == 502 and r.error["errorType"] == "MyError"
    finally:
        inst.close()
    r = run_one(tmp_path, {}, "aws", "index.cb", kind="event")
    assert r.error["errorMessage"] == "via callback"
    r = run_one(tmp_path, {}, "aws", "index.succeed", kind="event")
    assert r.error is None and j(r) == {"legacy": True}
    r = run_one(tmp_path, {}, "aws", "index.str", kind="event")
    assert r.error["errorMessage"] == "just a string"


# --- gcp ------------------------------------------------------------------------------------------------------

GCP = """
exports.echo = (req, res) => {
  res.set('x-method', req.method).status(202).json({ path: req.path, q: req.query, body: req.body,
    ct: req.get('Content-Type'), url: req.url, raw: req.rawBody.length });
};
exports.bin = (req, res) => { res.type('application/octet-stream'); res.send(Buffer.from(req.rawBody).reverse()); };
exports.text = (req, res) => { res.send('Hello, ' + (req.query.name || 'World')); };
"""


def test_gcp_express_like_req_res(tmp_path: Path) -> None:
    r = run_one(tmp_path, {"index.js": GCP}, "gcp", "index.echo", method="POST", path="/p", query="a=1",
                body=b'{"x": [1]}', content_type="application/json")
    assert r.status == 202 and ("x-method", "POST") in r.headers
    assert j(r) == {"path": "/p", "q": {"a": "1"}, "body": {"x": [1]}, "ct": "application/json", "url": "/p?a=1", "raw": 10}
    r = run_one(tmp_path, {}, "gcp", "index.bin", body=BIN, content_type="application/octet-stream")
    assert r.body == BIN[::-1] and ("content-type", "application/octet-stream") in r.headers
    r = run_one(tmp_path, {}, "gcp", "index.text", method="GET", query="name=polyfn")
    assert r.status == 200 and r.body == b"Hello, polyfn" and r.headers[0][1].startswith("text/html")


def test_gcp_functions_framework_registration_and_crash(tmp_path: Path) -> None:
    inst = start(tmp_path, {"index.js": """
const functions = require('@google-cloud/functions-framework');
functions.http('hello', async (req, res) => { if (req.query.fail) throw new RangeError('nope'); res.send('hi'); });
functions.cloudEvent('onEvent', (ce) => { console.log('event', ce.type); });
"""}, "gcp", "index.hello")
    try:
        ready(inst)
        assert inst.invoke(method="GET").body == b"hi"
        r = inst.invoke(method="GET", query="fail=1")
        assert r.status == 500 and ("x-google-status", "crash") in r.headers
        assert r.error["errorType"] == "RangeError" and r.error["errorMessage"] == "nope"
    finally:
        inst.close()
    ce = {"specversion": "1.0", "id": "1", "source": "s", "type": "t.x", "data": {"a": 1}}
    r = run_one(tmp_path, {}, "gcp", "index.onEvent", kind="cloudevent", body=json.dumps(ce).encode(),
                content_type="application/cloudevents+json")
    assert r.status == 200 and r.body == b"OK" and r.logs[0][2] == "event t.x"


def test_gcp_legacy_background_function(tmp_path: Path) -> None:
    r = run_one(tmp_path, {"index.js": """
exports.bg = (data, context, callback) => { callback(null, { got: data, type: context.eventType }); };
"""}, "gcp", "index.bg", kind="event", body=b'{"m": 1}')
    assert j(r) == {"got": {"m": 1}, "type": "polyfn.invoke"}


def test_gcp_events_over_http_and_requests_of_the_wrong_kind(tmp_path: Path) -> None:
    src = """
exports.bg = (data, context) => ({ data, context });
"""
    inst = start(tmp_path, {"index.js": src}, "gcp", "index.bg", env={"FUNCTION_SIGNATURE_TYPE": "event"})
    try:
        ready(inst)
        ctx = {"eventId": "e1", "timestamp": "t", "eventType": "google.pubsub.topic.publish", "resource": "r"}
        r = inst.invoke(body=json.dumps({"data": {"n": 1}, "context": ctx}).encode(), content_type="application/json")
        assert r.status == 200 and j(r) == {"data": {"n": 1}, "context": ctx}
        flat = {"data": 2, "eventId": "e2", "timestamp": "t2", "eventType": "x", "resource": "y"}
        r = inst.invoke(body=json.dumps(flat).encode(), content_type="application/json")
        assert j(r) == {"data": 2, "context": {k: flat[k] for k in ctx}}
        push = {"message": {"data": "aGk=", "messageId": "m1"}, "subscription": "projects/p/subscriptions/s"}
        r = inst.invoke(path="/projects/p/topics/t", body=json.dumps(push).encode(), content_type="application/json")
        got = j(r)
        assert got["data"]["data"] == "aGk=" and got["context"]["resource"]["name"] == "projects/p/topics/t"
        r = inst.invoke(body=b"plain words", content_type="text/plain")
        assert r.status == 400 and b"background function" in r.body
    finally:
        inst.close()
    ce_src = """
const functions = require('@google-cloud/functions-framework');
functions.cloudEvent('onEvent', (ce) => { console.log(ce.type, JSON.stringify(ce.data)); });
"""
    inst = start(tmp_path, {"index.js": ce_src}, "gcp", "index.onEvent")
    try:
        ready(inst)
        r = inst.invoke(headers=[("ce-id", "1"), ("ce-source", "s"), ("ce-type", "t.x"), ("ce-specversion", "1.0"),
                                 ("content-type", "application/json")], body=b'{"a": 1}', content_type="application/json")
        assert r.status == 200 and r.body == b"OK" and r.logs[0][2] == 't.x {"a":1}'
        r = inst.invoke(body=b"{}", content_type="application/json")
        assert r.status == 400 and b"this is a CloudEvent function" in r.body
        assert ("x-google-status", "crash") not in r.headers
    finally:
        inst.close()


# --- azure ----------------------------------------------------------------------------------------------------


def test_azure_context_res_and_req(tmp_path: Path) -> None:
    r = run_one(tmp_path, {"index.js": """
module.exports = async function (context, req) {
  context.log('info line', { n: 1 });
  context.log.error('error line');
  context.res = { status: 201, headers: { 'x-inv': context.invocationId },
    body: { method: req.method, q: req.query, body: req.body, fn: context.executionContext.functionName,
            url: req.url, raw: req.rawBody } };
};
"""}, "azure", "index.default", method="POST", path="/", query="name=x", body=b'{"a": 1}',
        headers=[("host", "h:1"), ("content-type", "application/json")], content_type="application/json")
    assert r.status == 201 and ("x-inv", "act1") in r.headers
    assert j(r) == {"method": "POST", "q": {"name": "x"}, "body": {"a": 1}, "fn": "fn",
                    "url": "http://h:1/api/fn?name=x", "raw": '{"a": 1}'}
    assert [(ln[1], ln[2]) for ln in r.logs] == [("stdout", "info line { n: 1 }"), ("stderr", "error line")]


def test_azure_sync_done_binary_return_and_errors(tmp_path: Path) -> None:
    files = {"index.js": """
module.exports.sync = function (context, req) { context.res = { body: Buffer.from(req.bufferBody).reverse(), headers: { 'content-type': 'application/octet-stream' } }; context.done(); };
module.exports.ret = async function (context, req) { return { status: 200, body: 'returned' }; };
module.exports.boom = async function (context, req) { null.x; };
module.exports.none = async function (context, req) { };
"""}
    r = run_one(tmp_path, files, "azure", "index.sync", body=BIN, content_type="application/octet-stream")
    assert r.status == 200 and r.body == BIN[::-1]
    r = run_one(tmp_path, {}, "azure", "index.ret")
    assert (r.status, r.body) == (200, b"returned")
    r = run_one(tmp_path, {}, "azure", "index.none")
    assert (r.status, r.body) == (204, b"")
    r = run_one(tmp_path, {}, "azure", "index.boom")
    assert r.status == 500 and r.error["errorType"] == "TypeError"


# --- aliyun ---------------------------------------------------------------------------------------------------

ALIYUN = """
exports.handler = function (event, context, callback) {
  if (!Buffer.isBuffer(event)) return callback(new Error('event is not a Buffer'));
  const ev = JSON.parse(event.toString());
  context.logger.info('hi');
  callback(null, { name: context.function.name, rid: context.requestId, mem: context.function.memory,
    region: context.region, ev: ev.rawPath !== undefined ? { path: ev.rawPath, m: ev.requestContext.http.method, body: ev.body, b64: ev.isBase64Encoded } : ev });
};
exports.bin = async (event) => ({ statusCode: 200, headers: { 'content-type': 'image/png' },
  body: Buffer.from(JSON.parse(event).body, 'base64').toString('base64'), isBase64Encoded: true });
exports.text = (event, context, callback) => callback(null, 'hello world');
exports.fail = (event, context, callback) => callback(new Error('fc failure'));
"""


def test_aliyun_event_buffer_callback_context(tmp_path: Path) -> None:
    inst = start(tmp_path, {"index.js": ALIYUN}, "aliyun", "index.handler")
    try:
        ready(inst)
        r = inst.invoke(kind="event", body=b'{"k": 1}')
        assert j(r) == {"name": "fn", "rid": "act1", "mem": 128, "region": "cn-hangzhou", "ev": {"k": 1}}
        r = inst.invoke(method="POST", path="/x", body=b"hey", content_type="text/plain")
        assert j(r)["ev"] == {"path": "/x", "m": "POST", "body": "hey", "b64": False}
        assert "[INFO] hi" in r.logs[0][2]
    finally:
        inst.close()
    r = run_one(tmp_path, {}, "aliyun", "index.bin", body=BIN, content_type="image/png")
    assert r.body == BIN and ("content-type", "image/png") in r.headers
    r = run_one(tmp_path, {}, "aliyun", "index.text")
    assert r.body == b"hello world" and r.headers[0][1].startswith("text/plain")
    r = run_one(tmp_path, {}, "aliyun", "index.fail", kind="event")
    assert r.status == 500 and set(r.error) >= {"errorMessage", "errorType", "stackTrace"}


# --- tencent --------------------------------------------------------------------------------------------------


def test_tencent_api_gateway_event_context_and_integration_response(tmp_path: Path) -> None:
    inst = start(tmp_path, {"index.js": """
exports.main_handler = async (event, context) => {
  if (event.httpMethod === 'DELETE') throw new Error('no deletes');
  if (event.httpMethod) return { isBase64Encoded: false, statusCode: 200, headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ m: event.httpMethod, q: event.queryString, body: event.body, fn: context.function_name,
      rid: context.request_id, limit: context.time_limit_in_ms, ns: context.namespace }) };
  return event;
};
exports.cb = (event, context, callback) => callback(null, { message: 'cb ' + event.x });
"""}, "tencent", "index.main_handler")
    try:
        ready(inst)
        r = inst.invoke(method="POST", query="a=b", body=b"payload", content_type="text/plain")
        assert j(r) == {"m": "POST", "q": {"a": "b"}, "body": "payload", "fn": "fn", "rid": "act1", "limit": 30000, "ns": "default"}
        assert j(inst.invoke(kind="event", body=b'{"x": 1}')) == {"x": 1}
        r = inst.invoke(method="DELETE")
        assert r.status == 502 and r.error["errorMessage"] == "no deletes"
    finally:
        inst.close()
    r = run_one(tmp_path, {}, "tencent", "index.cb", kind="event", body=b'{"x": 2}')
    assert j(r) == {"message": "cb 2"}


# --- openfaas -------------------------------------------------------------------------------------------------


def test_openfaas_node_template(tmp_path: Path) -> None:
    inst = start(tmp_path, {"handler.js": """
module.exports = async (event, context) => {
  if (event.query.fail) return context.fail('requested failure');
  return context.status(201).headers({ 'x-path': event.path }).succeed({ body: event.body, method: event.method,
    ct: event.headers['content-type'] });
};
"""}, "openfaas", "handler.default")
    try:
        ready(inst)
        r = inst.invoke(method="POST", path="/sub", body=b'{"a": 1}', content_type="application/json")
        assert r.status == 201 and ("x-path", "/sub") in r.headers
        assert j(r) == {"body": {"a": 1}, "method": "POST", "ct": "application/json"}
        r = inst.invoke(method="GET", query="fail=1")
        assert r.status == 500 and r.body == b"requested failure"
    finally:
        inst.close()


def test_openfaas_binary_and_classic_callback_template(tmp_path: Path) -> None:
    files = {"handler.js": """
module.exports = async (event, context) => context.status(200).headers({ 'content-type': 'application/octet-stream' }).succeed(Buffer.from(event.body).reverse());
""", "classic.js": """
module.exports = (context, callback) => { callback(undefined, { status: 'done', input: context }); };
"""}
    r = run_one(tmp_path, files, "openfaas", "handler.default", body=BIN, content_type="application/octet-stream")
    assert r.body == BIN[::-1]
    r = run_one(tmp_path, {}, "openfaas", "classic.default", body=b"text in")
    assert j(r) == {"status": "done", "input": "text in"}


# --- kubeless -------------------------------------------------------------------------------------------------


def test_kubeless_event_and_context(tmp_path: Path) -> None:
    files = {"reverse.js": """
module.exports = {
  reverse: (event, context) => event.data.split('').reverse().join(''),
  info: async (event, context) => ({ id: event['event-id'], type: event['event-type'], data: event.data,
    fn: context['function-name'], mem: context['memory-limit'], url: event.extensions.request.url }),
  bad: () => { throw new Error('kubeless boom'); },
};
"""}
    assert run_one(tmp_path, files, "kubeless", "reverse.reverse", body=b"hello", content_type="text/plain").body == b"olleh"
    r = run_one(tmp_path, {}, "kubeless", "reverse.info", path="/x", query="q=1", body=b'{"a": 1}',
                content_type="application/json")
    assert j(r) == {"id": "act1", "type": "application/json", "data": {"a": 1}, "fn": "fn", "mem": "128Mi", "url": "/x?q=1"}
    r = run_one(tmp_path, {}, "kubeless", "reverse.bad")
    assert r.status == 500 and r.error["errorMessage"] == "kubeless boom"


# --- openwhisk ------------------------------------------------------------------------------------------------


def test_openwhisk_unexported_main_and_web_params(tmp_path: Path) -> None:
    inst = start(tmp_path, {"action.js": """
function main(params) {
  if (params.fail) return { error: 'asked to fail' };
  if (params.reject) return Promise.reject(new Error('rejected'));
  return Promise.resolve({ method: params.__ow_method, path: params.__ow_path, name: params.name, raw: params.__ow_body,
    hdr: params.__ow_headers['x-h'], act: process.env.__OW_ACTIVATION_ID, action: process.env.__OW_ACTION_NAME });
}
"""}, "openwhisk", "action.main")
    try:
        ready(inst)
        r = inst.invoke(method="POST", path="/p", query="name=q", body=b'{"x": 1}', content_type="application/json",
                        headers=[("x-h", "v"), ("content-type", "application/json")])
        assert j(r) == {"method": "post", "path": "/p", "name": "q", "hdr": "v", "act": "act1", "action": "/polyfn/fn"}
        r = inst.invoke(method="POST", body=BIN, content_type="application/octet-stream")
        assert base64.b64decode(j(r)["raw"]) == BIN
        r = inst.invoke(kind="event", body=b'{"fail": true}')
        assert r.status == 400 and j(r) == {"error": "asked to fail"} and r.error == {"error": "asked to fail"}
        r = inst.invoke(kind="event", body=b'{"reject": true}')
        assert r.status == 502 and "rejected" in j(r)["error"]
    finally:
        inst.close()


def test_openwhisk_web_response(tmp_path: Path) -> None:
    r = run_one(tmp_path, {"a.js": """
exports.main = (params) => ({ statusCode: 200, headers: { 'content-type': 'image/png' }, body: Buffer.from([1,2,3]).toString('base64') });
"""}, "openwhisk", "a.main", method="GET")
    assert r.body == b"\x01\x02\x03" and ("content-type", "image/png") in r.headers


# --- wechat ---------------------------------------------------------------------------------------------------

WX_USER = {"app": "my-env", "appid": "wxa", "uid": "u1", "openid": "o1", "unionid": "un1", "email": "",
           "provider": "custom", "claims": {"sub": "u1"}, "token": "t"}


def test_wechat_event_context_and_sdk(tmp_path: Path) -> None:
    inst = start(tmp_path, {"index.js": """
const cloud = require('wx-server-sdk');
cloud.init({ env: cloud.DYNAMIC_CURRENT_ENV });
exports.main = async (event, context) => {
  const wx = cloud.getWXContext();
  if (event.fail) throw new Error('wechat failure');
  return { event, openid: wx.OPENID, appid: wx.APPID, env: wx.ENV, rid: context.request_id,
    unsupported: (() => { try { cloud.openapi.security.msgSecCheck({}); } catch (e) { return e.message; } })(),
    database: typeof cloud.database().collection('todos').where({}).get };
};
"""}, "wechat", "index.main")
    try:
        ready(inst)
        r = inst.invoke(body=b'{"a": 1}', content_type="application/json", identity=WX_USER)
        out = j(r)
        assert out["event"] == {"a": 1, "userInfo": {"appId": "wxa", "openId": "o1"}}
        assert (out["openid"], out["appid"], out["env"], out["rid"]) == ("o1", "wxa", "my-env", "act1")
        assert "not provided by polyfn" in out["unsupported"] and out["database"] == "function"
        # without a verified identity the headers a caller sends say nothing (the node drops them anyway)
        r = inst.invoke(body=b'{}', headers=[("x-wx-openid", "forged"), ("content-type", "application/json")])
        assert j(r)["openid"] == "" and j(r)["event"]["userInfo"] == {"appId": "", "openId": ""}
        r = inst.invoke(kind="event", body=b'{"fail": true}')
        assert r.status == 500 and r.error["errMsg"].startswith("cloud.callFunction:fail")
    finally:
        inst.close()


def test_azure_v4_app_http(tmp_path: Path) -> None:
    inst = start(tmp_path, {"index.js": """
const { app } = require('@azure/functions');
app.http('hello', {
  methods: ['GET', 'POST'],
  authLevel: 'anonymous',
  handler: async (request, context) => {
    context.log(`Http function processed request for url "${request.url}"`);
    if (request.query.get('fail')) throw new Error('v4 failure');
    const name = request.query.get('name') || (await request.text()) || 'world';
    return request.method === 'POST' ? { jsonBody: { name, fn: context.functionName } } : { body: `Hello, ${name}!`, headers: { 'x-v': '4' } };
  },
});
"""}, "azure", "index.hello")
    try:
        ready(inst)
        r = inst.invoke(method="GET", query="name=v4", headers=[("host", "h")])
        assert (r.status, r.body) == (200, b"Hello, v4!") and ("x-v", "4") in r.headers
        assert 'processed request for url "http://h/api/fn?name=v4"' in r.logs[0][2]
        r = inst.invoke(method="POST", body=b"posted")
        assert j(r) == {"name": "posted", "fn": "hello"}
        assert inst.invoke(method="PUT").status == 405
        r = inst.invoke(method="GET", query="fail=1")
        assert r.status == 500 and r.error["errorMessage"] == "v4 failure"
    finally:
        inst.close()


def test_blank_process_takes_its_spec_from_the_first_frame(tmp_path: Path) -> None:
    from .nodeharness import NodeInstance

    (tmp_path / "index.js").write_text("console.log('init'); exports.handler = async (e, c) => ({ fn: c.functionName, e });")
    inst = NodeInstance(tmp_path, "native", "index.handler", blank=True, env={"X": "1"})
    try:
        assert "pre-started" in ready(inst).info
        r = inst.invoke(kind="event", body=b'{"a": 1}')
        assert j(r) == {"fn": "fn", "e": {"a": 1}} and r.logs[0][2] == "init"
    finally:
        inst.close()
