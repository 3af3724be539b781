"""Definition files → plans: every format, its triggers, and the errors for what polyfn cannot do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyfn.manifests import ManifestError, load, schedules
from polyfn.manifests.cfn import Resolver
from polyfn.manifests.cfn import load as cfn_load

HANDLE = 'def handle(req):\n    """handle a request to the function"""\n    return req[::-1]\n'
LAMBDA = "def lambda_handler(event, context):\n    return {'message': event['message'][::-1]}\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


STACK = """
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  reverse:
    lang: python3
    handler: ./reverse
    image: reverse:latest
    environment:
      write_debug: true
    environment_file: [env.yml]
    limits: {memory: 128Mi}
    labels: {com.openfaas.scale.min: "1"}
    annotations:
      topic: cron-function
      schedule: "*/5 * * * *"
    secrets: [api-key]
  web:
    lang: python3-http
    handler: ./web
  gofn:
    lang: go
    handler: ./gofn
"""


def test_openfaas_stack(tmp_path: Path) -> None:
    write(tmp_path, {"stack.yml": STACK, "reverse/handler.py": HANDLE, "env.yml": "environment:\n  A: '1'\n",
                     "web/handler.py": "def handle(event, context):\n    return 'x'\n", "gofn/handler.go": ""})
    plan = load(tmp_path / "stack.yml")
    assert plan.format == "openfaas"
    rev, web, gofn = plan.functions
    assert rev.spec == {"name": "reverse", "runtime": "python", "flavor": "openfaas", "handler": "handler.handle",
                        "env": {"A": "1", "write_debug": "true"}, "memory": 128, "min_instances": 1,
                        "max_instances": 10, "secrets": ["api-key"],
                        "annotations": {"openfaas.label/com.openfaas.scale.min": "1",
                                        "openfaas.annotation/topic": "cron-function",
                                        "openfaas.annotation/schedule": "*/5 * * * *", "openfaas/image": "reverse:latest",
                                        "openfaas/limits": '{"memory": "128Mi"}'}}
    assert rev.code_dir == (tmp_path / "reverse").resolve()
    assert [(t.kind, t.config) for t in rev.triggers] == [("cron", {"cron": "*/5 * * * *"}), ("http", {})]
    assert any("api-key" in n and "/run/secrets" in n for n in rev.notes)
    assert web.error is None and web.spec["flavor"] == "openfaas-http"
    assert "container image" in (gofn.error or "")


def test_openfaas_unknown_key_is_named(tmp_path: Path) -> None:
    write(tmp_path, {"stack.yml": STACK.replace("    image: reverse:latest", "    imagee: x"), "reverse/handler.py": HANDLE})
    with pytest.raises(ManifestError, match=r"functions\.reverse: unsupported key\(s\) imagee"):
        load(tmp_path / "stack.yml")


SERVERLESS = """
service: hello-svc
frameworkVersion: '3'
provider:
  name: aws
  runtime: python3.12
  stage: dev
  memorySize: 256
  environment:
    SERVICE: ${self:service}
    STAGE: ${opt:stage, 'dev'}
    TOKEN: ${env:HELLO_TOKEN}
functions:
  hello:
    handler: handler.hello
    timeout: 10
    events:
      - httpApi: {path: /hello, method: get}
      - schedule: rate(5 minutes)
      - schedule: {rate: ["cron(0 12 ? * 2 *)"], input: {k: v}}
      - s3: {bucket: photos, event: "s3:ObjectCreated:*"}
      - sqs: arn:aws:sqs:us-east-1:123456789012:jobs
      - alexaSkill: amzn1.ask.skill.x
