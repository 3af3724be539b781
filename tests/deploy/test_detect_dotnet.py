"""C# Azure functions in an upload: which [FunctionName], its auth, and how mcs's messages are shown (pure)."""

from __future__ import annotations

import pytest

from polyfn.deploy import detect, detect_dotnet
from polyfn.deploy.build_dotnet import compiler_messages, implicit_usings
from polyfn.deploy.errors import DeployError
from polyfn.model import FunctionSpec, SpecError, validate_spec

SEED = (b'public static class Function1{    [FunctionName("Function1")]    public static async Task<IActionResult> Run('
        b'        [HttpTrigger(AuthorizationLevel.Function, "get", "post", Route = null)] HttpRequest req)    {'
        b'        return new OkObjectResult("Hello, World");    }}\n')
TWO = b'''
public static class Fns {
    // [FunctionName("Commented")] is not a function
    [FunctionName("Public")]
    public static IActionResult A([HttpTrigger(AuthorizationLevel.Anonymous, "get")] HttpRequest req) => new OkResult();
    [FunctionName("Nightly")]
    public static void B([TimerTrigger("0 0 2 * * *")] TimerInfo t, ILogger log) { }
}
'''


def test_seed_sample_is_dotnet_with_a_key() -> None:
    files = {"Function1.cs": SEED}
    found = detect.detect(files, None, None)
    assert (found.runtime, found.flavor, found.handler) == ("dotnet", "azure", "Function1")
    assert detect_dotnet.auth_for(files, "Function1") == "key"


@pytest.mark.parametrize(("files", "names"), [
    ({"Fns.cs": TWO}, ["Public", "Nightly"]),
    ({"App.csproj": b"<Project/>", "host.json": b"{}", "src/Fns.cs": TWO, "obj/Debug/Gen.cs": SEED}, ["Public", "Nightly"]),
    ({"a.cs": b"class A {}"}, []),
])
def test_functions_found(files: dict[str, bytes], names: list[str]) -> None:
    assert [f.name for f in detect_dotnet.functions(files)] == names


def test_several_functions_need_a_handler() -> None:
    files = {"Fns.cs": TWO}
    with pytest.raises(DeployError) as e:
        detect.detect(files, None, None)
    assert e.value.code == "ambiguous_handler" and "--handler Public or --handler Nightly" in e.value.message
    assert detect.detect(files, None, "Nightly").handler == "Nightly"
    assert detect_dotnet.auth_for(files, "Public") == "anonymous"
    assert detect_dotnet.auth_for(files, "Nightly") is None  # no HTTP trigger
    with pytest.raises(DeployError) as e:
        detect.detect(files, None, "Missing")
    assert e.value.code == "handler_not_found" and "Public, Nightly" in e.value.message
    with pytest.raises(DeployError) as e:
        detect.detect(files, "aws", None)
    assert e.value.code == "invalid_spec"


def test_python_beside_no_csharp_is_still_python() -> None:
    assert detect.detect({"main.py": b"def handler(event, context):\n    return 1\n"}, None, None).runtime == "python"


def test_mcs_messages_become_file_line_column() -> None:
    lines = ["src/Fns.cs(3,17): error CS0246: The type or namespace name `CosmosDB' could not be found.",
             "Compilation failed: 1 error(s), 0 warnings"]
    assert compiler_messages(lines) == [
        "src/Fns.cs:3:17: error CS0246: The type or namespace name `CosmosDB' could not be found.",
        "Compilation failed: 1 error(s), 0 warnings"]


def test_implicit_usings_keep_line_numbers() -> None:
    out = implicit_usings("dir/F.cs", b"\xef\xbb\xbfclass A {}\n").decode()
    head, directive, rest = out.split("\n", 2)
    assert "using Microsoft.AspNetCore.Mvc;" in head and "using System.Threading.Tasks;" in head
    assert directive == '#line 1 "dir/F.cs"' and rest == "class A {}\n"


@pytest.mark.parametrize(("handler", "ok"), [("Function1", True), ("Http-Trigger_2", True), ("1abc", False),
                                             ("a.b", False), ("", False)])
def test_dotnet_handler_is_a_function_name(handler: str, ok: bool) -> None:
    spec = FunctionSpec(name="f", runtime="dotnet", flavor="azure", handler=handler)
    if ok:
        validate_spec(spec, 900, 4096, 100)
    else:
        with pytest.raises(SpecError):
            validate_spec(spec, 900, 4096, 100)
