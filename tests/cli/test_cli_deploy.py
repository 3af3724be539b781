"""`polyfn deploy`: request shapes for file / directory / zip, spec fields, --env, streamed progress."""

from __future__ import annotations

import base64
import email.parser
import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from polyfn.cli.deploy import default_name, parse_env

if TYPE_CHECKING:
    from conftest import FakeApi, Recorded, Run


def function_object(name: str, revision: int = 1, **spec: Any) -> dict[str, Any]:
    """A function object as docs/api.md describes it."""
    full = {"name": name, "runtime": "python", "flavor": "native", "handler": "handler.handler", **spec}
    return {
        "name": name,
        "revision": revision,
        "created_at": 1764200000.0,
        "updated_at": 1764200000.0,
        "code_sha256": "ab" * 32,
        "spec": full,
        "detected": {"flavor": full["flavor"], "handler": full["handler"]},
    }


def ndjson(*events: dict[str, Any]) -> list[bytes]:
    return [json.dumps(event).encode() + b"\n" for event in events]


def stream_deploy(api: FakeApi, function: dict[str, Any], *progress: str) -> None:
    """The server's streamed deploy answer: progress lines, then `done`."""
    events = [{"event": "progress", "message": message} for message in progress]
    api.route(
        "POST",
        "/v1/functions",
        headers={"Content-Type": "application/x-ndjson"},
        chunks=ndjson(*events, {"event": "done", "function": function}),
    )


