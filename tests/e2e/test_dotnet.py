"""The dotnet runtime: Azure Functions C# (in-process model) on Mono, deployed unmodified (runtimes/dotnet).

The seed's `Function1`, the common surface (query, headers, body, Json.NET, results, ILogger) and every
bad input: code that does not compile, a binding polyfn does not provide, an exception in Run."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

import pytest

from polyfn.runtimes import dotnet

from .conftest import REPO, Server, error_code, wait_until

pytestmark = pytest.mark.skipif(dotnet.toolchain() is None and os.environ.get("CI") != "true",
                                reason="no Mono (apt-get install mono-mcs mono-runtime libnewtonsoft-json-cil-dev)")
API = (REPO / "tests/e2e/dotnet/Api.cs").read_text()


def invoke_key(server: Server, function: str) -> str:
    r = server.cli("keys", "create", "--scope", "invoke", "--function", function, "--json", check=True)
    key = json.loads(r.stdout)
    return f"{key['access_key_id']}:{key['secret_access_key']}"


def test_seed_csharp_sample(server: Server) -> None:
    r = server.cli("deploy", str(REPO / "examples/seed/azure-hello-csharp"), "--name", "hello-cs", check=True)
    out = r.stdout + r.stderr
    assert "runtime=dotnet" in out and "flavor=azure" in out and "handler=Function1" in out and "auth=key" in out
    assert server.http.get("/fn/hello-cs").status_code == 401  # AuthorizationLevel.Function: a key, as on Azure
    key = invoke_key(server, "hello-cs")
    resp = server.http.get("/fn/hello-cs", params={"code": key})
    assert resp.status_code == 200 and resp.text == "Hello, World"
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    resp = server.http.post("/fn/hello-cs/api/Function1", headers={"x-functions-key": key}, content=b"x")
    assert resp.status_code == 200 and resp.text == "Hello, World"
    act = server.activation(resp.headers["x-polyfn-activation-id"])
    assert act["status"] == "success"
    r = server.cli("deploy", str(REPO / "examples/seed/azure-hello-csharp"), "--name", "hello-cs2", check=True)
    assert "using cached C# build" in r.stdout + r.stderr
    r = server.cli("deploy", str(REPO / "examples/seed/azure-hello-csharp/Function1.cs"), "--name", "hello-cs3",
                   "--auth", "anonymous", check=True)  # a single .cs file
    assert "runtime=dotnet" in r.stdout and server.http.get("/fn/hello-cs3").text == "Hello, World"


@pytest.mark.parametrize(("query", "status", "body"), [
    ({"name": "Ann"}, 200, "Hello, Ann"),
    ({"kind": "bad"}, 400, "Please pass a name"),
    ({"kind": "notfound"}, 404, ""),
    ({"kind": "content"}, 201, "<b>hi</b>"),
    ({"kind": "status"}, 418, ""),
    ({"kind": "object"}, 202, '{"value":42}'),
    ({"kind": "ok"}, 200, ""),
    ({}, 400, "Please pass a name on the query string or in the request body"),
])
def test_results(server: Server, query: dict[str, str], status: int, body: str) -> None:
    if server.api.get("/v1/functions/api-cs").status_code == 404:
        server.deploy("api-cs", {"Api.cs": API})
    resp = server.http.get("/fn/api-cs", params=query)
    assert (resp.status_code, resp.text) == (status, body)


def test_request_surface_and_logs(server: Server) -> None:
    info = server.deploy("api-cs2", {"Api.cs": API}, env={"GREETING": "hey"})
    assert info["spec"]["auth"] == "anonymous" and info["spec"]["runtime"] == "dotnet"
    env = server.http.get("/fn/api-cs2", params={"kind": "env"}).text
    assert env.startswith("hey in /") and env.endswith("/code/api-cs2/" + env.rsplit("/", 1)[-1])  # env, cwd = code
    uid = server.http.get("/fn/api-cs2", params={"kind": "uid"}).text.split()
    if os.geteuid() == 0:  # the function's own uid, not root's (a pre-started host switches before loading it)
        assert uid[0] == "Uid:" and uid[1] != "0" and len(set(uid[1:])) == 1, uid
    resp = server.http.get("/fn/api-cs2", params={"kind": "json", "name": "Bo"},
                           headers={"x-test": "T", "host": "fn.example.com"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {"greeting": "Hello, Bo", "method": "GET", "agent": "T",  # Json.NET, camelCase as MVC
                           "host": "fn.example.com"}  # the caller's Host, not the instance's
    assert server.http.post("/fn/api-cs2", json={"name": "Body"}).text == "Hello, Body"  # StreamReader + dynamic
    assert server.http.post("/fn/api-cs2?kind=read", content="raw text").text == "raw text"  # ReadAsStringAsync
    assert server.http.post("/fn/api-cs2?kind=typed", json={"Name": "cy"}).text == "CY"  # ReadFromJsonAsync<T>
    resp = server.http.put("/fn/api-cs2", content=b"x")
    assert resp.status_code == 405 and error_code(resp) == "method_not_allowed"
    resp = server.http.get("/fn/api-cs2", params={"name": "Logs"})
    logs = server.activation(resp.headers["x-polyfn-activation-id"])["logs"]
    lines = [(entry["stream"], entry["line"]) if isinstance(entry, dict) else (entry[1], entry[2]) for entry in logs]
    assert ("stdout", "[Information] C# HTTP trigger function processed a request.") in lines
    assert ("stderr", "[Warning] kind (null) for Logs") in lines  # message template filled positionally


def test_exception_is_a_typed_500(server: Server) -> None:
    server.deploy("api-cs3", {"Api.cs": API})
    resp = server.http.get("/fn/api-cs3", params={"kind": "throw", "name": "x"})
    assert resp.status_code == 500 and resp.headers["x-polyfn-function-error"] == "Unhandled"
    err = resp.json()
    assert err["errorType"] == "System.InvalidOperationException" and err["errorMessage"] == "no such thing: x"
    assert any("Demo.Api.Run" in line for line in err["stackTrace"])
    act = server.activation(resp.headers["x-polyfn-activation-id"])
    assert act["status"] == "error" and act["error"]["errorType"] == "System.InvalidOperationException"


def test_timeout_kills_and_replaces_the_instance(server: Server) -> None:
    server.deploy("slow-cs", {"Api.cs": API}, timeout=5)  # a first start on a loaded machine can take seconds
    assert server.http.get("/fn/slow-cs", params={"name": "first"}).text == "Hello, first"
    resp = server.http.get("/fn/slow-cs", params={"kind": "sleep"})
    assert resp.status_code == 504 and error_code(resp) == "function_timeout"
    assert server.http.get("/fn/slow-cs", params={"name": "again"}).text == "Hello, again"  # a fresh instance


def test_compile_error_names_file_line_column(server: Server) -> None:
    src = 'public static class F {\n    [FunctionName("F")]\n    public static IActionResult Run(\n' \
          '        [HttpTrigger(AuthorizationLevel.Anonymous)] HttpRequest req) { return new OkResult() }\n}\n'
    r = server.api.post("/v1/functions", json={"name": "bad-cs", "files": {"src/F.cs": src}})
    assert r.status_code == 400 and error_code(r) == "build_failed"
    assert "src/F.cs:4:" in r.json()["error"]["message"] and "error CS1525" in r.json()["error"]["message"]
    assert server.api.get("/v1/functions/bad-cs").status_code == 404  # nothing recorded


def test_missing_type_is_named_at_deploy(server: Server) -> None:
    src = ('public static class F {\n    [FunctionName("F")]\n    public static IActionResult Run(\n'
           '        [HttpTrigger(AuthorizationLevel.Anonymous)] HttpRequest req,\n'
           '        [CosmosDB("db", "items", Id = "{id}")] object item) => new OkResult();\n}\n')
    r = server.api.post("/v1/functions", json={"name": "cosmos-cs", "files": {"F.cs": src}})
    assert r.status_code == 400 and error_code(r) == "build_failed"
    assert "F.cs:5:10: error CS0246" in r.json()["error"]["message"] and "CosmosDB" in r.json()["error"]["message"]


def test_unsupported_parameter_is_named_at_deploy(server: Server) -> None:
    src = ('public static class F {\n    [FunctionName("F")]\n    public static IActionResult Run(\n'
           '        [HttpTrigger(AuthorizationLevel.Anonymous)] HttpRequest req, int count) => new OkResult();\n}\n')
    r = server.api.post("/v1/functions", json={"name": "param-cs", "files": {"F.cs": src}})
    assert r.status_code == 400 and error_code(r) == "unsupported_binding"
    assert "parameter count (System.Int32)" in r.json()["error"]["message"]


def test_project_with_several_functions(server: Server) -> None:
    two = ('namespace App {\n public static class Two {\n'
           '  [FunctionName("One")] public static IActionResult A([HttpTrigger(AuthorizationLevel.Anonymous, "get")] '
           'HttpRequest req) => new OkObjectResult("one");\n'
           '  [FunctionName("Two")] public static IActionResult B([HttpTrigger(AuthorizationLevel.Anonymous, "get")] '
           'HttpRequest req) => new OkObjectResult(new[] { 1, 2 });\n }\n}\n')
    files = {"App.csproj": "<Project Sdk=\"Microsoft.NET.Sdk\"/>", "host.json": '{"version": "2.0"}', "Two.cs": two}
    r = server.api.post("/v1/functions", json={"name": "two-cs", "files": files})
    assert r.status_code == 400 and error_code(r) == "ambiguous_handler"
    server.deploy("two-cs", files, handler="Two")
    assert server.http.get("/fn/two-cs").json() == [1, 2]


@pytest.mark.parametrize(("doc", "section"), [("examples/seed/azure-hello-csharp/README.md", ""),
                                              ("docs/flavors.md", "## C# runtime")])
def test_documented_commands_run(server: Server, doc: str, section: str) -> None:
    text = (REPO / doc).read_text()
    text = text[text.index(section):] if section else text
    commands = [line.strip().split("  #")[0].strip() for line in text.splitlines()
                if line.startswith("    polyfn ") or line.startswith("    curl ")]
    assert [c.split()[:2] for c in commands] == [["polyfn", "deploy"], ["polyfn", "keys"],
                                                ["curl", '"http://127.0.0.1:8080/fn/hello-csharp?code=ID:SECRET"']]
    key = ""
    for cmd in commands:
        if cmd.startswith("polyfn "):
            out = server.cli(*shlex.split(cmd)[1:], check=True).stdout
            if " keys create " in f" {cmd} ":
                ids = re.search(r"access_key_id:\s+(\S+)\s+secret_access_key:\s+(\S+?)(?:use it|\s)", out)
                assert ids, out
                key = f"{ids[1]}:{ids[2]}"
        else:
            url = shlex.split(cmd)[1].replace("http://127.0.0.1:8080", server.url).replace("ID:SECRET", key)
            r = subprocess.run(["curl", "-s", url], capture_output=True, text=True, timeout=60)
            assert r.stdout == "Hello, World"


def test_project_triggers_from_attributes(server: Server) -> None:
    """`deploy -f host.json` of a C# project: one function per [FunctionName], each with its trigger."""
    server.cli("storage", "mb", "s3://photos", check=True)  # a storage trigger needs its bucket (else 404)
    r = server.cli("deploy", "-f", str(REPO / "tests/e2e/dotnet/project/host.json"), check=True)
    out = r.stdout + r.stderr
    assert "created as cron trigger" in out and "cron=*/5 * * * *" in out  # [TimerTrigger("0 */5 * * * *")]
    assert "created as storage trigger" in out and "bucket=photos" in out  # [BlobTrigger("photos/{name}")]
    assert "created as topic trigger" in out  # [QueueTrigger("orders")]
    assert server.http.get("/fn/hello").text == "hello from the project"

    def logged(fn: str, text: str) -> bool:
        return text in server.cli("logs", fn).stdout

    server.cli("invoke", "tick", "--event", "timer", check=True)
    assert logged("tick", "[Information] tick, past due: False")  # TimerInfo bound
    server.cli("invoke", "onblob", "--event", "blob", "--data",
               '{"bucket": "photos", "key": "a.txt", "content_base64": "aGVsbG8="}', check=True)
    assert logged("onblob", "[Information] blob a.txt: 5 bytes, starts with hello")  # Stream + {name}
    server.cli("invoke", "onqueue", "--event", "queue", "--data", '{"body": "pizza"}', check=True)
    assert logged("onqueue", "[Information] order pizza")
    server.cli("publish", "orders", "-d", "sushi", "--raw", check=True)  # through the topic trigger
    assert wait_until(lambda: logged("onqueue", "[Information] order sushi"), 30)
