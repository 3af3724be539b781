"""Vendor flavors through a real server: explicit events (CLI --event, API ?event=, structured CloudEvents),
real Flask / azure.functions inside forked instances, binary bodies over HTTP, and bad input that names
the vendor convention."""

from __future__ import annotations

import json

from .conftest import Server, error_code

ECHO_AWS = "def lambda_handler(event, context):\n    return event\n"


def test_cli_event_s3_put_reaches_aws_as_records(server: Server) -> None:
    server.deploy("ev-aws", {"lambda_function.py": ECHO_AWS})
    r = server.cli("invoke", "ev-aws", "--event", "s3:put", "--data", '{"bucket": "b", "key": "k"}', check=True)
    rec = json.loads(r.stdout)["Records"][0]
    assert rec["eventSource"] == "aws:s3" and rec["s3"]["bucket"]["name"] == "b" and rec["s3"]["object"]["key"] == "k"
    r = server.cli("invoke", "ev-aws", "--event", "sqs", "--data", '{"body": "hi"}', check=True)
    assert json.loads(r.stdout)["Records"][0]["body"] == "hi"
    r = server.cli("invoke", "ev-aws", "--event", "cron", check=True)
    assert json.loads(r.stdout)["detail-type"] == "Scheduled Event"
    r = server.cli("invoke", "ev-aws", "--event", "logs", "--data", '{"message": "line"}', check=True)
    assert set(json.loads(r.stdout)) == {"awslogs"}
    bad = server.cli("invoke", "ev-aws", "--event", "nope")
    assert bad.returncode == 2 and "s3:put" in bad.stderr


def test_same_event_kind_shaped_per_flavor(server: Server) -> None:
    server.deploy("ev-ali", {"index.py": "import json\ndef handler(event, context):\n    return json.loads(event)\n"})
    server.deploy("ev-tc", {"index.py": "def main_handler(event, context):\n    return event\n"})
    r = server.api.post("/v1/functions/ev-ali/invoke", params={"event": "s3:put"}, json={"bucket": "b", "key": "k"})
    assert r.status_code == 200 and r.json()["events"][0]["eventSource"] == "acs:oss"
    r = server.api.post("/v1/functions/ev-tc/invoke", params={"event": "timer"}, json="payload")
    assert r.json() == {"Type": "Timer", "TriggerName": "timer", "Time": r.json()["Time"], "Message": "payload"}
    r = server.api.post("/v1/functions/ev-tc/invoke", params={"event": "bogus"}, json={})
    assert r.status_code == 400 and error_code(r) == "unknown_event_kind"


