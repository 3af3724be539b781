"""How the CLI finds the server and key, the unreachable/401 messages, --debug, and --help hygiene."""

from __future__ import annotations

import json
import socket
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import typer
from typer.testing import CliRunner

from polyfn.cli.config import resolve
from polyfn.cli.main import ExitStatus, app

if TYPE_CHECKING:
    from conftest import FakeApi, Run

LIST = "/v1/functions"


def free_port() -> int:
    """A port nobody listens on (bound then released), for the unreachable-server case."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_server_files(directory: Path, url: str, key: str | None = "secret-key") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "server.json").write_text(json.dumps({"url": url, "pid": 12345}))
    if key is not None:
        (directory / "admin.key").write_text(key + "\n")


def test_unreachable_server_exits_5_with_what_to_do(run: Run) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = run("--url", url, "list", connect=False)

    assert result.exit_code == ExitStatus.SERVER_UNREACHABLE == 5
    assert result.stderr.strip() == (
        f"cannot reach polyfn at {url}: is `polyfn serve` running? (set POLYFN_URL to point elsewhere)"
    )
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback_and_keeps_the_exit_code(run: Run) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = run("--debug", "--url", url, "list", connect=False)

    assert result.exit_code == 5
    assert "Traceback" in result.stderr
    assert "cannot reach polyfn" in result.stderr


def test_url_and_key_are_discovered_from_the_data_dir(api: FakeApi, run: Run, data_dir: Path) -> None:
    write_server_files(data_dir, api.url)
    api.route("GET", LIST, json_body={"functions": []})

    result = run("list", connect=False)  # POLYFN_DATA_DIR points at data_dir

    assert result.exit_code == 0, result.output
    assert api.only("GET", LIST).headers["authorization"] == "Bearer secret-key"


def test_data_dir_option_wins_over_env(api: FakeApi, run: Run, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write_server_files(other, api.url, key="other-key")
    api.route("GET", LIST, json_body={"functions": []})

    result = run("--data-dir", str(other), "list", connect=False)

    assert result.exit_code == 0, result.output
    assert api.only("GET", LIST).headers["authorization"] == "Bearer other-key"


def test_env_url_and_key_override_the_data_dir(api: FakeApi, run: Run, data_dir: Path) -> None:
    write_server_files(data_dir, f"http://127.0.0.1:{free_port()}", key="file-key")
    api.route("GET", LIST, json_body={"functions": []})

    result = run("list", connect=False, env={"POLYFN_URL": api.url, "POLYFN_API_KEY": "env-key"})

    assert result.exit_code == 0, result.output
    assert api.only("GET", LIST).headers["authorization"] == "Bearer env-key"


def test_401_with_key_from_file_names_the_file(api: FakeApi, run: Run, data_dir: Path) -> None:
    write_server_files(data_dir, api.url, key="stale-key")
    api.error("GET", LIST, 401, "unauthorized", "missing or wrong API key")

    result = run("list", connect=False)

    assert result.exit_code == ExitStatus.AUTH == 4
    assert f"the key was read from {data_dir / 'admin.key'}" in result.stderr
    assert "POLYFN_API_KEY" in result.stderr


def test_401_with_key_from_env_names_the_variable(api: FakeApi, run: Run) -> None:
    api.error("GET", LIST, 401, "unauthorized", "missing or wrong API key")

    result = run("list", connect=False, env={"POLYFN_URL": api.url, "POLYFN_API_KEY": "wrong"})

    assert result.exit_code == 4
    assert "the key came from POLYFN_API_KEY" in result.stderr


def test_401_without_any_key_says_where_it_looked(api: FakeApi, run: Run, data_dir: Path) -> None:
    api.error("GET", LIST, 401, "unauthorized", "missing API key")

    result = run("--url", api.url, "list", connect=False)

    assert result.exit_code == 4
    assert "authorization" not in api.only("GET", LIST).headers
    assert f"no API key was sent ({data_dir / 'admin.key'} does not exist)" in result.stderr


@pytest.mark.parametrize(
    ("server_json", "expected_url", "expected_source"),
    [
        (None, "http://127.0.0.1:8080", "default"),
        ("not json", "http://127.0.0.1:8080", "default"),
        ('{"pid": 1}', "http://127.0.0.1:8080", "default"),
        ('{"url": "http://10.0.0.5:9000/"}', "http://10.0.0.5:9000", "server.json"),
    ],
)
def test_resolve_url(
    tmp_path: Path, server_json: str | None, expected_url: str, expected_source: str
) -> None:
    if server_json is not None:
        (tmp_path / "server.json").write_text(server_json)

    target = resolve(tmp_path)

    assert target.url == expected_url
    assert target.url_source.endswith(expected_source)


def test_resolve_prefers_explicit_values(tmp_path: Path) -> None:
    write_server_files(tmp_path, "http://elsewhere:1", key="file-key")

    target = resolve(
        tmp_path, url="http://here:2", url_source="POLYFN_URL", api_key="k", key_source="--api-key"
    )

    assert (target.url, target.url_source, target.api_key, target.key_source) == (
        "http://here:2",
        "POLYFN_URL",
        "k",
        "--api-key",
    )


def test_empty_key_file_means_no_key(tmp_path: Path) -> None:
    (tmp_path / "admin.key").write_text("\n")
    target = resolve(tmp_path)
    assert target.api_key is None
    assert "is empty" in target.key_source


def test_version_with_and_without_a_server(api: FakeApi, run: Run) -> None:
    api.route("GET", "/healthz", json_body={"status": "ok", "version": "9.9.9"})

    up = run("version")
    down = run("--url", f"http://127.0.0.1:{free_port()}", "version", connect=False)

    assert up.exit_code == 0 and down.exit_code == 0
    assert "(client)" in up.stdout and "polyfn 9.9.9 (server at" in up.stdout
    assert "server not reachable" in down.stdout


def test_serve_hands_options_to_polyfn_server(
    run: Run, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    server = types.ModuleType("polyfn.server")
    server.serve = lambda **kwargs: calls.append(kwargs)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "polyfn.server", server)

    default = run("serve", connect=False)
    custom = run(
        "serve", "--host", "0.0.0.0", "--port", "9999", "--examples", connect=False, env={"POLYFN_PORT": "1"}
    )
    from_env = run("serve", connect=False, env={"POLYFN_PORT": "8181", "POLYFN_EXAMPLES": "true",
                                                "POLYFN_STORAGE_PORT": "0"})

    assert (default.exit_code, custom.exit_code, from_env.exit_code) == (0, 0, 0), (
        default.output + custom.output
    )
    assert calls == [
        {"host": "127.0.0.1", "port": 8080, "data_dir": data_dir, "examples": False, "storage_port": 9000},
        {"host": "0.0.0.0", "port": 9999, "data_dir": data_dir, "examples": True, "storage_port": 9000},
        {"host": "127.0.0.1", "port": 8181, "data_dir": data_dir, "examples": True, "storage_port": 0},
    ]


def test_every_option_has_a_polyfn_env_var_and_a_documented_default() -> None:
    """STYLE.md point 8: defaults visible in --help, every option settable from POLYFN_* env."""
    root = typer.main.get_command(app)
    commands = [root, *root.commands.values()]  # type: ignore[attr-defined]
    for group in list(commands[1:]):  # subcommands of groups (`polyfn trigger add`, `polyfn dlq list`, ...)
        commands += list(getattr(group, "commands", {}).values())
    checked = 0
    for command in commands:
        for param in command.params:
            if param.param_type_name != "option" or param.name in (
                "help",
                "install_completion",
                "show_completion",
            ):
                continue
            envvar = param.envvar if isinstance(param.envvar, str) else None
            assert envvar and envvar.startswith("POLYFN_"), (
                f"{command.name} {param.opts} has no POLYFN_ env var"
            )
            assert param.show_default not in (None, False), f"{command.name} {param.opts} hides its default"
            checked += 1
    assert checked > 30


def test_help_mentions_defaults() -> None:
    result = CliRunner().invoke(app, ["deploy", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "POLYFN_DEPLOY_MEMORY" in result.stdout
    assert "256, set by the server" in result.stdout
