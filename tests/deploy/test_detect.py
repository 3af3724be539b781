"""Detection of flavor and handler from Python code: table-driven over the vendors' conventions."""

from __future__ import annotations

import json

import pytest

from polyfn.deploy.detect import detect
from polyfn.deploy.errors import DeployError

AZ_V1 = "import azure.functions as func\n\ndef main(req: func.HttpRequest) -> func.HttpResponse:\n    return 'x'\n"
AZ_V2 = ("import azure.functions as func\napp = func.FunctionApp()\n\n@app.route(route='r')\n"
         "def r(req):\n    return 'x'\n")
FJ = json.dumps({"scriptFile": "__init__.py", "bindings": [{"type": "httpTrigger", "direction": "in", "name": "req"}]})

CASES = [
    # (files, expected flavor, expected handler, words in the reason)
    ({"lambda_function.py": "def lambda_handler(event, context):\n    return 1\n"}, "aws",
     "lambda_function.lambda_handler", "AWS"),
    ({"lambda_function.py": "def go(event, context):\n    return 1\n"}, "aws", "lambda_function.go", "default file"),
    ({"main.py": "def hello_http(request):\n    return 'Hello World!'\n"}, "gcp", "main.hello_http", "request"),
    ({"main.py": "import functions_framework\n\n@functions_framework.http\ndef hi(req):\n    return ''\n"}, "gcp",
     "main.hi", "functions_framework.http"),
    ({"main.py": "from functions_framework import cloud_event\n\n@cloud_event\ndef on(ce):\n    pass\n"}, "gcp",
     "main.on", "cloud_event"),
    ({"HttpTrigger/__init__.py": AZ_V1, "HttpTrigger/function.json": FJ, "host.json": "{}"}, "azure",
     "HttpTrigger.main", "function.json"),
    ({"function_app.py": AZ_V2}, "azure", "function_app.app", "FunctionApp"),
    ({"__init__.py": AZ_V1}, "azure", "__init__.main", "azure.functions"),
    ({"index.py": "def handler(event, context):\n  print('hello world')\n  return 'hello world'\n"}, "aliyun",
     "index.handler", "Alibaba"),
    ({"index.py": "def handler(environ, start_response):\n    pass\n"}, "aliyun", "index.handler", "WSGI"),
    ({"index.py": "def main_handler(event, context):\n    return 1\n"}, "tencent", "index.main_handler", "Tencent"),
    ({"handler.py": "def handle(req):\n    return req[::-1]\n"}, "openfaas", "handler.handle", "OpenFaaS"),
    ({"handler.py": "def handle(event, context):\n    return {}\n"}, "openfaas-http", "handler.handle", "python3-http"),
    ({"reverse.py": "def reverse(event, context):    return event['data'][::-1]\n"}, "kubeless", "reverse.reverse",
     "Kubeless"),
    ({"__main__.py": "def main(args):\n    return {}\n"}, "openwhisk", "__main__.main", "OpenWhisk"),
    ({"handler.py": "def handler(event, context):\n    return 1\n"}, "native", "handler.handler", "native"),
    ({"my_func.py": "def go(event, context):\n    return 1\n"}, "native", "my_func.go", "only 2-argument"),
]


@pytest.mark.parametrize(("files", "flavor", "handler", "why"), CASES,
                         ids=[c[1] + ":" + c[2] for c in CASES])
def test_detects(files: dict[str, str], flavor: str, handler: str, why: str) -> None:
    d = detect({k: v.encode() for k, v in files.items()}, None, None)
    assert (d.runtime, d.flavor, d.handler) == ("python", flavor, handler)
    assert why in d.reason


def test_flavor_given_finds_its_handler() -> None:
    files = {"app.py": b"def process(event, context):\n    return 1\n\ndef helper(x):\n    return x\n"}
    d = detect(files, "aws", None)
    assert (d.flavor, d.handler) == ("aws", "app.process")


def test_handler_given_infers_flavor() -> None:
    files = {"lambda_function.py": b"def lambda_handler(event, context):\n    return 1\n"}
    assert detect(files, None, "lambda_function.lambda_handler").flavor == "aws"
    assert detect(files, "native", "lambda_function.lambda_handler").flavor == "native"


def test_ambiguous_lists_candidates() -> None:
    files = {"a.py": b"def handle(req):\n    return 1\n", "b.py": b"def handle(req):\n    return 2\n"}
    with pytest.raises(DeployError) as e:
        detect(files, None, None)
    assert e.value.code == "ambiguous_handler" and "a.handle" in e.value.message and "b.handle" in e.value.message


def test_preferred_file_breaks_a_tie() -> None:
    files = {"handler.py": b"def handle(req):\n    return 1\n", "b.py": b"def handle(req):\n    return 2\n"}
    assert detect(files, None, None).handler == "handler.handle"


def test_several_azure_v1_functions_are_ambiguous() -> None:
    files = {f"F{i}/__init__.py": AZ_V1.encode() for i in (1, 2)} | {f"F{i}/function.json": FJ.encode() for i in (1, 2)}
    with pytest.raises(DeployError) as e:
        detect(files, None, None)
    assert "F1.main" in e.value.message and "F2.main" in e.value.message


def test_unknown_lists_what_was_looked_for() -> None:
    with pytest.raises(DeployError) as e:
        detect({"util.py": b"X = 1\n"}, None, None)
    msg = e.value.message
    assert e.value.code == "handler_not_found" and "--handler" in msg
    for word in ("lambda_handler", "main_handler", "functions_framework", "function.json", "handle(req)", "main(params)"):
        assert word in msg


def test_unknown_for_a_given_flavor_lists_only_its_rules() -> None:
    with pytest.raises(DeployError) as e:
        detect({"util.py": b"def a(x, y, z):\n    pass\n"}, "tencent", None)
    assert "main_handler" in e.value.message and "lambda_handler" not in e.value.message


@pytest.mark.parametrize(("flavor", "src", "ok"), [
    ("aws", "def f(event):\n    pass\n", False),
    ("aws", "def f(event, context=None, extra=1):\n    pass\n", True),
    ("openwhisk", "def f(a, b):\n    pass\n", False),
    ("gcp", "def f(data, context):\n    pass\n", True),
    ("gcp", "def f():\n    pass\n", False),
    ("kubeless", "def f(*args):\n    pass\n", True),
    ("azure", "def f():\n    pass\n", True),  # bindings decide: checked when the instance starts
])
def test_signature_checked_at_deploy(flavor: str, src: str, ok: bool) -> None:
    from polyfn.deploy.detect import check_signature

    files = {"m.py": src.encode()}
    if ok:
        check_signature(files, "m.f", flavor)
        return
    with pytest.raises(DeployError) as e:
        check_signature(files, "m.f", flavor)
    assert e.value.code == "handler_signature" and "convention" in e.value.message