def test_structured_cloudevent_body(server: Server) -> None:
    server.deploy("ev-native", {"handler.py": "def handler(event, context):\n    return event\n"})
    ce = {"specversion": "1.0", "id": "1", "source": "s", "type": "com.example.t", "data": {"x": 1}}
    r = server.api.post("/v1/functions/ev-native/invoke", content=json.dumps(ce),
                        headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 200 and r.json()["type"] == "com.example.t" and r.json()["data"] == {"x": 1}
    r = server.api.post("/v1/functions/ev-native/invoke", content=b'{"id": 1}',
                        headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 400 and error_code(r) == "invalid_cloudevent"


def test_gcp_flask_and_binary_roundtrip(server: Server) -> None:
    src = ("import flask\nimport functions_framework\n\n@functions_framework.http\ndef echo(request):\n"
           "    if request.args.get('json'):\n        return flask.jsonify(n=len(request.get_data()))\n"
           "    return flask.Response(request.get_data()[::-1], mimetype='application/octet-stream')\n")
    info = server.deploy("gcp-echo", {"main.py": src})
    assert info["spec"]["flavor"] == "gcp" and info["detected"]["handler"] == "main.echo"
    data = bytes(range(256)) * 4
    r = server.http.post("/fn/gcp-echo", content=data, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200 and r.content == data[::-1]
    assert server.http.post("/fn/gcp-echo?json=1", content=b"abc").json() == {"n": 3}


def test_gcp_legacy_function_over_http(server: Server) -> None:
    """A background function `def f(data, context)` over HTTP: a legacy event answers OK; a request that is no
    event answers 400 saying what was expected (not a crash)."""
    src = ("def on_event(data, context):\n"
           "    print('got', data, context.event_type)\n")
    server.deploy("gcp-legacy", {"main.py": src}, flavor="gcp", handler="main.on_event")
    event = {"data": {"n": 1}, "context": {"eventId": "1", "timestamp": "2024-01-01T00:00:00Z",
                                           "eventType": "google.pubsub.topic.publish",
                                           "resource": "projects/p/topics/t"}}
    r = server.http.post("/fn/gcp-legacy", json=event)
    assert r.status_code == 200 and r.text == "OK", r.text
    r = server.http.post("/fn/gcp-legacy", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 400 and "background function" in r.text and "x-google-status" not in r.headers


def test_aws_http_payload_v2_and_binary(server: Server) -> None:
    src = ("import base64\ndef lambda_handler(event, context):\n"
           "    raw = base64.b64decode(event['body']) if event['isBase64Encoded'] else event['body'].encode()\n"
           "    return {'statusCode': 200, 'headers': {'content-type': 'application/octet-stream'},\n"
           "            'body': base64.b64encode(raw[::-1]).decode(), 'isBase64Encoded': True,\n"
           "            'cookies': ['v=' + event['version']]}\n")
    server.deploy("aws-v2", {"lambda_function.py": src}, env={"POLYFN_AWS_HTTP_PAYLOAD": "2.0"})
    data = bytes(range(256))
    r = server.http.post("/fn/aws-v2", content=data, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200 and r.content == data[::-1] and r.headers["set-cookie"] == "v=2.0"


def test_azure_v2_app(server: Server) -> None:
    src = ("import azure.functions as func\napp = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)\n\n"
           "@app.route(route='hello/{name}')\ndef hello(req: func.HttpRequest) -> func.HttpResponse:\n"
           "    return func.HttpResponse(f\"Hello, {req.route_params['name']}\", status_code=201)\n")
    info = server.deploy("az-app", {"function_app.py": src})
    assert info["spec"]["flavor"] == "azure" and info["spec"]["handler"] == "function_app.app"
    r = server.http.get("/fn/az-app/api/hello/polyfn")
    assert r.status_code == 201 and r.text == "Hello, polyfn"


def test_wrong_arity_is_a_deploy_error_naming_the_convention(server: Server) -> None:
    r = server.api.post("/v1/functions", json={"name": "bad-arity", "flavor": "aws", "handler": "app.go",
                                                "files": {"app.py": "def go(event):\n    return 1\n"}})
    assert r.status_code == 400 and error_code(r) == "handler_signature"
    assert "AWS Lambda `def handler(event, context)`" in r.json()["error"]["message"]


def test_runtime_signature_error_names_the_convention(server: Server) -> None:
    # defined dynamically, so only the instance can tell: a typed init error on the first call
    src = "def _make():\n    def h(only):\n        return 1\n    return h\n\nmain_handler = _make()\n"
    server.deploy("bad-tc", {"index.py": src}, flavor="tencent", handler="index.main_handler")
    r = server.http.get("/fn/bad-tc")
    assert r.status_code == 502 and error_code(r) == "function_init_failed"
    body = r.json()["error"]
    assert body["errorType"] == "Runtime.HandlerSignature" and "Tencent SCF" in body["message"]


def test_handler_error_inside_gcp_function(server: Server) -> None:
    server.deploy("gcp-crash", {"main.py": "def f(request):\n    raise ValueError('no')\n"})
    r = server.http.get("/fn/gcp-crash")
    assert r.status_code == 500 and r.headers["x-google-status"] == "crash"
    assert r.json()["errorType"] == "ValueError"


def test_detection_is_reported_by_the_cli(server: Server, tmp_path) -> None:
    (tmp_path / "index.py").write_text("def main_handler(event, context):\n    return 'ok'\n")
    r = server.cli("deploy", str(tmp_path), "--name", "tc-detect", check=True)
    assert "detected: runtime=python, flavor=tencent, handler=index.main_handler" in r.stdout
    assert "Tencent SCF" in r.stdout


def test_missing_handler_names_the_convention(server: Server) -> None:
    r = server.api.post("/v1/functions", json={"name": "no-handler", "flavor": "tencent", "handler": "index.main_handler",
                                                "files": {"index.py": "def other(event, context):\n    pass\n"}})
    assert r.status_code == 400 and error_code(r) == "handler_not_found"
    assert "Tencent SCF `def main_handler(event, context)`" in r.json()["error"]["message"]
    # only the instance can tell for a module that builds its names at import: typed init error
    server.deploy("late-missing", {"index.py": "if True:\n    pass\n"}, flavor="aws", handler="index.lambda_handler")
    r = server.http.get("/fn/late-missing")
    assert r.status_code == 502 and r.json()["error"]["errorType"] == "Runtime.HandlerNotFound"
    assert "AWS Lambda `def handler(event, context)`" in r.json()["error"]["message"]


def test_import_error_is_typed(server: Server) -> None:
    server.deploy("bad-import", {"lambda_function.py": "import not_a_module_xyz\n\n"
                                 "def lambda_handler(event, context):\n    return 1\n"})
    r = server.http.get("/fn/bad-import")
    assert r.status_code == 502 and r.json()["error"]["errorType"] == "Runtime.ImportModuleError"
    assert "not_a_module_xyz" in r.json()["error"]["message"]


def test_vendor_libraries_are_preloaded_by_the_zygote(server: Server) -> None:
    src = ("import sys\nAT_IMPORT = [m for m in ('flask', 'functions_framework', 'azure.functions') if m in sys.modules]\n\n"
           "def handler(event, context):\n    return AT_IMPORT\n")
    server.deploy("preloaded", {"handler.py": src})
    r = server.api.post("/v1/functions/preloaded/invoke", json={})
    assert r.status_code == 200 and r.json() == ["flask", "functions_framework", "azure.functions"]


def test_non_latin1_paths_reach_wsgi_functions_as_wsgi_expects(server: Server) -> None:
    """A percent-encoded path beyond latin-1 (`/caf%C3%A9/%E2%82%AC`) reaches Flask (gcp) and an Aliyun WSGI
    handler as PEP 3333 has it: PATH_INFO holds the UTF-8 bytes as latin-1 (before: the decoded text, on which
    werkzeug failed with a 500)."""
    server.deploy("gcp-path", {"main.py": "import functions_framework\n\n@functions_framework.http\n"
                                          "def f(request):\n    return request.path\n"})
    r = server.http.get("/fn/gcp-path/caf%C3%A9/%E2%82%AC")
    assert r.status_code == 200 and r.text == "/café/€", r.text
    server.deploy("fc-path", {"index.py": "def handler(environ, start_response):\n"
                                          "    path = environ['PATH_INFO'].encode('latin-1').decode('utf-8')\n"
                                          "    start_response('200 OK', [('content-type', 'text/plain')])\n"
                                          "    return [(path + ' ' + environ['fc.request_uri']).encode()]\n"},
                  flavor="aliyun")
    r = server.http.get("/fn/fc-path/caf%C3%A9/%E2%82%AC?x=1")
    assert r.status_code == 200 and r.text == "/café/€ /caf%C3%A9/%E2%82%AC?x=1", r.text
