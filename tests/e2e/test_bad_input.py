"""Every bad input gets a clear 4xx with a stable error code, and nothing is lost."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from typing import Any

import httpx
import pytest

from .conftest import Server, error_code

OK = "def handler(event, context):\n    return 'ok'\n"


@pytest.mark.parametrize("name", ["Bad_Name", "-x", "a" * 64, "x y", "../etc", ""])
def test_invalid_function_names(server: Server, name: str) -> None:
    r = server.api.post("/v1/functions", json={"name": name, "files": {"handler.py": OK}})
    assert r.status_code == 400
    assert error_code(r) == "invalid_name"


def test_missing_handler_module(server: Server) -> None:
    r = server.api.post("/v1/functions", json={"name": "nomod", "handler": "missing.handler",
                                                "files": {"handler.py": OK}})
    assert r.status_code == 400 and error_code(r) == "module_not_found"
    assert "missing.py" in r.json()["error"]["message"]


def test_missing_handler_function(server: Server) -> None:
    r = server.api.post("/v1/functions", json={"name": "nofunc", "handler": "handler.nope",
                                                "files": {"handler.py": OK}})
    assert r.status_code == 400 and error_code(r) == "handler_not_found"
    assert "'nope'" in r.json()["error"]["message"]


def test_undetectable_handler(server: Server) -> None:
    r = server.api.post("/v1/functions", json={"name": "nodetect", "files": {"util.py": "X = 1\n"}})
    assert r.status_code == 400 and error_code(r) == "handler_not_found"
    assert "--handler" in r.json()["error"]["message"]


def test_syntax_error_reports_file_and_line(server: Server) -> None:
    r = server.api.post("/v1/functions", json={"name": "syntax", "files": {
        "handler.py": OK, "lib/util.py": "x = 1\n\ndef broken(:\n    pass\n"}, "handler": "handler.handler"})
    assert r.status_code == 400 and error_code(r) == "syntax_error"
    assert r.json()["error"]["message"].startswith("lib/util.py:3")


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def _deploy_zip(server: Server, name: str, data: bytes) -> httpx.Response:
    return server.api.post("/v1/functions", data={"spec": f'{{"name": "{name}"}}'},
                           files={"code": ("code.zip", data, "application/zip")})


@pytest.mark.parametrize("path", ["../evil.py", "/etc/evil.py", "a/../../evil.py"])
def test_zip_slip_rejected(server: Server, path: str, tmp_path) -> None:
    r = _deploy_zip(server, "zipslip", _zip([("handler.py", OK.encode()), (path, b"x = 1\n")]))
    assert r.status_code == 400 and error_code(r) == "unsafe_path"
    assert not (server.data_dir / "evil.py").exists()


def test_symlink_in_zip_rejected(server: Server) -> None:
    link = zipfile.ZipInfo("secret.py")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    r = _deploy_zip(server, "zipsym", _zip([("handler.py", OK.encode()), (link, b"/etc/shadow")]))
    assert r.status_code == 400 and error_code(r) == "unsafe_path"


def test_not_a_zip(server: Server) -> None:
    r = _deploy_zip(server, "notzip", b"this is not a zip")
    assert r.status_code == 400 and error_code(r) == "invalid_zip"


def test_zip_deploy_works(server: Server) -> None:
    r = _deploy_zip(server, "zipok", _zip([("handler.py", OK.encode()), ("pkg/__init__.py", b"")]))
    assert r.status_code == 201, r.text
    assert server.http.get("/fn/zipok").text == "ok"


def test_oversized_payload(server: Server) -> None:
    server.deploy("big", {"handler.py": OK})
    big = b"x" * (6 * 1024 * 1024 + 1)
    r = server.http.post("/fn/big", content=big)
    assert r.status_code == 413 and error_code(r) == "payload_too_large"
    assert r.headers["x-polyfn-error"] == "payload_too_large"
    r = server.api.post("/v1/functions/big/invoke", content=b'"' + big + b'"')
    assert r.status_code == 413 and error_code(r) == "payload_too_large"
    assert server.http.post("/fn/big", content=b"small").status_code == 200  # and the function still works


def test_non_json_to_json_endpoint(server: Server) -> None:
    server.deploy("jsonin", {"handler.py": OK})
    r = server.api.post("/v1/functions/jsonin/invoke", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_code(r) == "invalid_json"
    r = server.api.post("/v1/functions", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_code(r) == "invalid_json"


def test_unknown_function(server: Server) -> None:
    r = server.http.get("/fn/does-not-exist")
    assert r.status_code == 404 and error_code(r) == "function_not_found"
    r = server.api.post("/v1/functions/does-not-exist/invoke", json={})
    assert r.status_code == 404 and error_code(r) == "function_not_found"
    assert server.api.get("/v1/functions/does-not-exist").status_code == 404
    assert server.api.delete("/v1/functions/does-not-exist").status_code == 404
    r = server.api.get("/v1/activations/0123456789abcdef")
    assert r.status_code == 404 and error_code(r) == "activation_not_found"


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": "Basic abc"}])
def test_wrong_api_key(server: Server, headers: dict[str, str]) -> None:
    r = server.http.get("/v1/functions", headers=headers)
    assert r.status_code == 401 and error_code(r) == "unauthorized"
    r = server.http.post("/v1/functions", headers=headers, json={"name": "x", "files": {"handler.py": OK}})
    assert r.status_code == 401
    assert server.http.get("/healthz").status_code == 200  # health needs no key


def test_cli_wrong_key_exits_non_zero(server: Server) -> None:
    r = server.cli("list", env={"POLYFN_API_KEY": "wrong", "POLYFN_URL": server.url})
    assert r.returncode != 0
    assert "401" in r.stderr or "unauthorized" in r.stderr.lower() or "key" in r.stderr.lower()


@pytest.mark.parametrize("spec,needle", [
    ({"timeout": 0}, "timeout"), ({"memory": 1}, "memory"), ({"max_instances": 0}, "max_instances"),
    ({"max_instances": -1}, "max_instances"), ({"concurrency": 0}, "concurrency"),
    ({"min_instances": 5, "max_instances": 2}, "min_instances"), ({"flavor": "cobol"}, "flavor"),
    ({"bogus": 1}, "bogus"), ({"memory": "lots"}, "memory"),
])
def test_invalid_spec_values(server: Server, spec: dict, needle: str) -> None:
    r = server.api.post("/v1/functions", json={"name": "badspec", "files": {"handler.py": OK}, **spec})
    assert r.status_code == 400, r.text
    assert error_code(r) == "invalid_spec"
    assert needle in r.json()["error"]["message"]


def test_failed_deploy_keeps_old_revision(server: Server) -> None:
    server.deploy("keep", {"handler.py": OK})
    r = server.api.post("/v1/functions", json={"name": "keep", "files": {"handler.py": "def handler(:\n"}})
    assert r.status_code == 400
    assert server.http.get("/fn/keep").text == "ok"
    assert server.api.get("/v1/functions/keep").json()["revision"] == 1


# -- hostile uploads (security issue) -------------------------------------------------------------------


def _deflated(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_bomb_by_ratio_rejected(server: Server) -> None:
    bomb = _deflated([("handler.py", OK.encode()), ("zeros.bin", b"\0" * (20 << 20))])  # ~20 KB → 20 MB
    assert len(bomb) < 200_000
    r = _deploy_zip(server, "bombratio", bomb)
    assert r.status_code in (400, 413) and error_code(r) in ("zip_bomb", "code_too_large", "invalid_zip"), r.text
    assert server.http.get("/healthz").status_code == 200


def test_zip_with_absurd_file_count_rejected(server: Server) -> None:
    many = _zip([("handler.py", OK.encode())] + [(f"f/{i}.txt", b"") for i in range(20001)])
    r = _deploy_zip(server, "manyfiles", many)
    assert r.status_code == 413 and error_code(r) == "code_too_large", r.text
    assert "20002" in r.json()["error"]["message"]


def test_zip_lying_about_sizes_rejected(server: Server) -> None:
    """A central directory that declares tiny sizes for a big entry: the real bytes are counted too."""
    data = bytearray(_deflated([("handler.py", OK.encode()), ("big.bin", b"\0" * (2 << 20))]))
    # Patch the declared uncompressed size of big.bin in the central directory to 10 bytes.
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (10).to_bytes(4, "little")
    r = _deploy_zip(server, "zipliar", bytes(data))
    assert r.status_code in (400, 413), r.text
    assert server.http.get("/healthz").status_code == 200


DEEP = [b"[" * 1000 + b"]" * 1000, b'{"a":' * 1000 + b"1" + b"}" * 1000]  # 2 KB each, 1,000 levels deep
COMPAT = [("POST", "/system/functions"), ("PUT", "/system/functions"), ("POST", "/function/deep"),
          ("POST", "/async-function/deep"), ("PUT", "/api/v1/namespaces/_/actions/deep2"),
          ("POST", "/api/v1/namespaces/_/actions/deep"), ("POST", "/2015-03-31/functions"),
          ("POST", "/2015-03-31/functions/deep/invocations"), ("POST", "/fn/deep")]


def test_deeply_nested_json_is_a_400_never_a_500(server: Server) -> None:
    """Every POST/PUT the OpenAPI document lists, and the compat APIs' ones: 1,000-deep JSON is malformed
    input (before: a RecursionError, a 500, on 7 endpoints)."""
    server.deploy("deep", {"handler.py": "def handler(event, context):\n    return event\n"})
    spec = server.api.get("/v1/openapi.json").json()
    routes = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m in ("post", "put", "patch")]
    fill = {"{name}": "deep", "{topic}": "t", "{stream}": "s", "{entry_id}": "e", "{trigger_id}": "t",
            "{key_id}": "k", "{bucket}": "b", "{version}": "1", "{alias}": "a"}
    refused = set()
    for method, path in routes + COMPAT:
        for k, v in fill.items():
            path = path.replace(k, v)
        for body in DEEP:
            with httpx.Client(base_url=server.url, timeout=60,
                              headers={"authorization": f"Bearer {server.key}"}) as c:  # a fresh connection each
                r = c.request(method, path, content=body, headers={"content-type": "application/json"})
            assert r.status_code < 500, (method, path, r.status_code, r.text[:300])
            if r.status_code == 400:
                refused.add(path)
    for path in ("/v1/functions", "/v1/functions/deep", "/v1/functions/deep/invoke", "/v1/storage/keys",
                 "/v1/storage/triggers", "/v1/logs/s", "/v1/functions/deep/triggers"):
        assert path in refused, (path, sorted(refused))
    assert server.http.get("/fn/deep").status_code == 200


LONE = '"\\ud800"'  # valid JSON syntax, but no Unicode text: a str no UTF-8 encoder takes
WRONG_TYPES = [  # (method, path, raw JSON body, status, code): each was a 500 before (found by fuzzing field types)
    ("POST", "/v1/storage/keys", "{", 400, "invalid_json"),
    ("POST", "/v1/storage/keys", '{"name": ' + LONE + "}", 400, "invalid_json"),
    ("POST", "/v1/storage/triggers", '{"function": "typed", "bucket": "b", "events": [1]}', 400, "invalid_request"),
    ("POST", "/v1/storage/triggers", '{"function": ' + LONE + ', "bucket": "b"}', 400, "invalid_json"),
    ("POST", "/v1/workflows", '{"name": "typed-wf", "definition": {"StartAt": "A", "States": {"A": '
                              '{"Type": ["Pass"], "End": true}}}}', 400, "invalid_definition"),
    ("POST", "/v1/workflows", '{"name": "typed-wf", "definition": {"StartAt": "A", "States": {"A": '
                              '{"Type": {"a": 1}, "End": true}}}}', 400, "invalid_definition"),
    ("POST", "/v1/workflows", '{"name": ' + LONE + ', "definition": {"StartAt": "A", "States": {"A": '
                              '{"Type": "Pass", "End": true}}}}', 400, "invalid_json"),
    ("POST", "/v1/functions", '{"name": "typed2", "files": {"handler.py": ' + LONE + "}}", 400, "invalid_json"),
    ("PUT", "/v1/functions/typed", '{"files": {"handler.py": "def handler(e, c):\\n    return 2\\n"}, '
                                   '"env": {"A": ' + LONE + "}}", 400, "invalid_json"),
    ("PUT", "/v1/functions/typed", '{"files": {"handler.py": "x = 1\\n"}, "timeout": ' + LONE + "}", 400,
     "invalid_json"),
    ("POST", "/v1/logs/typed", '{"lines": [{"message": ' + LONE + "}]}", 400, "invalid_json"),
    ("POST", "/v1/apps", '{"id": "typed-app", "rules": ' + LONE + "}", 400, "invalid_json"),
    ("PUT", "/v1/sites/typed", '{"files": {"index.html": ' + LONE + "}}", 400, "invalid_json"),
    ("POST", "/v1/functions/typed/triggers", '{"kind": "cron", "config": {"schedule": "* * * * *"}, "id": 1}', 400,
     "invalid_trigger"),
    ("POST", "/v1/functions/typed/triggers", '{"kind": "redis", "config": {' + LONE + ": 1}}", 400, "invalid_json"),
]


@pytest.mark.parametrize("method,path,body,status,code", WRONG_TYPES)
def test_wrong_types_and_lone_surrogates_are_400s(server: Server, method: str, path: str, body: str, status: int,
                                                  code: str) -> None:
    """A field of the wrong JSON type, or a string with a lone UTF-16 surrogate, is a 400 with a stable code
    (before: 500s from deep inside: a list where a string belongs, the text first encoded by the store or the log);
    and the function the refused redeploys name still serves its first revision."""
    if server.api.get("/v1/functions/typed").status_code == 404:
        server.deploy("typed", {"handler.py": OK})
    r = server.api.request(method, path, content=body.encode(), headers={"content-type": "application/json"})
    assert (r.status_code, error_code(r)) == (status, code), (r.status_code, r.text[:300])
    assert server.http.get("/fn/typed").text == "ok"
    assert server.api.get("/v1/functions/typed").json()["revision"] == 1


def _compat(server: Server, api: str, method: str, path: str, body: str) -> httpx.Response:
    """A raw request to a compatible API as its clients authenticate (SigV4 for Lambda and Step Functions, Basic
    for OpenWhisk and OpenFaaS): their SDKs check types before sending, so wrong ones come from other clients."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {"content-type": "application/json"}
    if api in ("lambda", "states"):
        if api == "states":
            headers = {"content-type": "application/x-amz-json-1.0", "x-amz-target": path}
            path = "/"
        req = AWSRequest(method=method, url=server.url + path, data=body.encode(), headers=headers)
        SigV4Auth(Credentials("polyfn-admin", server.key), api, "us-east-1").add_auth(req)
        headers = dict(req.headers.items())
    auth = {"openwhisk": ("polyfn-admin", server.key), "openfaas": ("admin", server.key)}.get(api)
    return server.http.request(method, path, content=body.encode(), headers=headers, auth=auth)