"""


def test_serverless_aws(tmp_path: Path) -> None:
    write(tmp_path, {"serverless.yml": SERVERLESS, "handler.py": "def hello(event, context):\n    return 1\n"})
    plan = load(tmp_path, {"HELLO_TOKEN": "t0k"})
    assert plan.format == "serverless"
    (fn,) = plan.functions
    assert fn.spec["handler"] == "handler.hello" and fn.spec["memory"] == 256 and fn.spec["timeout"] == 10.0
    assert fn.spec["env"] == {"SERVICE": "hello-svc", "STAGE": "dev", "TOKEN": "t0k"}
    assert fn.spec["runtime"] == "python"
    kinds = [(t.kind, t.config) for t in fn.triggers]
    assert kinds[0][0] == "http"
    assert kinds[1] == ("cron", {"every": 300})
    assert kinds[2] == ("cron", {"cron": "0 12 * * 1", "payload": {"k": "v"}})
    assert kinds[3][0] == "storage" and kinds[3][1]["bucket"] == "photos"
    assert kinds[4] == ("queue", {"queue": "arn:aws:sqs:us-east-1:123456789012:jobs", "batch_size": 1})
    assert any("alexaSkill" in n for n in fn.notes)
    with pytest.raises(ManifestError, match="HELLO_TOKEN"):
        load(tmp_path)


def test_serverless_tencent(tmp_path: Path) -> None:
    write(tmp_path, {"serverless.yml": """
service: scf-demo
provider: {name: tencent, runtime: Python3.6, region: ap-guangzhou, credentials: ~/credentials}
plugins: [serverless-tencent-scf]
functions:
  hello_world:
    handler: index.main_handler
    environment: {variables: {ENV_FIRST: env1}}
    events:
      - timer: {name: timer, parameters: {cronExpression: '0 */5 * * * * *', enable: true}}
      - apigw: {name: api, parameters: {stageName: release}}
""", "index.py": "def main_handler(event, context):\n    return 1\n"})
    (fn,) = load(tmp_path / "serverless.yml").functions
    assert fn.name == "hello-world" and fn.spec["handler"] == "index.main_handler"
    assert fn.spec["env"] == {"ENV_FIRST": "env1"}
    assert [(t.kind, t.config) for t in fn.triggers][:2] == [("cron", {"cron": "*/5 * * * *"}), ("http", {"name": "api", "parameters": {"stageName": "release"}})]


SAM = """
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: demo
Parameters:
  Stage: {Type: String, Default: prod}
Globals:
  Function:
    Timeout: 5
    Runtime: python3.12
Resources:
  ReverseFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: reverse/
      Handler: lambda_function.lambda_handler
      MemorySize: 256
      Environment:
        Variables:
          STAGE: !Ref Stage
          SELF: !GetAtt ReverseFunction.Arn
          GREETING: !Sub "hello-${Stage}-${AWS::Region}"
          JOINED: !Join ["-", [a, !Ref Stage]]
      Events:
        Nightly:
          Type: Schedule
          Properties: {Schedule: "cron(0 3 * * ? *)"}
        Upload:
          Type: S3
          Properties: {Bucket: !Ref Photos, Events: s3:ObjectCreated:*}
        Get:
          Type: Api
          Properties: {Path: /reverse, Method: get, RestApiId: !Ref MyApi}
  Inline:
    Type: AWS::Serverless::Function
    Properties:
      InlineCode: |
        def handler(event, context):
            return 'inline'
      Handler: index.handler
  Photos:
    Type: AWS::S3::Bucket
Outputs:
  Arn: {Value: !GetAtt ReverseFunction.Arn}
