"""`polyfn invoke`: payload sources, raw output, and exit codes for platform and function errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import FakeApi, Run

INVOKE = "/v1/functions/reverse/invoke"
ANSWER_HEADERS = {"X-Polyfn-Activation-Id": "act-0123456789", "X-Polyfn-Cold": "true"}


def test_default_payload_and_body_printed_byte_for_byte(api: FakeApi, run: Run) -> None:
    api.route("POST", INVOKE, body=b"olleh [bold]not markup[/bold]", headers=ANSWER_HEADERS)

    result = run("invoke", "reverse")

    assert result.exit_code == 0, result.output
    request = api.only("POST", INVOKE)
    assert request.body == b"{}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer test-key"
    # not a TTY: no newline added, no Rich markup interpreted
    assert result.stdout_bytes == b"olleh [bold]not markup[/bold]"
    assert result.stderr == ""


def test_data_is_sent_as_given(api: FakeApi, run: Run) -> None:
    api.route("POST", INVOKE, body=b"{}\n")
    payload = '{"b": 1,   "a": [1, 2]}'

    assert run("invoke", "reverse", "--data", payload).exit_code == 0
    assert api.only("POST", INVOKE).body == payload.encode()


def test_data_from_file_and_stdin(api: FakeApi, run: Run, tmp_path: Path) -> None:
    api.route("POST", INVOKE, body=b"ok")
    event = tmp_path / "event.json"
    event.write_text('{"Records": []}')

    assert run("invoke", "reverse", "-d", f"@{event}").exit_code == 0
    assert run("invoke", "reverse", "--data", "-", input=b'"from stdin"').exit_code == 0

    bodies = [r.body for r in api.requests]
    assert bodies == [b'{"Records": []}', b'"from stdin"']


def test_invalid_json_is_a_usage_error(api: FakeApi, run: Run) -> None:
    result = run("invoke", "reverse", "--data", "{not json")

    assert result.exit_code == 2
    assert "not valid JSON" in result.output and "--raw" in result.output
    assert api.requests == []


def test_unreadable_data_file_is_a_usage_error(api: FakeApi, run: Run, tmp_path: Path) -> None:
    result = run("invoke", "reverse", "--data", f"@{tmp_path / 'missing.json'}")
    assert result.exit_code == 2
    assert api.requests == []


def test_raw_sends_bytes_as_octet_stream(api: FakeApi, run: Run) -> None:
    api.route("POST", INVOKE, body=b"\x00\xffbinary")

    result = run("invoke", "reverse", "--raw", "--data", "hello world")

    assert result.exit_code == 0, result.output
    request = api.only("POST", INVOKE)
    assert request.body == b"hello world"
    assert request.headers["content-type"] == "application/octet-stream"
    assert result.stdout_bytes == b"\x00\xffbinary"


def test_verbose_reports_activation_and_cold_on_stderr(api: FakeApi, run: Run) -> None:
    api.route("POST", INVOKE, body=b"olleh", headers=ANSWER_HEADERS)

    result = run("invoke", "reverse", "-v")

    assert result.exit_code == 0
    assert result.stdout_bytes == b"olleh"
    assert "activation act-0123456789" in result.stderr
    assert "cold" in result.stderr


def test_unknown_function_exits_not_found(api: FakeApi, run: Run) -> None:
    api.error(
        "POST", "/v1/functions/nope/invoke", 404, "function_not_found", "function 'nope' does not exist"
    )

    result = run("invoke", "nope")

    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "error [function_not_found]: function 'nope' does not exist; see deployed functions with `polyfn list`"
    )


def test_rejected_key_exits_auth_and_names_the_key_source(api: FakeApi, run: Run) -> None:
    api.error("POST", INVOKE, 401, "unauthorized", "missing or wrong API key")

    result = run("invoke", "reverse")

    assert result.exit_code == 4
    assert "error [unauthorized]: missing or wrong API key" in result.stderr
    assert "the key came from --api-key" in result.stderr


def test_function_error_prints_its_payload_and_exits_function_error(api: FakeApi, run: Run) -> None:
    payload = {"errorType": "ZeroDivisionError", "errorMessage": "division by zero", "stackTrace": ["x"]}
    api.route(
        "POST",
        INVOKE,
        status=500,
        json_body=payload,
        headers={"X-Polyfn-Error": "function_error", "X-Polyfn-Activation-Id": "act-42"},
    )

    result = run("invoke", "reverse")

    assert result.exit_code == 6
    assert json.loads(result.stdout) == payload
    assert "function 'reverse' raised an error (activation act-42)" in result.stderr
    assert "polyfn logs reverse --activation act-42" in result.stderr


def test_function_error_without_marker_header_is_still_a_function_error(api: FakeApi, run: Run) -> None:
    api.route("POST", INVOKE, status=500, json_body={"errorType": "ValueError", "errorMessage": "bad"})

    result = run("invoke", "reverse")

    assert result.exit_code == 6
    assert "ValueError" in result.stdout


@pytest.mark.parametrize(
    ("status", "code", "exit_code"),
    [
        (504, "function_timeout", 6),
        (502, "function_crashed", 6),
        (502, "function_init_failed", 6),
        (429, "too_many_requests", 1),
        (413, "payload_too_large", 1),
        (503, "shutting_down", 1),
    ],
)
def test_platform_errors_map_to_exit_codes(
    api: FakeApi, run: Run, status: int, code: str, exit_code: int
) -> None:
    api.error("POST", INVOKE, status, code, f"{code} happened")

    result = run("invoke", "reverse")

    assert result.exit_code == exit_code
    assert f"error [{code}]: {code} happened" in result.stderr
    assert result.stdout == ""


def test_error_without_envelope_is_still_readable(api: FakeApi, run: Run) -> None:
    api.route(
        "POST", INVOKE, status=502, body=b"<html>Bad Gateway</html>", headers={"X-Polyfn-Error": "proxy"}
    )

    result = run("invoke", "reverse")

    assert result.exit_code == 1
    assert "error [proxy]: <html>Bad Gateway</html>" in result.stderr


def test_event_kind_is_sent_as_query(api: FakeApi, run: Run) -> None:
    api.route("POST", INVOKE, body=b'{"Records": []}')

    result = run("invoke", "reverse", "--event", "s3:put", "--data", '{"bucket": "b", "key": "k"}')

    assert result.exit_code == 0, result.output
    request = api.only("POST", INVOKE)
    assert request.query == {"event": ["s3:put"]}
    assert request.json() == {"bucket": "b", "key": "k"}


def test_unknown_event_kind_is_a_usage_error(api: FakeApi, run: Run) -> None:
    result = run("invoke", "reverse", "--event", "s4:put")

    assert result.exit_code == 2
    assert "unknown event kind" in result.output and "s3:put" in result.output
    assert api.requests == []


def test_event_with_raw_is_a_usage_error(api: FakeApi, run: Run) -> None:
    assert run("invoke", "reverse", "--event", "sqs", "--raw", "--data", "x").exit_code == 2
    assert api.requests == []
