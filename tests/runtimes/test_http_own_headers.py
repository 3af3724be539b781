"""What an http-runtime program tells polyfn in its response headers (runtimes/http/proxy.own_headers)."""

from __future__ import annotations

import json

import pytest

from polyfn.runtimes.http.proxy import own_headers


def test_logs_and_error_are_taken_out() -> None:
    logs = json.dumps([["stdout", "[Information] hi"], ["stderr", "[Error] boom \u00e9"], ["bad"], ["fd3", "x"]])
    err = {"errorType": "System.Exception", "errorMessage": "boom", "stackTrace": []}
    rest, error, lines = own_headers([("Content-Type", "application/json"), ("X-Polyfn-Logs", logs),
                                      ("X-Polyfn-Function-Error", "Unhandled")], json.dumps(err).encode(), 100)
    assert rest == [("Content-Type", "application/json")]
    assert error == err
    assert [(s, line) for _, s, line in lines] == [("stdout", "[Information] hi"), ("stderr", "[Error] boom é")]


@pytest.mark.parametrize(("logs", "body", "want_lines", "want_error"), [
    ("not json", b"{}", [("stderr", "[polyfn] u")], {}),  # lines are cut at line_max
    ('[["stdout", "' + "x" * 50 + '"]]', b"plain text", [("stdout", "x" * 10)],
     {"errorType": "Unhandled", "errorMessage": "plain text", "stackTrace": []}),
])
def test_bad_values_never_fail_the_call(logs: str, body: bytes, want_lines: list[tuple[str, str]],
                                         want_error: dict[str, object]) -> None:
    _, error, lines = own_headers([("x-polyfn-logs", logs), ("x-polyfn-function-error", "Unhandled")], body, 10)
    assert [(s, line) for _, s, line in lines] == want_lines
    assert error == want_error
