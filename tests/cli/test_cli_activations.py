"""`polyfn logs`, `activations`, `activation`: formatting, --since parsing, following the SSE stream."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from polyfn.cli.activations import parse_since

if TYPE_CHECKING:
    from conftest import FakeApi, Run

NOW = 1_764_200_000.0
LOGS = "/v1/functions/reverse/logs"


def stamp(ts: float) -> str:
    """The expected timestamp token: local time, milliseconds."""
    return datetime.fromtimestamp(ts).isoformat(timespec="milliseconds")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", NOW - 600),
        ("1h", NOW - 3600),
        ("1h30m", NOW - 5400),
        ("90s", NOW - 90),
        ("1.5h", NOW - 5400),
        ("2d", NOW - 2 * 86400),
        ("1w", NOW - 7 * 86400),
        ("500ms", NOW - 0.5),
        (" 10M ", NOW - 600),
        ("1764100000", 1764100000.0),
        ("1764100000.5", 1764100000.5),
        ("2025-11-26T10:00:00+00:00", datetime(2025, 11, 26, 10, tzinfo=UTC).timestamp()),
        ("2025-11-26T10:00", datetime(2025, 11, 26, 10).timestamp()),
    ],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["", "ten minutes", "10x", "m10", "-", "1h-"])
def test_parse_since_rejects_nonsense(bad: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_since(bad, NOW)


def log(ts: float, line: str, stream: str = "stdout", activation: str = "0123456789abcdef") -> dict[str, Any]:
    return {"activation": activation, "ts": ts, "stream": stream, "line": line}


def test_logs_lines_are_timestamp_activation_stream_line(api: FakeApi, run: Run) -> None:
    entries = [log(NOW, "hello [red]world[/red]"), log(NOW + 1.25, "oops", "stderr", "fedcba9876543210")]
    api.route("GET", LOGS, json_body={"logs": entries})

    result = run("logs", "reverse")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{stamp(NOW)} 01234567 stdout hello [red]world[/red]",
        f"{stamp(NOW + 1.25)} fedcba98 stderr oops",
    ]
    assert api.only("GET", LOGS).query == {}


def test_logs_filters_are_forwarded(api: FakeApi, run: Run) -> None:
    api.route("GET", LOGS, json_body={"logs": []})

    result = run("logs", "reverse", "--since", "1764100000", "--activation", "abc", "--limit", "5")

    assert result.exit_code == 0
    assert "no log lines" in result.stderr
    assert api.only("GET", LOGS).query == {"since": ["1764100000.0"], "activation": ["abc"], "limit": ["5"]}


def test_relative_since_is_sent_as_epoch_seconds(api: FakeApi, run: Run) -> None:
    api.route("GET", LOGS, json_body={"logs": []})

    assert run("logs", "reverse", "--since", "10m").exit_code == 0

    sent = float(api.only("GET", LOGS).query["since"][0])
    assert 0 < datetime.now().timestamp() - sent - 600 < 60


def test_bad_since_is_a_usage_error(api: FakeApi, run: Run) -> None:
    result = run("logs", "reverse", "--since", "yesterday-ish")
    assert result.exit_code == 2
    assert "--since" in result.output
    assert api.requests == []


def test_logs_of_unknown_function_exit_not_found(api: FakeApi, run: Run) -> None:
    api.error("GET", "/v1/functions/nope/logs", 404, "function_not_found", "function 'nope' does not exist")
    assert run("logs", "nope").exit_code == 3


def test_follow_consumes_the_event_stream_until_it_ends(api: FakeApi, run: Run) -> None:
    first, second = log(NOW, "first"), log(NOW + 2, "second", "stderr")
    api.route(
        "GET",
        LOGS,
        headers={"Content-Type": "text/event-stream"},
        chunks=[
            b": keep-alive\n\n",
            f"data: {json.dumps(first)}\n\n".encode(),
            b"event: log\nid: 7\n",
            f"data: {json.dumps(second)}\n\n".encode(),
        ],
    )

    result = run("logs", "reverse", "-f", "--limit", "10")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{stamp(NOW)} 01234567 stdout first",
        f"{stamp(NOW + 2)} 01234567 stderr second",
    ]
    request = api.only("GET", LOGS)
    assert request.query == {"follow": ["true"], "limit": ["10"]}
    assert request.headers["accept"] == "text/event-stream"


def activation_record(**overrides: Any) -> dict[str, Any]:
    record = {
        "id": "act-0001",
        "function": "reverse",
        "revision": 2,
        "trigger": "http",
        "start": NOW,
        "end": NOW + 0.0012,
        "duration_ms": 1.2,
        "wait_ms": 0.0,
        "init_ms": 0.0,
        "run_ms": 0.4,
        "cold": True,
        "status": "success",
        "status_code": 200,
        "result": "olleh",
        "error": None,
        "logs": [[NOW, "stdout", "hello"]],
        "instance": "reverse@2#1",
    }
    record.update(overrides)
    return record


def test_activations_table_and_filters(api: FakeApi, run: Run) -> None:
    records = [
        activation_record(),
        activation_record(id="act-0002", cold=False, status="timeout", duration_ms=1500),
    ]
    api.route("GET", "/v1/activations", json_body={"activations": records})

    result = run("activations", "reverse", "--status", "timeout", "--limit", "2")

    assert result.exit_code == 0, result.output
    assert api.only("GET", "/v1/activations").query == {
        "function": ["reverse"],
        "status": ["timeout"],
        "limit": ["2"],
    }
    rows = result.stdout.splitlines()
    assert rows[0].split() == ["id", "function", "rev", "start", "duration", "ms", "cold/warm", "status"]
    start = datetime.fromtimestamp(NOW).strftime("%Y-%m-%d %H:%M:%S")
    assert rows[1].split() == ["act-0001", "reverse", "2", *start.split(), "1.2", "cold", "success"]
    assert rows[2].split() == ["act-0002", "reverse", "2", *start.split(), "1500", "warm", "timeout"]


def test_activations_json_and_unknown_status(api: FakeApi, run: Run) -> None:
    api.route("GET", "/v1/activations", json_body={"activations": [activation_record()]})

    as_json = run("activations", "--json")
    bad = run("activations", "--status", "exploded")

    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == [activation_record()]
    assert bad.exit_code == 2


def test_activation_details_show_result_and_logs(api: FakeApi, run: Run) -> None:
    api.route("GET", "/v1/activations/act-0001", json_body=activation_record())

    result = run("activation", "act-0001")

    assert result.exit_code == 0, result.output
    for expected in (
        "activation act-0001",
        "reverse revision 2",
        "success (HTTP 200)",
        "reverse@2#1",
        "olleh",
    ):
        assert expected in result.stdout
    assert f"{stamp(NOW)} stdout hello" in result.stdout


def test_activation_details_show_the_function_error(api: FakeApi, run: Run) -> None:
    error = {"errorType": "KeyError", "errorMessage": "'name'", "stackTrace": ['File "handler.py", line 2']}
    api.route(
        "GET",
        "/v1/activations/act-0002",
        json_body=activation_record(id="act-0002", status="error", status_code=500, result="", error=error),
    )

    result = run("activation", "act-0002")

    assert result.exit_code == 0
    assert "KeyError: 'name'" in result.stdout
    assert 'File "handler.py", line 2' in result.stdout


def test_unknown_activation_exits_not_found_with_hint(api: FakeApi, run: Run) -> None:
    api.error("GET", "/v1/activations/zzz", 404, "activation_not_found", "activation 'zzz' does not exist")

    result = run("activation", "zzz")

    assert result.exit_code == 3
    assert "polyfn activations" in result.stderr
