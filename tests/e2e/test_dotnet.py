"""The dotnet runtime: Azure Functions C# (in-process model) on Mono, deployed unmodified (runtimes/dotnet).

The seed's `Function1`, the common surface (query, headers, body, Json.NET, results, ILogger) and every
bad input: code that does not compile, a binding polyfn does not provide, an exception in Run."""

from __future__ import annotations

import json
import os

import pytest

from polyfn.runtimes import dotnet

from .conftest import REPO, Server, error_code

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
    info = server.deploy("api-cs2", {"Api.cs": API})
    assert info["spec"]["auth"] == "anonymous" and info["spec"]["runtime"] == "dotnet"
    resp = server.http.get("/fn/api-cs2", params={"kind": "json", "name": "Bo"}, headers={"x-test": "T"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {"greeting": "Hello, Bo", "method": "GET", "agent": "T"}  # Json.NET, camelCase as MVC
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
