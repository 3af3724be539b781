"""Streamed responses from Python functions (issue #22, docs/streaming.md): a generator's chunks reach the client
as they are yielded, through the real gateway, in chunked transfer encoding; SSE; the function is told when the
client goes; errors mid-stream end with a marker; the idle timeout; the activation keeps size and time to first
byte; a caller that cannot stream gets the whole body."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import httpx
import pytest

from .conftest import Server, error_code, wait_until
from .streams import leave_after, recorded

HOST_FS = True  # the functions below wait for files the test writes in the host's /tmp

WAITS_FOR_GO = '''import os, time

def handler(event, context):
    go = event["go"]
    def chunks():
        yield "first\\n"
        for _ in range(6000):  # (60 s at most: a buffered gateway would hold "first" that long)
            if os.path.exists(go):
                break
            time.sleep(0.01)
        yield b"second\\n"
    return chunks()
'''

SSE = '''from polyfn_stream import sse, event

def handler(event_, context):
    def ticks():
        print("ticking")
        for i in range(3):
            yield event({"n": i}, id=str(i))
        yield event("two\\nlines", event="note")
        if event_.get("fail"):
            raise ValueError("broke mid-stream")
    return sse(ticks())
'''

TOLD = '''import time

def handler(event, context):
    def chunks():
        try:
            for i in range(100000):
                yield f"chunk {i}\\n"
                time.sleep(0.01)
        except GeneratorExit:
            print("told: the client went")
            raise
    return chunks(), 200, {"content-type": "text/plain"}
'''

ASYNC_TOLD = '''import asyncio

async def handler(event, context):
    async def chunks():
        try:
            for i in range(100000):
                yield f"tick {i}\\n"
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            print("told: cancelled")
            raise
    return chunks()
'''

IDLE = '''import time
from polyfn_stream import sse, event

def handler(event_, context):
    def chunks():
        yield event("hello")
        time.sleep(30)
        yield event("never")
    return sse(chunks())
'''

BROKEN_BYTES = '''def handler(event, context):
    def chunks():
        yield b"x" * 1000
        raise RuntimeError("disk on fire")
    return chunks()
'''

AWS = '''def handler(event, context):
    def body():
        yield "a,"
        yield "b"
    return {"statusCode": 201, "headers": {"content-type": "text/csv", "x-kind": "stream"}, "body": body()}
'''


GCP = '''import functions_framework
from flask import Response, request, stream_with_context


@functions_framework.http
def rows(req):
    def generate():
        for i in range(int(request.args.get("n", "3"))):  # (the request, inside the stream: stream_with_context)
            yield f"row {i}\\n"
    return Response(stream_with_context(generate()), mimetype="text/plain", headers={"x-flask": "yes"})
'''

OPENFAAS_HTTP = '''def handle(event, context):
    def body():
        yield "streamed "
        yield "body"
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": body()}
'''


@pytest.fixture(scope="module")
def fns(server: Server) -> Server:
    server.deploy("st-go", {"handler.py": WAITS_FOR_GO})
    server.deploy("st-sse", {"handler.py": SSE})
    server.deploy("st-told", {"handler.py": TOLD})
    server.deploy("st-told-threads", {"handler.py": TOLD}, concurrency=2)  # (sync generator stepped in threads)
    server.deploy("st-long", {"handler.py": TOLD}, stream_max_duration=1)
    server.deploy("st-async", {"handler.py": ASYNC_TOLD}, concurrency=4)
    server.deploy("st-idle", {"handler.py": IDLE}, stream_idle_timeout=1)
    server.deploy("st-quiet", {"handler.py": IDLE})  # (the default idle timeout: 60 s)
    server.deploy("st-broken", {"handler.py": BROKEN_BYTES})
    server.deploy("st-aws", {"handler.py": AWS}, flavor="aws")
    server.deploy("st-gcp", {"main.py": GCP}, flavor="gcp", handler="main.rows")
    server.deploy("st-ofhttp", {"handler.py": OPENFAAS_HTTP}, flavor="openfaas-http", handler="handler.handle")
    return server


def test_chunks_reach_the_client_as_they_are_yielded(fns: Server) -> None:
    go = f"/tmp/polyfn-stream-go-{uuid.uuid4().hex}"
    try:
        with fns.http.stream("POST", "/fn/st-go", json={"go": go}) as r:
            assert r.status_code == 200
            assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
            assert r.headers["content-type"] == "application/octet-stream"
            lines = r.iter_lines()
            assert next(lines) == "first"  # before the function has finished: it waits for the file below
            Path(go).touch()
            assert next(lines) == "second"
            assert list(lines) == []  # the end (after the function's Result: the activation is recorded)
            aid = r.headers["x-polyfn-activation-id"]
    finally:
        if os.path.exists(go):
            os.unlink(go)
    act = fns.activation(aid)
    assert act["status"] == "success" and act["status_code"] == 200
    assert act["stream"]["bytes"] == len("first\nsecond\n") and act["stream"]["chunks"] == 2
    assert act["stream"]["end"] == "complete"
    assert 0 < act["stream"]["ttfb_ms"] <= act["duration_ms"]


def test_server_sent_events(fns: Server) -> None:
    with fns.http.stream("GET", "/fn/st-sse") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        text = r.read().decode()
    assert text == ('id: 0\ndata: {"n":0}\n\nid: 1\ndata: {"n":1}\n\nid: 2\ndata: {"n":2}\n\n'
                    'event: note\ndata: two\ndata: lines\n\n')
    act = fns.activation(r.headers["x-polyfn-activation-id"])
    assert act["stream"]["chunks"] == 4 and any("ticking" in ln[2] for ln in act["logs"])


def test_an_exception_mid_stream_ends_sse_with_an_error_event(fns: Server) -> None:
    with fns.http.stream("POST", "/fn/st-sse", json={"fail": True}) as r:
        text = r.read().decode()
    events = text.strip().split("\n\n")
    assert events[-1].startswith("event: error\ndata: ")
    err = json.loads(events[-1].split("data: ", 1)[1])
    assert err["errorType"] == "ValueError" and err["errorMessage"] == "broke mid-stream"
    assert len(events) == 5  # the four events sent before it are all there
    act = fns.activation(r.headers["x-polyfn-activation-id"])
    assert act["status"] == "error" and act["stream"]["end"] == "error"
    assert act["error"]["errorType"] == "ValueError"


def test_an_exception_mid_stream_of_bytes_breaks_the_response_off(fns: Server) -> None:
    with fns.http.stream("GET", "/fn/st-broken") as r:
        assert r.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            r.read()  # incomplete chunked body: never a complete-looking one
    aid = r.headers["x-polyfn-activation-id"]
    assert wait_until(lambda: recorded(fns, aid) is not None)
    assert fns.activation(aid)["error"]["errorMessage"] == "disk on fire"
    assert fns.http.get("/healthz").status_code == 200


@pytest.mark.parametrize("name, told", [("st-told", "told: the client went"), ("st-async", "told: cancelled"),
                                        ("st-told-threads", "told: the client went")])
def test_the_function_is_told_when_the_client_goes(fns: Server, name: str, told: str) -> None:
    aid = leave_after(fns, f"/fn/{name}", b" 3\n")
    assert wait_until(lambda: recorded(fns, aid) is not None, timeout=20)
    act = fns.activation(aid)
    assert act["status"] == "disconnected" and act["stream"]["end"] == "client_disconnected"
    assert any(told in ln[2] for ln in act["logs"]), act["logs"]
    # the instance was not killed: it serves the next call
    with fns.http.stream("GET", f"/fn/{name}") as r:
        assert next(r.iter_lines()).endswith(" 0")


def test_a_stream_that_stops_writing_ends_at_its_idle_timeout(fns: Server) -> None:
    with fns.http.stream("GET", "/fn/st-idle") as r:
        text = r.read().decode()
    assert text.startswith("data: hello\n\n")
    err = json.loads(text.strip().split("\n\n")[-1].split("data: ", 1)[1])
    assert err["code"] == "stream_idle_timeout" and "stream_idle_timeout" in err["message"]
    aid = r.headers["x-polyfn-activation-id"]
    assert wait_until(lambda: recorded(fns, aid) is not None, timeout=20)
    act = fns.activation(aid)
    assert act["status"] == "timeout" and act["stream"]["end"] == "idle_timeout"


def test_a_stream_past_its_max_duration_is_stopped(fns: Server) -> None:
    with fns.http.stream("GET", "/fn/st-long") as r:
        assert r.headers["content-type"] == "text/plain"
        with pytest.raises(httpx.RemoteProtocolError):  # not SSE: broken off, never a complete-looking body
            r.read()
    aid = r.headers["x-polyfn-activation-id"]
    assert wait_until(lambda: recorded(fns, aid) is not None, timeout=20)
    act = fns.activation(aid)
    assert act["status"] == "timeout" and act["stream"]["end"] == "max_duration"
    assert act["error"]["code"] == "stream_too_long" and any("told" in ln[2] for ln in act["logs"])


def test_polyfn_cancel_stops_a_stream(fns: Server) -> None:
    with fns.http.stream("GET", "/fn/st-quiet") as r:  # (writes once, then nothing for 30 s)
        lines = r.iter_lines()
        assert next(lines) == "data: hello"
        aid = r.headers["x-polyfn-activation-id"]
        assert fns.cli("cancel", aid).returncode == 0
        rest = "\n".join(lines)
    assert "event: error" in rest and '"code":"function_cancelled"' in rest
    assert wait_until(lambda: recorded(fns, aid) is not None, timeout=20)
    assert fns.activation(aid)["status"] == "cancelled"


def test_aws_flavor_streams_a_generator_body(fns: Server) -> None:
    r = fns.http.get("/fn/st-aws")
    assert r.status_code == 201 and r.text == "a,b"
    assert r.headers["content-type"] == "text/csv" and r.headers["x-kind"] == "stream"
    assert r.headers["transfer-encoding"] == "chunked"


def test_gcp_flask_streams_a_generator_response(fns: Server) -> None:
    with fns.http.stream("GET", "/fn/st-gcp?n=4") as r:
        assert r.status_code == 200 and r.headers["transfer-encoding"] == "chunked"
        assert r.headers["content-type"].startswith("text/plain") and r.headers["x-flask"] == "yes"
        assert r.read() == b"row 0\nrow 1\nrow 2\nrow 3\n"
    assert fns.activation(r.headers["x-polyfn-activation-id"])["stream"]["chunks"] == 4


def test_openfaas_http_streams_a_generator_body(fns: Server) -> None:
    r = fns.http.get("/fn/st-ofhttp")
    assert r.text == "streamed body" and r.headers["transfer-encoding"] == "chunked"


def test_a_caller_that_cannot_stream_gets_the_whole_body(fns: Server) -> None:
    r = fns.api.post("/v1/functions/st-sse/invoke", json={})
    assert r.status_code == 200 and r.text.count("data: ") == 5
    broken = fns.api.post("/v1/functions/st-sse/invoke", json={"fail": True})
    assert broken.status_code == 500 and broken.json()["errorType"] == "ValueError"
    idle = fns.api.post("/v1/functions/st-idle/invoke", json={})
    assert idle.status_code == 504 and error_code(idle) == "stream_idle_timeout"


def test_stream_limits_are_validated(fns: Server) -> None:
    r = fns.api.post("/v1/functions", json={"name": "st-bad", "files": {"handler.py": AWS}, "stream_idle_timeout": 0})
    assert r.status_code == 400 and "stream_idle_timeout" in r.text


def test_cli_invoke_stream_prints_chunks_as_they_arrive(fns: Server) -> None:
    import subprocess
    import sys

    from .conftest import REPO

    go = f"/tmp/polyfn-stream-go-{uuid.uuid4().hex}"
    env = {**os.environ, "POLYFN_DATA_DIR": str(fns.data_dir), "NO_COLOR": "1"}
    env.pop("POLYFN_URL", None)
    env.pop("POLYFN_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "polyfn", "invoke", "st-go", "--stream", "--data", json.dumps({"go": go})],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"first\n"  # printed while the function still waits for the file
        Path(go).touch()
        assert proc.stdout.readline() == b"second\n"
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        if os.path.exists(go):
            os.unlink(go)


def test_cli_invoke_stream_reports_a_broken_stream(fns: Server) -> None:
    r = fns.cli("invoke", "st-broken", "--stream")
    assert r.returncode != 0 and "broke off" in r.stderr, r.stderr
    r = fns.cli("invoke", "st-sse", "--stream", "--data", '{"fail": true}')
    assert "event: error" in r.stdout
    r = fns.cli("invoke", "st-nope", "--stream")
    assert r.returncode != 0 and "function_not_found" in r.stderr