def multipart(request: Recorded) -> dict[str, bytes]:
    """Decode a multipart/form-data body into {field name: bytes} with the stdlib parser."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser().parsebytes(head + request.body)
    assert message.is_multipart()
    parts: dict[str, bytes] = {}
    for part in message.get_payload():
        name = part.get_param("name", header="content-disposition")
        parts[str(name)] = part.get_payload(decode=True)
    return parts


def test_single_text_file_is_sent_inline_as_json_with_only_the_name(
    api: FakeApi, run: Run, tmp_path: Path
) -> None:
    source = tmp_path / "My_Func.py"
    source.write_text("def handler(event, context):\n    return event\n")
    stream_deploy(api, function_object("my-func", handler="My_Func.handler"), "installing nothing", "ready")

    result = run("deploy", str(source))

    assert result.exit_code == 0, result.output
    request = api.only("POST", "/v1/functions")
    assert request.query == {"stream": ["true"]}
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"name": "my-func", "files": {"My_Func.py": source.read_text()}}
    assert "installing nothing" in result.stderr and "ready" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "deployed my-func revision 1 (flavor native, handler My_Func.handler)"
    assert lines[1].strip() == f"url: {api.url}/fn/my-func"
    assert "detected: flavor=native, handler=My_Func.handler" in result.stdout


def test_binary_file_goes_into_files_base64(api: FakeApi, run: Run, tmp_path: Path) -> None:
    blob = tmp_path / "model.bin"
    blob.write_bytes(b"\x00\x01\xff\xfe")
    stream_deploy(api, function_object("model"))

    result = run("deploy", str(blob), "--handler", "x.y")

    assert result.exit_code == 0, result.output
    body = api.only("POST", "/v1/functions").json()
    assert body == {"name": "model", "handler": "x.y", "files_base64": {"model.bin": "AAH//g=="}}
    assert base64.b64decode(body["files_base64"]["model.bin"]) == blob.read_bytes()


def test_directory_is_zipped_without_junk_and_sent_as_multipart(
    api: FakeApi, run: Run, tmp_path: Path
) -> None:
    root = tmp_path / "Reverse_Fn"
    files = {
        "handler.py": "def handle(req):\n    return req[::-1]\n",
        "requirements.txt": "",
        "lib/util.py": "X = 1\n",
        "run.sh": "#!/bin/sh\n",
        ".git/config": "[core]\n",
        "__pycache__/handler.cpython-311.pyc": "junk",
        "lib/__pycache__/util.cpython-311.pyc": "junk",
        ".venv/lib/site.py": "junk",
        "node_modules/left-pad/index.js": "junk",
        "stale.pyc": "junk",
    }
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    (root / "run.sh").chmod(0o755)
    stream_deploy(api, function_object("reverse-fn", flavor="openfaas", handler="handler.handle"))

    result = run(
        "deploy", str(root), "--flavor", "openfaas", "--memory", "128", "--timeout", "2.5",
        "--env", "A=1", "-e", "B=x=y", "--max-instances", "3",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    request = api.only("POST", "/v1/functions")
    assert request.headers["content-type"].startswith("multipart/form-data")
    parts = multipart(request)
    assert json.loads(parts["spec"]) == {
        "name": "reverse-fn",
        "flavor": "openfaas",
        "memory": 128,
        "timeout": 2.5,
        "max_instances": 3,
        "env": {"A": "1", "B": "x=y"},
    }
    with zipfile.ZipFile(io.BytesIO(parts["code"])) as archive:
        assert sorted(archive.namelist()) == ["handler.py", "lib/util.py", "requirements.txt", "run.sh"]
        assert archive.read("handler.py").decode() == files["handler.py"]
        assert (archive.getinfo("run.sh").external_attr >> 16) & 0o111, "executable bit kept"
    assert "deployed reverse-fn revision 1 (flavor openfaas, handler handler.handle)" in result.stdout


def test_zip_file_is_uploaded_as_is(api: FakeApi, run: Run, tmp_path: Path) -> None:
    archive_path = tmp_path / "hello_world.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("index.py", "def handler(e, c):\n    return 'hi'\n")
        archive.writestr("__pycache__/kept.pyc", "the user's zip is not filtered")
    stream_deploy(api, function_object("hello-world"))

    result = run("deploy", str(archive_path))

    assert result.exit_code == 0, result.output
    parts = multipart(api.only("POST", "/v1/functions"))
    assert parts["code"] == archive_path.read_bytes()
    assert json.loads(parts["spec"]) == {"name": "hello-world"}


def test_explicit_name_wins(api: FakeApi, run: Run, tmp_path: Path) -> None:
    source = tmp_path / "handler.py"
    source.write_text("x = 1\n")
    stream_deploy(api, function_object("other"))

    assert run("deploy", str(source), "--name", "other").exit_code == 0
    assert api.only("POST", "/v1/functions").json()["name"] == "other"


@pytest.mark.parametrize(
    ("relative", "is_dir", "expected"),
    [
        ("handler.py", False, "handler"),
        ("My_Func.py", False, "my-func"),
        ("pkg.zip", False, "pkg"),
        ("Some_Dir", True, "some-dir"),
    ],
)
def test_default_name(tmp_path: Path, relative: str, is_dir: bool, expected: str) -> None:
    path = tmp_path / relative
    path.mkdir() if is_dir else path.write_text("")
    assert default_name(path) == expected


def test_default_name_of_current_directory_is_its_real_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "My_Project"
    work.mkdir()
    monkeypatch.chdir(work)
    assert default_name(Path(".")) == "my-project"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], {}),
        (["A=1"], {"A": "1"}),
        (["A=", "B=c=d"], {"A": "", "B": "c=d"}),
        (["A=1", "A=2"], {"A": "2"}),
    ],
)
def test_parse_env(values: list[str], expected: dict[str, str]) -> None:
    assert parse_env(values) == expected


@pytest.mark.parametrize("bad", ["NOEQUALS", "=value"])
def test_bad_env_is_a_usage_error_and_sends_nothing(api: FakeApi, run: Run, tmp_path: Path, bad: str) -> None:
    source = tmp_path / "handler.py"
    source.write_text("x = 1\n")

    result = run("deploy", str(source), "--env", bad)

    assert result.exit_code == 2, result.output
    assert "KEY=VALUE" in result.output
    assert api.requests == []


def test_missing_path_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    result = run("deploy", str(tmp_path / "nope.py"))
    assert result.exit_code == 2


def test_empty_directory_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    (tmp_path / "empty" / ".git").mkdir(parents=True)
    result = run("deploy", str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert "no files to deploy" in result.output


def test_streamed_error_event_is_reported_with_its_code(api: FakeApi, run: Run, tmp_path: Path) -> None:
    source = tmp_path / "handler.py"
    source.write_text("x = 1\n")
    api.route(
        "POST",
        "/v1/functions",
        headers={"Content-Type": "application/x-ndjson"},
        chunks=ndjson(
            {"event": "progress", "message": "pip install nosuchpkg"},
            {
                "event": "error",
                "error": {"code": "dependency_install_failed", "message": "No matching distribution"},
            },
        ),
    )

    result = run("deploy", str(source))

    assert result.exit_code == 1
    assert "error [dependency_install_failed]: No matching distribution" in result.stderr
    assert "deployed" not in result.stdout


def test_validation_error_before_streaming_gives_hint(api: FakeApi, run: Run, tmp_path: Path) -> None:
    source = tmp_path / "9lives.py"
    source.write_text("x = 1\n")
    api.error("POST", "/v1/functions", 400, "invalid_name", "invalid function name '9lives'")

    result = run("deploy", str(source))

    assert result.exit_code == 1
    assert (
        "error [invalid_name]: invalid function name '9lives'; pass a valid name with `--name`"
        in result.stderr
    )


def test_server_answering_without_streaming_still_works(api: FakeApi, run: Run, tmp_path: Path) -> None:
    source = tmp_path / "handler.py"
    source.write_text("x = 1\n")
    api.route("POST", "/v1/functions", status=201, json_body=function_object("handler", revision=4))

    result = run("deploy", str(source))

    assert result.exit_code == 0, result.output
    assert "deployed handler revision 4" in result.stdout