"""


def test_sam_template(tmp_path: Path) -> None:
    write(tmp_path, {"template.yaml": SAM, "reverse/lambda_function.py": LAMBDA})
    plan = load(tmp_path / "template.yaml")
    assert plan.format == "sam"
    rev, inline = plan.functions
    assert rev.name == "reversefunction" and rev.code_dir == (tmp_path / "reverse").resolve()
    assert rev.spec["timeout"] == 5.0 and rev.spec["memory"] == 256
    assert rev.spec["env"] == {"STAGE": "prod", "SELF": "arn:aws:lambda:us-east-1:000000000000:function:reversefunction",
                               "GREETING": "hello-prod-us-east-1", "JOINED": "a-prod"}
    assert [t.kind for t in rev.triggers] == ["cron", "storage", "http"]
    assert rev.triggers[0].config == {"cron": "0 3 * * *"}
    assert rev.triggers[1].config["bucket"] == "Photos"
    assert inline.files == {"index.py": b"def handler(event, context):\n    return 'inline'\n"}
    assert any("AWS::S3::Bucket" in n for n in plan.notes)
    assert load(tmp_path / "template.yaml", {"Stage": "dev"}).functions[0].spec["env"]["STAGE"] == "dev"


def test_sam_unresolvable_intrinsic_is_named_with_location(tmp_path: Path) -> None:
    bad = SAM.replace("SELF: !GetAtt ReverseFunction.Arn", "TABLE: !GetAtt Orders.Arn")
    write(tmp_path, {"template.yaml": bad, "reverse/lambda_function.py": LAMBDA})
    with pytest.raises(ManifestError) as e:
        load(tmp_path / "template.yaml")
    msg = str(e.value)
    assert "!GetAtt Orders.Arn" in msg
    assert "Resources.ReverseFunction.Properties.Environment.Variables.TABLE" in msg
    assert f"line {bad.splitlines().index('          TABLE: !GetAtt Orders.Arn') + 1}" in msg
    bad2 = SAM.replace("STAGE: !Ref Stage", "STAGE: !Ref Missing")
    write(tmp_path, {"template.yaml": bad2})
    with pytest.raises(ManifestError, match="--param Missing=VALUE"):
        load(tmp_path / "template.yaml")
    assert load(tmp_path / "template.yaml", {"Missing": "m"}).functions[0].spec["env"]["STAGE"] == "m"


def test_azure_app_folder(tmp_path: Path) -> None:
    write(tmp_path, {
        "host.json": json.dumps({"version": "2.0", "functionTimeout": "00:02:00",
                                 "extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle"}}),
        "HttpExample/__init__.py": "def main(req):\n    return 'hi'\n",
        "HttpExample/function.json": json.dumps({"scriptFile": "__init__.py", "bindings": [
            {"authLevel": "function", "type": "httpTrigger", "direction": "in", "name": "req", "methods": ["get", "post"]},
            {"type": "http", "direction": "out", "name": "$return"}]}),
        "Timer/__init__.py": "def main(mytimer):\n    pass\n",
        "Timer/function.json": json.dumps({"bindings": [
            {"name": "mytimer", "type": "timerTrigger", "direction": "in", "schedule": "0 */5 * * * *"},
            {"name": "doc", "type": "cosmosDB", "direction": "out"}]}),
        "requirements.txt": "",
    })
    plan = load(tmp_path)
    assert plan.format == "azure"
    http, timer = plan.functions
    assert http.name == "httpexample" and http.code_dir == tmp_path.resolve()
    assert http.spec["handler"] == "HttpExample.main" and http.spec["timeout"] == 120.0
    assert http.triggers[0].kind == "http" and http.triggers[0].config["methods"] == ["get", "post"]
    assert timer.triggers[0].config == {"cron": "*/5 * * * *"}
    assert any("cosmosDB" in n for n in timer.notes)
    assert http.error is None and http.spec["flavor"] == "azure"


def test_aliyun_s_yaml_v2_and_v3(tmp_path: Path) -> None:
    write(tmp_path, {"s.yaml": """
edition: 1.0.0
name: demo
access: default
vars: {region: cn-hangzhou}
services:
  hello:
    component: fc
    props:
      region: ${vars.region}
      service: {name: demo}
      function:
        name: hello-fn
        runtime: python3.9
        codeUri: ./code
        handler: index.handler
        memorySize: 128
        timeout: 30
        environmentVariables: {REGION: '${vars.region}'}
      triggers:
        - name: timer
          type: timer
          config: {cronExpression: '@every 5m', enable: true, payload: 'tick'}
        - name: http
          type: http
          config: {authType: anonymous, methods: [GET]}
