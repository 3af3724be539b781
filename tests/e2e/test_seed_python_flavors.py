"""The seed's Python samples for AWS, GCP, Alibaba and Kubeless, deployed unmodified through the CLI, with
flavor and handler detected from the code, answering as their vendors' platforms would."""

from __future__ import annotations

import json

from .conftest import REPO, Server, start_server, wait_until


def test_aws_lambda_handler(server: Server) -> None:
    r = server.cli("deploy", str(REPO / "examples/seed/aws-lambda-reverse"), "--name", "lambda-reverse", check=True)
    assert "flavor aws" in r.stdout and "lambda_function.lambda_handler" in r.stdout
    r = server.cli("invoke", "lambda-reverse", "--data", '{"message": "hello"}', check=True)
    assert json.loads(r.stdout) == {"message": "olleh"}
    # over HTTP it gets an API Gateway event, which has no 'message': Lambda's error shape, as on AWS
    resp = server.http.post("/fn/lambda-reverse", json={"message": "hello"})
    assert resp.status_code == 500 and resp.headers["x-polyfn-function-error"] == "Unhandled"
    err = resp.json()
    assert err["errorType"] == "KeyError" and err["errorMessage"] == "'message'" and err["requestId"]
    assert any("lambda_function.py" in line for line in err["stackTrace"])


def test_gcp_hello_http(server: Server) -> None:
    r = server.cli("deploy", str(REPO / "examples/seed/gcp-hello-http"), "--name", "hello-http", check=True)
    assert "flavor gcp" in r.stdout and "main.hello_http" in r.stdout
    resp = server.http.get("/fn/hello-http")
    assert resp.status_code == 200 and resp.text == "Hello World!"
    assert resp.headers["content-type"].startswith("text/html")  # Flask's make_response default


def test_aliyun_handler_prints_hello_world(server: Server) -> None:
    r = server.cli("deploy", str(REPO / "examples/seed/aliyun-python-hello"), "--name", "aliyun-hello", check=True)
    assert "flavor aliyun" in r.stdout and "index.handler" in r.stdout
    resp = server.http.get("/fn/aliyun-hello")
    assert resp.status_code == 200 and resp.text == "hello world"
    act = server.activation(resp.headers["x-polyfn-activation-id"])
    assert ["stdout", "hello world"] in [[ln[1], ln[2]] for ln in act["logs"]]
    r = server.cli("invoke", "aliyun-hello", "--data", "{}", check=True)
    assert r.stdout == "hello world"


def test_kubeless_reverse(server: Server) -> None:
    r = server.cli("deploy", str(REPO / "examples/seed/kubeless-reverse"), "--name", "kubeless-reverse", check=True)
    assert "flavor kubeless" in r.stdout and "reverse.reverse" in r.stdout
    resp = server.http.post("/fn/kubeless-reverse", content=b"hello")  # curl -d hello
    assert resp.status_code == 200 and resp.text == "olleh"
    r = server.cli("invoke", "kubeless-reverse", "--data", '"hello"', check=True)
    assert r.stdout == "olleh"


def test_examples_flag_serves_the_python_seed_samples(tmp_path) -> None:
    s = start_server(tmp_path / "d", "--examples")
    try:
        # examples deploy in the background once the node serves (a Go build must not hold up /healthz)
        assert wait_until(lambda: {f["name"] for f in s.api.get("/v1/functions").json()["functions"]} >= set(("hello-http", "aliyun-hello", "kubeless-reverse", "lambda-reverse")),
                          timeout=120), s.log.read_text()[-3000:]
        assert s.http.get("/fn/hello-http").text == "Hello World!"
        assert s.http.get("/fn/aliyun-hello").text == "hello world"
        assert s.http.post("/fn/kubeless-reverse", content=b"hello").text == "olleh"
        r = s.api.post("/v1/functions/lambda-reverse/invoke", json={"message": "abc"})
        assert r.json() == {"message": "cba"}
        flavors = {f["name"]: f["spec"]["flavor"] for f in s.api.get("/v1/functions").json()["functions"]}
        assert {k: flavors.get(k) for k in ("hello-http", "aliyun-hello", "kubeless-reverse", "lambda-reverse")} == {
            "hello-http": "gcp", "aliyun-hello": "aliyun", "kubeless-reverse": "kubeless", "lambda-reverse": "aws"}
    finally:
        s.stop()