def _definitions() -> list[str]:
    """State machine definitions with a field of the wrong type deep inside (each a 500 before), and one whose
    state name is a lone surrogate (JSON inside the request's JSON)."""
    def machine(**fields: Any) -> str:
        state = {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:typed", "End": True}
        return json.dumps({"StartAt": "A", "States": {"A": {**state, **fields}}})

    choice = {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": ["A"]}], "Default": "A"}
    return [machine(InputPath=[]), machine(ResultPath={}), machine(Retry=[{"ErrorEquals": 1}]),
            json.dumps({"StartAt": "C", "States": {"C": choice, "A": {"Type": "Pass", "End": True}}}),
            json.dumps({"StartAt": "C", "States": {"C": {**choice, "Choices": [{**choice["Choices"][0], "Next": "A",
                                                                                  "Variable": {}}]},
                                                   "A": {"Type": "Pass", "End": True}}}),
            json.dumps({"StartAt": "M", "States": {"M": {"Type": "Map", "End": True, "ItemProcessor": {
                "ProcessorConfig": "x", "StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}}}}}),
            json.dumps({"StartAt": "F", "States": {"F": {"Type": "Fail", "CausePath": []}}}),
            '{"StartAt": "\\ud800", "States": {"\\ud800": {"Type": "Pass", "End": true}}}']


F = "/2015-03-31/functions/typed"
SM = "arn:aws:states:us-east-1:000000000000:stateMachine:typed-sm0"
W = "/api/v1/namespaces/_"
COMPAT_WRONG_TYPES = [  # (api, method, path, raw JSON body, status, the API's error type or message part)
    ("lambda", "PUT", F + "/configuration", '{"Environment": "x"}', 400, "InvalidParameterValueException"),
    ("lambda", "PUT", F + "/configuration", '{"EphemeralStorage": 1}', 400, "InvalidParameterValueException"),
    ("lambda", "PUT", F + "/configuration", '{"Description": ' + LONE + "}", 400, "SerializationException"),
    ("lambda", "POST", F + "/aliases", '{"Name": "live", "FunctionVersion": "1", "RoutingConfig": "x"}', 400,
     "InvalidParameterValueException"),
    ("lambda", "POST", F + "/aliases", '{"Name": "live", "FunctionVersion": 1000000000000000000000000000000}', 404,
     "ResourceNotFoundException"),
    ("openwhisk", "PUT", W + "/actions/typed-ow", '{"exec": "x"}', 400, "exec must be an object"),
    ("openwhisk", "PUT", W + "/actions/typed-ow", '{"exec": {"kind": "python:3", "code": ' + LONE + "}}", 400,
     "malformed"),
    ("openwhisk", "POST", W + "/actions/typed?blocking=true", '{"a": ' + LONE + "}", 400, "malformed"),
    ("openwhisk", "PUT", W + "/triggers/typed-t", '{"parameters": [{"key": "a", "value": ' + LONE + "}]}", 400,
     "malformed"),
    *[("states", "POST", "AWSStepFunctions.CreateStateMachine", json.dumps({
        "name": "typed-sm", "roleArn": "arn:aws:iam::000000000000:role/r", "definition": d}), 400, "InvalidDefinition")
      for d in _definitions()],
    *[("states", "POST", f"AWSStepFunctions.{op}", json.dumps(body), 400, "SerializationException") for op, body in (
        ("StartExecution", {"stateMachineArn": SM, "input": 1}), ("DescribeExecution", {"executionArn": 1}),
        ("SendTaskSuccess", {"taskToken": "t", "output": 1}),
        ("SendTaskHeartbeat", {"taskToken": []}), ("UpdateStateMachine", {"stateMachineArn": SM, "roleArn": []}),
        ("TagResource", {"resourceArn": SM, "tags": "x"}), ("TagResource", {"resourceArn": SM, "tags": [{"key": []}]}),
        ("UntagResource", {"resourceArn": SM, "tagKeys": 1}))],
    ("openfaas", "POST", "/system/functions", '{"service": ' + LONE + ', "image": "x"}', 400, "not valid JSON"),
    ("openfaas", "POST", "/system/secrets", '{"name": "s", "value": ' + LONE + "}", 400, "not valid JSON"),
]


@pytest.mark.parametrize("api,method,path,body,status,expect", COMPAT_WRONG_TYPES)
def test_compat_wrong_types_and_lone_surrogates_are_4xx(server: Server, api: str, method: str, path: str, body: str,
                                                        status: int, expect: str) -> None:
    """The same on the compatible APIs, each answering as its own clients expect (Lambda: the error type in
    `x-amzn-ErrorType`; OpenWhisk: `{"error": ...}`; OpenFaaS: a text message); each was a 500 before."""
    if server.api.get("/v1/functions/typed").status_code == 404:
        server.deploy("typed", {"handler.py": OK})
        r = server.api.post("/v1/workflows", json={"name": "typed-sm0", "definition": {
            "StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}})
        assert r.status_code == 201, r.text
    r = _compat(server, api, method, path, body)
    assert r.status_code == status, r.text[:300]
    if api in ("lambda", "states"):
        assert r.headers.get("x-amzn-errortype", "").split(":")[0] == expect or expect in r.text, r.text[:300]
    elif api == "openwhisk":
        assert expect in r.json()["error"], r.text[:300]
    else:
        assert expect in r.text, r.text[:300]
    assert server.http.get("/fn/typed").text == "ok"
