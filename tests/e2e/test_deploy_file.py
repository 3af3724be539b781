"""`polyfn deploy -f FILE` with the real CLI against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HANDLE = 'def handle(req):\n    """handle a request to the function"""\n    return req[::-1]\n'
LAMBDA = (
    "def lambda_handler(event, context):\n"
    "    message = event['message'][::-1]\n"
    "    return {\n"
    "        'message' : message\n"
    "    }\n"
)


def cron_outcome(server: Any, name: str, out: str, schedule: str) -> None:
    """With a trigger API on the server the file's cron trigger exists; without, the output says it was skipped."""
    if server.api.get("/v1/triggers").status_code == 200:
        assert "created as cron trigger" in out
        triggers = server.api.get(f"/v1/functions/{name}/triggers").json()["triggers"]
        assert [t["config"]["schedule"] for t in triggers if t["kind"] == "cron"] == [schedule]
    else:
        assert "skipped: this polyfn server has no trigger API yet" in out


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_openfaas_stack_yml(server: Any, tmp_path: Path) -> None:
    write(tmp_path, {"stack.yml": """
version: 1.0
provider: {name: openfaas, gateway: http://127.0.0.1:8080}
functions:
  stack-reverse:
    lang: python3
    handler: ./reverse
    image: reverse:latest
    environment: {MODE: test}
    annotations: {topic: cron-function, schedule: "*/5 * * * *"}
""", "reverse/handler.py": HANDLE})
    r = server.cli("deploy", "-f", str(tmp_path / "stack.yml"))
    assert r.returncode == 0, r.stderr
    assert "deployed stack-reverse" in r.stdout
    assert "trigger cron(cron=*/5 * * * *)" in r.stdout and "functions.stack-reverse.annotations" in r.stdout
    cron_outcome(server, "stack-reverse", r.stdout, "*/5 * * * *")
    assert f"{server.url}/fn/stack-reverse" in r.stdout
    assert server.http.post("/fn/stack-reverse", content=b"hello").text == "olleh"
    spec = server.api.get("/v1/functions/stack-reverse").json()["spec"]
    assert spec["env"] == {"MODE": "test"} and spec["annotations"]["openfaas/image"] == "reverse:latest"


def test_sam_template_and_dry_run(server: Any, tmp_path: Path) -> None:
    write(tmp_path, {"template.yaml": """
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting: {Type: String, Default: hi}
Resources:
  SamReverse:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: lambda_function.lambda_handler
      Runtime: python3.12
      Environment:
        Variables: {GREETING: !Sub "${Greeting}-there"}
      Events:
        Every:
          Type: Schedule
          Properties: {Schedule: rate(1 hour)}
""", "src/lambda_function.py": LAMBDA})
    r = server.cli("deploy", "-f", str(tmp_path / "template.yaml"), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "samreverse" in r.stdout and "cron" in r.stdout
    assert server.api.get("/v1/functions/samreverse").status_code == 404
    r = server.cli("deploy", "-f", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "deployed samreverse" in r.stdout and "trigger cron(every=3600)" in r.stdout
    cron_outcome(server, "samreverse", r.stdout, "0 * * * *")
    r = server.cli("deploy", "-f", str(tmp_path))  # a redeploy replaces the file's triggers, no duplicates
    assert r.returncode == 0, r.stderr
    cron_outcome(server, "samreverse", r.stdout, "0 * * * *")
    out = server.api.post("/v1/functions/samreverse/invoke", json={"message": "polyfn"})
    assert out.json() == {"message": "nfylop"}
    assert server.api.get("/v1/functions/samreverse").json()["spec"]["env"] == {"GREETING": "hi-there"}


def test_bad_files_fail_with_the_key_named(server: Any, tmp_path: Path) -> None:
    write(tmp_path, {"serverless.yml": "service: s\nprovider: {name: aws, runtime: python3.12, colour: red}\n"
                     "functions:\n  f: {handler: h.f}\n", "h.py": "def f(event, context):\n    return 1\n"})
    r = server.cli("deploy", "-f", str(tmp_path / "serverless.yml"))
    assert r.returncode == 1
    assert "provider: unsupported key(s) colour" in r.stderr
    write(tmp_path, {"serverless.yml": "service: s\nprovider: {name: aws, runtime: java21}\n"
                     "functions:\n  f: {handler: h.f}\n  g: {handler: h.f, runtime: python3.12}\n"})
    r = server.cli("deploy", "-f", str(tmp_path / "serverless.yml"))
    assert r.returncode == 1
    assert "not deployed f" in r.stdout and "java21" in r.stdout
    assert "deployed g" in r.stdout


def test_scaffolds_deploy_as_written(server: Any, tmp_path: Path) -> None:
    from polyfn.scaffold import write as scaffold

    scaffold("native-python", "new-native", tmp_path / "nat")
    r = server.cli("deploy", str(tmp_path / "nat"))
    assert r.returncode == 0, r.stderr
    assert "deployed new-native" in r.stdout  # the name comes from polyfn.json, not the folder
    assert server.api.post("/v1/functions/new-native/invoke", json={"message": "ab"}).json() == {"message": "ba"}
    scaffold("openfaas-python", "new-faas", tmp_path / "faas")
    r = server.cli("deploy", "-f", str(tmp_path / "faas"))
    assert r.returncode == 0, r.stderr
    assert server.http.post("/fn/new-faas", content=b"abc").text == "cba"


def test_sam_example_deploys_and_runs(server: Any) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "compat" / "sam"
    r = server.cli("deploy", "-f", str(example))
    assert r.returncode == 0, r.stderr
    assert "deployed sam-reverse" in r.stdout
    cron_outcome(server, "sam-reverse", r.stdout, "0 3 * * *")
    assert server.api.post("/v1/functions/sam-reverse/invoke", json={"message": "seed"}).json() == {"message": "dees"}


def test_other_examples_deploy_and_run(server: Any) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "compat"
    for folder in ("serverless", "azure", "aliyun"):
        r = server.cli("deploy", "-f", str(examples / folder))
        assert r.returncode == 0, r.stdout + r.stderr
    assert "Go Serverless v1.0!" in server.http.get("/fn/sls-hello").text
    assert server.http.get("/fn/httpreverse", params={"text": "abc"}).text == "cba"
    assert server.api.post("/v1/functions/fc-reverse/invoke", json={"message": "abc"}).json() == {"message": "cba"}
