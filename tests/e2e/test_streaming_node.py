"""Streamed responses in the Node.js flavors beyond `aws` and `azure` (issue #22): `native` streams what its
handler returns when that is an async generator, a Readable or any async iterable (or a `{statusCode, headers,
body: stream}` result), as Python's generators; `gcp` streams Express's own way, `res.write()` chunks flushed as
written. Chunks are asserted to arrive while the function still waits for a file the test writes (no timings)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .conftest import Server
from .streams import assert_broken_off, assert_told_when_the_client_goes

pytestmark = pytest.mark.skipif(shutil.which("node") is None and os.environ.get("CI") != "true",
                                reason="Node.js is not installed")

HOST_FS = True  # the functions below wait for a file the test writes in the host's /tmp

NATIVE = '''const fs = require('fs');
const { Readable } = require('stream');

const until = async (file) => { while (!fs.existsSync(file)) await new Promise((r) => setTimeout(r, 10)); };

exports.handler = async (req, context) => {
  const q = req.query || req; // (an event: the invoke API's JSON payload)
  if (q.mode === 'readable') {
    return { statusCode: 201, headers: { 'content-type': 'text/csv', 'x-made-by': 'readable' },
      body: Readable.from(['a,b\\n', Buffer.from('1,2\\n')]) };
  }
  if (q.mode === 'fail') {
    return (async function* () { yield 'partial '; throw new TypeError('bad row'); })();
  }
  if (q.mode === 'forever') {
    return (async function* () {
      try {
        for (let i = 0; ; i++) { yield `tick ${i}\\n`; await new Promise((r) => setTimeout(r, 10)); }
      } finally { console.log('told: generator returned'); }
    })();
  }
  return (async function* () { yield 'first\\n'; await until(q.go); yield 'second\\n'; })();
};
'''

GCP = '''const fs = require('fs');
const functions = require('@google-cloud/functions-framework');
const { Readable } = require('stream');

const until = async (file) => { while (!fs.existsSync(file)) await new Promise((r) => setTimeout(r, 10)); };

functions.http('ticker', async (req, res) => {
  if (req.query.mode === 'fail') {
    res.write('partial ');
    throw new TypeError('bad row');
  }
  if (req.query.mode === 'pipe') {  // GCF's way to send a file: readable.pipe(res)
    res.set('content-type', 'text/plain');
    Readable.from((function* () { for (let i = 0; i < 2000; i++) yield `line ${i} ${'x'.repeat(200)}\n`; })()).pipe(res);
    return;
  }
  if (req.query.mode === 'forever') {
    res.on('close', () => console.log('told: res closed'));
    for (let i = 0; !res.destroyed; i++) { res.write(`tick ${i}\\n`); await new Promise((r) => setTimeout(r, 10)); }
    return;
  }
  res.set('content-type', 'text/event-stream');
  res.status(200);
  res.write('data: first\\n\\n');
  await until(req.query.go);
  res.write('data: second\\n\\n');
  res.end('data: end\\n\\n');
});
'''


@pytest.fixture(scope="module")
def fns(server: Server) -> Server:
    server.deploy("sn-native", {"index.js": NATIVE}, runtime="node", flavor="native", handler="index.handler")
    server.deploy("sn-gcp", {"index.js": GCP}, runtime="node", flavor="gcp", handler="index.ticker")
    return server


@contextmanager
def go_file() -> Iterator[str]:
    go = f"/tmp/polyfn-stream-go-{uuid.uuid4().hex}"
    try:
        yield go
    finally:
        if os.path.exists(go):
            os.unlink(go)


def test_native_async_generator_chunks_arrive_as_yielded(fns: Server) -> None:
    with go_file() as go, fns.http.stream("GET", "/fn/sn-native", params={"go": go}) as r:
        assert r.headers["content-type"] == "application/octet-stream" and r.headers["transfer-encoding"] == "chunked"
        lines = r.iter_lines()
        assert next(lines) == "first"  # the generator still waits for the file
        Path(go).touch()
        assert next(lines) == "second"
        assert list(lines) == []
    act = fns.activation(r.headers["x-polyfn-activation-id"])
    assert act["status"] == "success" and act["stream"]["chunks"] == 2 and act["stream"]["end"] == "complete"


def test_native_status_headers_and_readable_body(fns: Server) -> None:
    with fns.http.stream("GET", "/fn/sn-native?mode=readable") as r:
        assert r.status_code == 201 and r.headers["content-type"] == "text/csv" and r.headers["x-made-by"] == "readable"
        assert r.read() == b"a,b\n1,2\n"


def test_native_error_mid_stream_breaks_the_response_off(fns: Server) -> None:
    assert_broken_off(fns, "/fn/sn-native?mode=fail", "TypeError")


def test_native_generator_is_returned_when_the_client_goes(fns: Server) -> None:
    assert_told_when_the_client_goes(fns, "/fn/sn-native?mode=forever", "told: generator returned")


def test_gcp_res_write_chunks_arrive_as_written(fns: Server) -> None:
    with go_file() as go, fns.http.stream("GET", "/fn/sn-gcp", params={"go": go}) as r:
        assert r.headers["content-type"] == "text/event-stream" and r.headers["transfer-encoding"] == "chunked"
        lines = r.iter_lines()
        assert next(lines) == "data: first"  # the function still waits for the file
        Path(go).touch()
        assert [next(lines), next(lines), next(lines), next(lines)] == ["", "data: second", "", "data: end"]
        assert list(lines) == [""]  # read to the end: a client that leaves first makes the stream `disconnected`
    act = fns.activation(r.headers["x-polyfn-activation-id"])
    assert act["status"] == "success" and act["stream"]["chunks"] == 3


def test_gcp_readable_pipe_res(fns: Server) -> None:
    with fns.http.stream("GET", "/fn/sn-gcp?mode=pipe") as r:
        assert r.headers["content-type"] == "text/plain"
        lines = list(r.iter_lines())
    assert len(lines) == 2000 and lines[0].startswith("line 0 ") and lines[-1].startswith("line 1999 ")
    act = fns.activation(r.headers["x-polyfn-activation-id"])
    assert act["status"] == "success" and act["stream"]["chunks"] == 2000


def test_gcp_error_after_a_write_breaks_the_response_off(fns: Server) -> None:
    assert_broken_off(fns, "/fn/sn-gcp?mode=fail", "TypeError")


def test_gcp_res_closes_when_the_client_goes(fns: Server) -> None:
    assert_told_when_the_client_goes(fns, "/fn/sn-gcp?mode=forever", "told: res closed")


def test_buffered_callers_get_the_whole_body(fns: Server) -> None:
    with go_file() as go:
        Path(go).touch()
        r = fns.http.get("/fn/sn-gcp", params={"go": go})
        assert r.text == "data: first\n\ndata: second\n\ndata: end\n\n"
        r = fns.api.post("/v1/functions/sn-native/invoke", json={"mode": "readable"})
        assert r.content == b"a,b\n1,2\n", r.text  # (the invoke API answers with the function's status: 201)
