"""`polyfn new` templates: a runnable function in a vendor's own layout, with a test and a descriptor.

Each template is data: files (with `%NAME%` substituted) and the command that runs its own tests. The
descriptor is the vendor's definition file where polyfn reads one (SAM `template.yaml`, OpenFaaS
`stack.yml`, `serverless.yml`, Serverless Devs `s.yaml`), else `polyfn.json` (polyfn spec fields), so
`polyfn run DIR` and `polyfn deploy -f DIR` / `polyfn deploy DIR` work on the folder as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PY_TEST_HEADER = (
    "import sys\n"
    "from pathlib import Path\n\n"
    "sys.path.insert(0, str(Path(__file__).resolve().parents[1] / {code_dir!r}))\n\n"
)


@dataclass(frozen=True)
class Template:
    description: str
    flavor: str
    language: str  # python | node
    files: dict[str, str]
    test_command: str  # how to run the template's own test, from the function folder


def _py_test(code_dir: str, body: str) -> str:
    return PY_TEST_HEADER.format(code_dir=code_dir) + body


TEMPLATES: dict[str, Template] = {
    "native-python": Template("polyfn's own convention: handler(event, context)", "native", "python", {
        "handler.py": (
            "def handler(event, context):\n"
            "    \"\"\"Reverse `message`; `event` is the JSON payload (or an HttpRequest for HTTP calls).\"\"\"\n"
            "    message = event.get(\"message\", \"\") if isinstance(event, dict) else \"\"\n"
            "    print(\"reversing\", message)\n"
            "    return {\"message\": message[::-1]}\n"),
        "polyfn.json": '{"name": "%NAME%", "runtime": "python", "flavor": "native", "handler": "handler.handler"}\n',
        "tests/test_handler.py": _py_test(".", (
            "from handler import handler\n\n\n"
            "def test_reverses_the_message():\n"
            "    assert handler({\"message\": \"hello\"}, None) == {\"message\": \"olleh\"}\n")),
    }, "python -m pytest -q tests"),
    "aws-python": Template("AWS Lambda (Python) with a SAM template", "aws", "python", {
        "src/lambda_function.py": (
            "def lambda_handler(event, context):\n"
            "    message = event['message'][::-1]\n"
            "    return {\n"
            "        'message' : message\n"
            "    }\n"),
        "template.yaml": (
            "AWSTemplateFormatVersion: '2010-09-09'\n"
            "Transform: AWS::Serverless-2016-10-31\n"
            "Description: %NAME%\n"
            "Resources:\n"
            "  Function:\n"
            "    Type: AWS::Serverless::Function\n"
            "    Properties:\n"
            "      FunctionName: %NAME%\n"
            "      CodeUri: src/\n"
            "      Handler: lambda_function.lambda_handler\n"
            "      Runtime: python3.12\n"
            "      Timeout: 3\n"),
        "events/event.json": '{"message": "hello"}\n',
        "tests/test_lambda_function.py": _py_test("src", (
            "from lambda_function import lambda_handler\n\n\n"
            "def test_reverses_the_message():\n"
            "    assert lambda_handler({\"message\": \"hello\"}, None) == {\"message\": \"olleh\"}\n")),
    }, "python -m pytest -q tests"),
    "aws-node": Template("AWS Lambda (Node.js) with a serverless.yml", "aws", "node", {
        "handler.js": (
            "module.exports.hello = async event => {\n"
            "  return {\n"
            "    statusCode: 200,\n"
            "    body: JSON.stringify(\n"
            "      { message: 'Go Serverless v1.0! Your function executed successfully!', input: event },\n"
            "      null,\n"
            "      2\n"
            "    ),\n"
            "  };\n"
            "};\n"),
        "serverless.yml": (
            "service: %NAME%\n"
            "provider:\n"
            "  name: aws\n"
            "  runtime: nodejs20.x\n"
            "functions:\n"
            "  %NAME%:\n"
            "    handler: handler.hello\n"
            "    events:\n"
            "      - httpApi: {path: /, method: get}\n"),
        "test/handler.test.js": (
            "const test = require('node:test');\n"
            "const assert = require('node:assert');\n"
            "const { hello } = require('../handler.js');\n\n"
            "test('echoes the input', async () => {\n"
            "  const res = await hello({ a: 1 });\n"
            "  assert.strictEqual(res.statusCode, 200);\n"
            "  assert.deepStrictEqual(JSON.parse(res.body).input, { a: 1 });\n"
            "});\n"),
    }, "node --test test/"),
    "gcp-python": Template("Google Cloud Functions (Python, HTTP)", "gcp", "python", {
        "main.py": (
            "def hello_http(request):\n"
            "    \"\"\"HTTP Cloud Function: `request` is a Flask request.\"\"\"\n"
            "    name = request.args.get('name', 'World')\n"
            "    return f'Hello, {name}!'\n"),
        "polyfn.json": '{"name": "%NAME%", "runtime": "python", "flavor": "gcp", "handler": "main.hello_http"}\n',
        "tests/test_main.py": _py_test(".", (
            "from types import SimpleNamespace\n\n"
            "from main import hello_http\n\n\n"
            "def test_greets_by_name():\n"
            "    assert hello_http(SimpleNamespace(args={\"name\": \"polyfn\"})) == \"Hello, polyfn!\"\n")),
    }, "python -m pytest -q tests"),
    "openfaas-python": Template("OpenFaaS python3 template with a stack.yml", "openfaas", "python", {
        "handler/handler.py": (
            "def handle(req):\n"
            "    \"\"\"handle a request to the function\n"
            "    Args:\n"
            "        req (str): request body\n"
            "    \"\"\"\n"
            "    return req[::-1]\n"),
        "handler/requirements.txt": "",
        "stack.yml": (
            "version: 1.0\n"
            "provider:\n"
            "  name: openfaas\n"
            "  gateway: http://127.0.0.1:8080\n"
            "functions:\n"
            "  %NAME%:\n"
            "    lang: python3\n"
            "    handler: ./handler\n"
            "    image: %NAME%:latest\n"),
        "tests/test_handler.py": _py_test("handler", (
            "from handler import handle\n\n\n"
            "def test_reverses():\n"
            "    assert handle(\"hello\") == \"olleh\"\n")),
    }, "python -m pytest -q tests"),
    "kubeless-python": Template("Kubeless (Python)", "kubeless", "python", {
        "reverse.py": "def reverse(event, context):\n    return event['data'][::-1]\n",
        "polyfn.json": '{"name": "%NAME%", "runtime": "python", "flavor": "kubeless", "handler": "reverse.reverse"}\n',
        "tests/test_reverse.py": _py_test(".", (
            "from reverse import reverse\n\n\n"
            "def test_reverses_data():\n"
            "    assert reverse({\"data\": \"abc\"}, {}) == \"cba\"\n")),
    }, "python -m pytest -q tests"),
    "aliyun-python": Template("Alibaba Cloud Function Compute (Python) with an s.yaml", "aliyun", "python", {
        "code/index.py": (
            "import json\n\n\n"
            "def handler(event, context):\n"
            "    evt = json.loads(event)  # FC passes the event as bytes\n"
            "    return json.dumps({'message': evt.get('message', '')[::-1]})\n"),
        "s.yaml": (
            "edition: 1.0.0\n"
            "name: %NAME%\n"
            "services:\n"
            "  %NAME%:\n"
            "    component: fc\n"
            "    props:\n"
            "      region: cn-hangzhou\n"
            "      function:\n"
            "        name: %NAME%\n"
            "        runtime: python3.10\n"
            "        codeUri: ./code\n"
            "        handler: index.handler\n"
            "        memorySize: 128\n"
            "        timeout: 60\n"),
        "tests/test_index.py": _py_test("code", (
            "import json\n\n"
            "from index import handler\n\n\n"
            "def test_reverses():\n"
            "    assert json.loads(handler(b'{\"message\": \"abc\"}', None)) == {\"message\": \"cba\"}\n")),
    }, "python -m pytest -q tests"),
    "openwhisk-node": Template("Apache OpenWhisk action (Node.js)", "openwhisk", "node", {
        "reverse.js": (
            "function main(params) {\n"
            "  return {payload: params.payload.split(\"\").reverse().join(\"\")};\n"
            "}\n"
            "exports.main = main;\n"),
        "polyfn.json": '{"name": "%NAME%", "runtime": "node", "flavor": "openwhisk", "handler": "reverse.main"}\n',
        "test/reverse.test.js": (
            "const test = require('node:test');\n"
            "const assert = require('node:assert');\n"
            "const { main } = require('../reverse.js');\n\n"
            "test('reverses the payload', () => {\n"
            "  assert.deepStrictEqual(main({ payload: 'abc' }), { payload: 'cba' });\n"
            "});\n"),
    }, "node --test test/"),
    "tencent-node": Template("Tencent Cloud SCF (Node.js) with a serverless.yml", "tencent", "node", {
        "index.js": (
            "exports.main_handler = async (event, context) => {\n"
            "  return { message: `hello ${event.name || 'world'}`, function: context.function_name };\n"
            "};\n"),
        "serverless.yml": (
            "service: %NAME%\n"
            "provider:\n"
            "  name: tencent\n"
            "  runtime: Nodejs16.13\n"
            "  region: ap-guangzhou\n"
            "plugins:\n"
            "  - serverless-tencent-scf\n"
            "functions:\n"
            "  %NAME%:\n"
            "    handler: index.main_handler\n"),
        "test/index.test.js": (
            "const test = require('node:test');\n"
            "const assert = require('node:assert');\n"
            "const { main_handler } = require('../index.js');\n\n"
            "test('greets', async () => {\n"
            "  const res = await main_handler({ name: 'scf' }, { function_name: 'f' });\n"
            "  assert.deepStrictEqual(res, { message: 'hello scf', function: 'f' });\n"
            "});\n"),
    }, "node --test test/"),
}


#: Arguments for `polyfn run DIR ...` that make a sensible first call (`%DIR%` is the function folder).
RUN_ARGS = {
    "native-python": """--data '{"message": "hello"}'""",
    "aws-python": "--event %DIR%/events/event.json",
    "aws-node": """--data '{"a": 1}'""",
    "gcp-python": "--event http --path '/?name=polyfn'",
    "openfaas-python": "--event http --method POST --data hello",
    "kubeless-python": """--data '"abc"'""",  # Kubeless passes the body as event['data']
    "aliyun-python": """--data '{"message": "abc"}'""",
    "openwhisk-node": """--data '{"payload": "abc"}'""",
    "tencent-node": """--data '{"name": "scf"}'""",
}


def render(template: str, name: str) -> dict[str, str]:
    t = TEMPLATES[template]
    return {path: text.replace("%NAME%", name) for path, text in t.files.items()}


def write(template: str, name: str, dest: Path) -> list[Path]:
    """Write the template into `dest` (which must not exist or be empty); returns the files written."""
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty")
    written = []
    for rel, text in render(template, name).items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        written.append(p)
    return written
