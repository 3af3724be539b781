"""`polyfn list`, `describe`, `delete`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import FakeApi, Run

UPDATED = 1_764_200_100.0


def function(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "revision": 3,
        "created_at": UPDATED - 100,
        "updated_at": UPDATED,
        "code_sha256": "0123456789abcdef" * 4,
        "spec": {
            "name": name,
            "runtime": "python",
            "flavor": "openfaas",
            "handler": "handler.handle",
            "memory": 128,
            "timeout": 10.0,
            "env": {"K": "V"},
        },
        "instances": {"starting": 0, "idle": 1, "busy": 2},
        **extra,
    }


def test_list_prints_one_row_per_function(api: FakeApi, run: Run) -> None:
    api.route("GET", "/v1/functions", json_body={"functions": [function("reverse"), function("echo")]})

    result = run("list")

    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert rows[0].split() == [
        "name", "revision", "flavor", "runtime", "memory", "timeout", "instances", "(idle/busy)", "updated",
    ]  # fmt: skip
    updated = datetime.fromtimestamp(UPDATED).strftime("%Y-%m-%d %H:%M:%S")
    assert rows[1].split() == [
        "reverse",
        "3",
        "openfaas",
        "python",
        "128",
        "MB",
        "10",
        "s",
        "1/2",
        *updated.split(),
    ]
    assert rows[2].split()[0] == "echo"


def test_list_when_empty_and_as_json(api: FakeApi, run: Run) -> None:
    api.route("GET", "/v1/functions", json_body={"functions": []})

    empty = run("list")
    as_json = run("list", "--json")

    assert empty.exit_code == 0 and empty.stdout == ""
    assert "polyfn deploy" in empty.stderr
    assert json.loads(as_json.stdout) == []


def test_describe_shows_spec_revisions_and_url(api: FakeApi, run: Run) -> None:
    revisions = [
        {"number": 3, "created_at": UPDATED, "code_sha256": "aa" * 32},
        {"number": 2, "created_at": UPDATED - 50, "code_sha256": "bb" * 32},
    ]
    api.route("GET", "/v1/functions/reverse", json_body=function("reverse", revisions=revisions))

    result = run("describe", "reverse")

    assert result.exit_code == 0, result.output
    for expected in (
        "reverse",
        "handler.handle",
        "openfaas",
        "K=V",
        f"{api.url}/fn/reverse",
        "1/2 (idle/busy)",
        "aa" * 8,
        "bb" * 8,
    ):
        assert expected in result.stdout


def test_describe_unknown_function(api: FakeApi, run: Run) -> None:
    api.error("GET", "/v1/functions/nope", 404, "function_not_found", "function 'nope' does not exist")
    assert run("describe", "nope").exit_code == 3


def test_delete_does_not_prompt_without_a_tty(api: FakeApi, run: Run) -> None:
    api.route("DELETE", "/v1/functions/reverse", json_body={"deleted": "reverse"})

    result = run("delete", "reverse")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "deleted reverse"
    api.only("DELETE", "/v1/functions/reverse")
