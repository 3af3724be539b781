"""Lambda response streaming with the real pieces (issue #22): Node.js `awslambda.streamifyResponse` with
`HttpResponseStream.from`, `pipeline` and `end()` through the gateway; boto3's `invoke_with_response_stream`
(the Lambda API's event-stream framing, parsed by botocore) against a Node and a Python function; the Node
stream is closed when the client goes; an error mid-stream reaches boto3 as InvokeComplete's ErrorCode. Also
Azure's Node.js v4 model: `app.setup({ enableHttpStream: true })` and a stream body."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from .conftest import Server
from .streams import assert_broken_off, assert_told_when_the_client_goes

pytestmark = pytest.mark.skipif(shutil.which("node") is None and os.environ.get("CI") != "true",
                                reason="Node.js is not installed")

HOST_FS = True  # the Node function below waits for a file the test writes in the host's /tmp

STREAMER = '''const { pipeline } = require('stream/promises');
const { Readable } = require('stream');
const fs = require('fs');

exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  const q = event.queryStringParameters || event;
  if (q.mode === 'pipeline') {
    const out = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 201, headers: { 'content-type': 'text/csv', 'x-made-by': 'pipeline' } });
    await pipeline(Readable.from(['a,b\\n', '1,2\\n', '3,4\\n']), out);
    return;
  }
  if (q.mode === 'fail') {
    responseStream.setContentType('text/plain');
    responseStream.write('partial ');
    throw new TypeError('bad row');
  }
  if (q.mode === 'wait') {  // first chunk, then wait for the test's file before the second
    responseStream.setContentType('text/plain');
    responseStream.write('first\\n');
    while (!fs.existsSync(q.go)) await new Promise((r) => setTimeout(r, 10));
    responseStream.write('second\\n');
    responseStream.end();
    return;
  }
  if (q.mode === 'forever') {
    responseStream.on('close', () => console.log('told: stream closed'));
    for (let i = 0; !responseStream.destroyed; i++) {
      responseStream.write(`tick ${i}\\n`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return;
  }
  responseStream.setContentType('application/json');
  responseStream.write(JSON.stringify({ hello: 'world' }));
  responseStream.end();
});
'''

AZURE = '''const { app } = require('@azure/functions');
const { Readable } = require('stream');
const fs = require('fs');

app.setup({ enableHttpStream: true });

app.http('rows', {
  methods: ['GET'],
  handler: async (request, context) => {
    const go = request.query.get('go');
    async function* rows() {
      yield 'first\\n';
      while (!fs.existsSync(go)) await new Promise((r) => setTimeout(r, 10));
      yield 'second\\n';
    }
    return { body: Readable.from(rows()), headers: { 'content-type': 'text/plain' } };
  },
});
'''

PY_GEN = '''def handler(event, context):
    def chunks():
        yield "one "
        yield "two"
        if event.get("fail"):
            raise KeyError("missing")
    return chunks()
'''

PLAIN = '''def handler(event, context):
    return {"answer": 42}
'''


@pytest.fixture(scope="module")
def fns(server: Server) -> Server:
    server.deploy("sa-node", {"index.js": STREAMER}, runtime="node", flavor="aws", handler="index.handler")
    server.deploy("sa-py", {"handler.py": PY_GEN}, flavor="aws")
    server.deploy("sa-plain", {"handler.py": PLAIN}, flavor="aws")
    server.deploy("sa-azure", {"index.js": AZURE}, runtime="node", flavor="azure", handler="index.rows")
    return server


@pytest.fixture(scope="module")
def lam(fns: Server) -> Any:
    return boto3.client("lambda", endpoint_url=fns.url, region_name="us-east-1", aws_access_key_id="polyfn-admin",
                        aws_secret_access_key=fns.key, config=Config(retries={"max_attempts": 1}, read_timeout=60))


def _events(resp: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    body = b""
    complete: dict[str, Any] = {}
    for ev in resp["EventStream"]:
        if "PayloadChunk" in ev:
            body += ev["PayloadChunk"]["Payload"]
        elif "InvokeComplete" in ev:
            complete = ev["InvokeComplete"]
    return body, complete


def test_node_stream_with_response_stream_from_and_pipeline(fns: Server) -> None:
    with fns.http.stream("GET", "/fn/sa-node?mode=pipeline") as r:
        assert r.status_code == 201 and r.headers["content-type"] == "text/csv"
        assert r.headers["x-made-by"] == "pipeline" and r.headers["transfer-encoding"] == "chunked"
        assert r.read() == b"a,b\n1,2\n3,4\n"
    act = fns.activation(r.headers["x-polyfn-activation-id"])
    assert act["status"] == "success" and act["stream"]["bytes"] == 12 and act["stream"]["chunks"] == 3


def test_node_chunks_arrive_as_written(fns: Server) -> None:
    go = f"/tmp/polyfn-stream-go-{uuid.uuid4().hex}"
    try:
        with fns.http.stream("GET", f"/fn/sa-node?mode=wait&go={go}") as r:
            lines = r.iter_lines()
            assert next(lines) == "first"  # the function is still waiting for the file
            Path(go).touch()
            assert next(lines) == "second"
    finally:
        if os.path.exists(go):
            os.unlink(go)


def test_azure_v4_stream_body_with_enable_http_stream(fns: Server) -> None:
    go = f"/tmp/polyfn-stream-go-{uuid.uuid4().hex}"
    try:
        with fns.http.stream("GET", "/fn/sa-azure", params={"go": go}) as r:
            assert r.headers["content-type"] == "text/plain" and r.headers["transfer-encoding"] == "chunked"
            lines = r.iter_lines()
            assert next(lines) == "first"  # the function still waits for the file
            Path(go).touch()
            assert next(lines) == "second"
            assert list(lines) == []
    finally:
        if os.path.exists(go):
            os.unlink(go)


def test_node_error_mid_stream_breaks_the_response_off(fns: Server) -> None:
    assert_broken_off(fns, "/fn/sa-node?mode=fail", "TypeError")


def test_node_stream_is_closed_when_the_client_goes(fns: Server) -> None:
    assert_told_when_the_client_goes(fns, "/fn/sa-node?mode=forever", "told: stream closed")


def test_boto3_invoke_with_response_stream_node(lam: Any) -> None:
    resp = lam.invoke_with_response_stream(FunctionName="sa-node", Payload=json.dumps({"mode": "json"}), LogType="Tail")
    assert resp["StatusCode"] == 200 and resp["ResponseStreamContentType"] == "application/json"
    assert resp["ExecutedVersion"] == "$LATEST"
    body, complete = _events(resp)
    assert json.loads(body) == {"hello": "world"}
    assert "ErrorCode" not in complete and "START RequestId" in __import__("base64").b64decode(complete["LogResult"]).decode()


def test_boto3_invoke_with_response_stream_errors(lam: Any) -> None:
    body, complete = _events(lam.invoke_with_response_stream(FunctionName="sa-node", Payload=json.dumps({"mode": "fail"})))
    assert body == b"partial " and complete["ErrorCode"] == "TypeError" and complete["ErrorDetails"] == "bad row"
    body, complete = _events(lam.invoke_with_response_stream(FunctionName="sa-py", Payload=json.dumps({"fail": True})))
    assert body == b"one two" and complete["ErrorCode"] == "KeyError"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke_with_response_stream(FunctionName="sa-nope", Payload=b"{}")


def test_boto3_invoke_with_response_stream_python_and_buffered(lam: Any) -> None:
    body, complete = _events(lam.invoke_with_response_stream(FunctionName="sa-py", Payload=b"{}"))
    assert body == b"one two" and complete == {}
    resp = lam.invoke_with_response_stream(FunctionName="sa-plain", Payload=b"{}")
    body, complete = _events(resp)
    assert json.loads(body) == {"answer": 42} and complete == {}
