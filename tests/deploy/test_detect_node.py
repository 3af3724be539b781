"""Detection of Node.js conventions and plain HTTP servers, table-driven over real vendor code shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfn.deploy import detect_node
from polyfn.deploy.errors import DeployError

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"


def files_of(example: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (SEED / example).iterdir() if p.is_file()}


@pytest.mark.parametrize(("example", "expected"), [
    ("openwhisk-reverse-js", ("node", "openwhisk", "reverse.main")),
    ("serverless-aws-hello-js", ("node", "aws", "handler.hello")),
    ("gcp-helloworld-js", ("node", "gcp", "index.helloWorld")),
    ("azure-hello-js", ("node", "azure", "index.default")),
    ("aliyun-hello-js", ("node", "aliyun", "index.handler")),
    ("tencent-main-js", ("node", "tencent", "index.main")),
    ("tencent-serverless-hello-js", ("node", "tencent", "index.hello")),
    ("knative-reverse-go", ("http", "knative", "@go")),
])
def test_seed_examples(example: str, expected: tuple[str, str, str]) -> None:
    assert detect_node.detect(files_of(example), None, None, None) == expected


@pytest.mark.parametrize(("src", "flavor", "handler"), [
    ("const cloud = require('wx-server-sdk');\nexports.main = async (event, context) => event;", "wechat", "index.main"),
    ("const functions = require('@google-cloud/functions-framework');\nfunctions.http('helloHttp', (req, res) => {});",
     "gcp", "index.helloHttp"),
    ("exports.main_handler = async (event, context) => event;", "tencent", "index.main_handler"),
    ("module.exports = async (event, context) => context.status(200).succeed('x');", "openfaas", "index.default"),
    ("module.exports = { reverse: (event, context) => event.data };", "kubeless", "index.reverse"),
    ("module.exports = {\n  f\n};\nfunction f(event, context) { return 1; }", "kubeless", "index.f"),
    ("exports.handler = async (event, context) => ({ statusCode: 200 });", "aws", "index.handler"),
    ("// exports.handler = 1\nfunction main(args) { return args; }", "openwhisk", "index.main"),
    ("exports.hello = (req, res) => res.send('x');", "gcp", "index.hello"),
    ("module.exports = function (context, req) { context.done(); };", "azure", "index.default"),
    ("const { app } = require('@azure/functions');\napp.http('httpTrigger1', { handler: async () => ({}) });",
     "azure", "index.httpTrigger1"),
])
def test_js_shapes(src: str, flavor: str, handler: str) -> None:
    assert detect_node.detect({"index.js": src.encode()}, None, None, None) == ("node", flavor, handler)


def test_project_files_settle_the_vendor() -> None:
    src = b"exports.handler = function (event, context, callback) { callback(null, 'x'); };"
    assert detect_node.detect({"index.js": src}, None, None, None)[1] == "aws"
    assert detect_node.detect({"index.js": src, "s.yaml": b"edition: 3.0.0"}, None, None, None)[1] == "aliyun"
    assert detect_node.detect({"index.js": src, "serverless.yml": b"component: scf"}, None, None, None)[1] == "tencent"


def test_package_json_main_comes_first() -> None:
    files = {"index.js": b"exports.handler = async () => 1;", "lib.js": b"exports.go = (req, res) => res.send(1);",
             "package.json": b'{"main": "lib.js"}'}
    assert detect_node.detect(files, None, None, None) == ("node", "gcp", "lib.go")


def test_explicit_flavor_and_handler_win() -> None:
    files = {"index.js": b"exports.handler = async () => 1;"}
    assert detect_node.detect(files, None, "aliyun", None) == ("node", "aliyun", "index.handler")
    assert detect_node.detect(files, "node", "aws", "index.other") == ("node", "aws", "index.other")


@pytest.mark.parametrize(("files", "cmd"), [
    ({"main.go": b"package main\nfunc main() {}"}, "@go"),
    ({"server.py": b"import os\nHTTPServer(('', int(os.environ['PORT'])), H).serve_forever()"}, "python3 server.py"),
    ({"app.js": b"require('http').createServer(f).listen(process.env.PORT)"}, "node app.js"),
    ({"Procfile": b"web: ./start --port $PORT\n", "start": b"#!/bin/sh"}, "./start --port $PORT"),
])
def test_http_servers(files: dict[str, bytes], cmd: str) -> None:
    assert detect_node.detect(files, None, None, None) == ("http", "knative", cmd)


def test_unknown_shape_lists_what_was_looked_for() -> None:
    with pytest.raises(DeployError) as e:
        detect_node.detect({"util.js": b"const x = 1;"}, None, None, None)
    msg = str(e.value)
    assert e.value.code == "handler_not_found"
    assert "util.js" in msg and "exports.handler" in msg and "function main(params)" in msg and "$PORT" in msg


def test_flavor_of_the_wrong_runtime_is_an_error() -> None:
    with pytest.raises(DeployError, match=r"does not exist for Node\.js"):
        detect_node.detect({"index.js": b""}, "node", "knative-nope", None)


def test_infer_runtime() -> None:
    assert detect_node.infer_runtime({"a.js": b""}, None) == "node"
    assert detect_node.infer_runtime({"main.go": b"package main"}, None) == "http"
    assert detect_node.infer_runtime({"a.py": b"", "a.js": b""}, None) is None
    assert detect_node.infer_runtime({"a.py": b""}, "wechat") == "node"
    assert detect_node.infer_runtime({"a.py": b""}, "knative") == "http"


def test_check_handler() -> None:
    detect_node.check_handler({"src.js": b"exports.handler = 1"}, "node", "src.handler")
    with pytest.raises(DeployError, match=r"expected index\.js"):
        detect_node.check_handler({"src.js": b""}, "node", "index.handler")
    with pytest.raises(DeployError, match="package main"):
        detect_node.check_handler({"x.py": b""}, "http", "@go")


def test_check_handler_export_must_appear_in_the_file() -> None:
    detect_node.check_handler({"index.js": b"module.exports = { hello };"}, "node", "index.hello")
    detect_node.check_handler({"index.js": b"module.exports = async function () {};"}, "node", "index.default")
    with pytest.raises(DeployError, match="does not define 'hello'") as e:
        detect_node.check_handler({"index.js": b"exports.hello2 = async () => 1; // hello"}, "node", "index.hello")
    assert e.value.code == "handler_not_found"