""", "code/index.py": "def handler(event, context):\n    return event\n"})
    (fn,) = load(tmp_path / "s.yaml").functions
    assert fn.name == "hello-fn" and fn.spec["env"] == {"REGION": "cn-hangzhou"} and fn.spec["timeout"] == 30.0
    assert (fn.triggers[0].kind, fn.triggers[0].config) == ("cron", {"every": 300, "payload": "tick"})
    write(tmp_path, {"s.yaml": """
edition: 3.0.0
name: demo
resources:
  hello:
    component: fc3
    props:
      region: cn-hangzhou
      functionName: hello3
      runtime: python3.10
      code: ./code
      handler: index.handler
      triggers:
        - triggerName: t
          triggerType: timer
          triggerConfig: {cronExpression: 'CRON_TZ=Asia/Shanghai 0 0 8 * * *', enable: true}
"""})
    (fn,) = load(tmp_path / "s.yaml").functions
    assert fn.name == "hello3"
    assert fn.triggers[0].config == {"cron": "0 8 * * *", "timezone": "Asia/Shanghai"}


def test_unknown_format(tmp_path: Path) -> None:
    write(tmp_path, {"x.yml": "a: 1\n"})
    with pytest.raises(ManifestError, match="cannot tell the format"):
        load(tmp_path / "x.yml")


@pytest.mark.parametrize(("fn", "expr", "want"), [
    (schedules.aws, "rate(1 minute)", {"every": 60}),
    (schedules.aws, "rate(2 hours)", {"every": 7200}),
    (schedules.aws, "cron(15 10 ? * 6L 2002)", None),
    (schedules.aws, "cron(0/15 * * * ? *)", {"cron": "0/15 * * * *"}),
    (schedules.aws, "cron(0 8 ? * 2-6 *)", {"cron": "0 8 * * 1-5"}),
    (schedules.azure, "0 30 9 * * 1-5", {"cron": "30 9 * * 1-5"}),
    (schedules.azure, "*/10 * * * * *", {"every": 10}),
    (schedules.azure, "00:05:00", {"every": 300}),
    (schedules.azure, "5 30 9 * * *", None),
    (schedules.aliyun, "@every 1h30m", {"every": 5400}),
    (schedules.tencent, "0 0 */2 * * * *", {"cron": "0 */2 * * *"}),
    (schedules.cron5, "* * *", None),
])
def test_schedules(fn, expr: str, want) -> None:  # type: ignore[no-untyped-def]
    if want is None:
        with pytest.raises(ValueError):
            fn(expr)
    else:
        assert fn(expr) == want


def test_cfn_long_forms_and_tags() -> None:
    doc = cfn_load('{"A": {"Ref": "P"}, "B": {"Fn::Sub": "x-${P}"}, "C": {"Fn::GetAtt": "F.Arn"}}')
    r = Resolver({"P": {"Default": "v"}}, {}, {"F": "f"})
    assert r.value(doc, "doc") == {"A": "v", "B": "x-v", "C": "arn:aws:lambda:us-east-1:000000000000:function:f"}
    doc = cfn_load("A: !If [Cond, a, b]\n")
    with pytest.raises(ManifestError, match=r"!If .* at doc.A \(line 1\)"):
        r.value(doc, "doc")


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "compat"


@pytest.mark.parametrize("folder", ["sam", "openfaas", "serverless", "azure", "aliyun"])
def test_examples_parse(folder: str) -> None:
    plan = load(EXAMPLES / folder)
    assert plan.functions and all(f.code_dir is None or f.code_dir.is_dir() for f in plan.functions)
    for f in plan.functions:
        if f.error:  # only ever because this server lacks the flavor or runtime
            assert "not supported by this server" in f.error or "does not have" in f.error, f.error
