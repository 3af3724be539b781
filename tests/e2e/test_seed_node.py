"""The seed's Node.js samples, deployed unmodified through the CLI, called like their vendors call them."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from .conftest import REPO, Server

pytestmark = pytest.mark.skipif(shutil.which("node") is None and os.environ.get("CI") != "true",
                                reason="Node.js is not installed")

SEED = REPO / "examples" / "seed"


def deploy(server: Server, example: str, name: str) -> str:
    r = server.cli("deploy", str(SEED / example), "--name", name, check=True)
    return r.stdout


def test_openwhisk_reverse_js(server: Server) -> None:
    out = deploy(server, "openwhisk-reverse-js", "reverse-js")
    assert "runtime=node" in out and "flavor=openwhisk" in out and "reverse.main" in out
    r = server.http.post("/fn/reverse-js", json={"payload": "hello"})
    assert r.status_code == 200 and r.json() == {"payload": "olleh"}
    assert r.headers["x-polyfn-cold"] == "true"
    r = server.http.get("/fn/reverse-js", params={"payload": "你好 polyfn"})
    assert r.json() == {"payload": "nfylop 好你"}
    assert "x-polyfn-cold" not in r.headers  # the second call is warm
    r = server.cli("invoke", "reverse-js", "--data", '{"payload": "abc"}', check=True)
    assert json.loads(r.stdout) == {"payload": "cba"}
    # No payload: the sample itself throws (params.payload is undefined); OpenWhisk's error shape comes back.
    r = server.http.post("/fn/reverse-js", json={})
    assert r.status_code == 502 and "TypeError" in r.json()["error"]
    act = server.activation(r.headers["x-polyfn-activation-id"])
    assert act["status"] == "error"


def test_serverless_aws_hello(server: Server) -> None:
    out = deploy(server, "serverless-aws-hello-js", "sls-hello")
    assert "flavor=aws" in out and "handler.hello" in out
    r = server.http.get("/fn/sls-hello/path", params={"x": "1"})
    assert r.status_code == 200
    body = r.json()
    assert body["message"] == "Go Serverless v1.0! Your function executed successfully!"
    assert body["input"]["httpMethod"] == "GET" and body["input"]["path"] == "/path"
    assert body["input"]["queryStringParameters"] == {"x": "1"}
    assert r.text.startswith("{\n  \"message\"")  # JSON.stringify(..., null, 2) as written


def test_gcp_hello_world_js(server: Server) -> None:
    out = deploy(server, "gcp-helloworld-js", "hello-gcp-js")
    assert "flavor=gcp" in out and "index.helloWorld" in out
    r = server.http.get("/fn/hello-gcp-js")
    assert r.status_code == 200 and r.text == "Hello, World"
    assert r.headers["content-type"].startswith("text/html")


def test_azure_js(server: Server) -> None:
    out = deploy(server, "azure-hello-js", "hello-azure-js")
    assert "flavor=azure" in out and "index.default" in out
    for method in ("GET", "POST"):
        r = server.http.request(method, "/fn/hello-azure-js")
        assert r.status_code == 200 and r.text == "Hello, World"


def test_aliyun_node_callback(server: Server) -> None:
    out = deploy(server, "aliyun-hello-js", "hello-fc-js")
    assert "flavor=aliyun" in out and "index.handler" in out
    r = server.http.get("/fn/hello-fc-js")
    assert r.status_code == 200 and r.text == "hello world"
    r = server.cli("invoke", "hello-fc-js", "--data", '"x"', check=True)
    assert r.stdout.strip() == "hello world"


def test_tencent_exports_main(server: Server) -> None:
    out = deploy(server, "tencent-main-js", "scf-main")
    assert "flavor=tencent" in out and "index.main" in out
    r = server.cli("invoke", "scf-main", "--data", '{"hello": "scf"}', check=True)
    assert json.loads(r.stdout) == {"hello": "scf"}
    r = server.http.post("/fn/scf-main/p", content=b"body text", headers={"content-type": "text/plain"})
    ev = r.json()
    assert ev["httpMethod"] == "POST" and ev["path"] == "/p" and ev["body"] == "body text"
    assert ev["requestContext"]["requestId"] == r.headers["x-polyfn-activation-id"]


def test_tencent_serverless_hello(server: Server) -> None:
    out = deploy(server, "tencent-serverless-hello-js", "scf-hello")
    assert "flavor=tencent" in out and "index.hello" in out
    r = server.http.get("/fn/scf-hello")
    assert r.status_code == 200 and r.json() == {"message": "Hello, Tencent Cloud!"}
