"""Retry decisions (pure): classification, backoff with jitter, attempts, retry_on and max event age."""

from __future__ import annotations

import pytest

from polyfn.model import FunctionSpec
from polyfn.queue import retry


@pytest.mark.parametrize(("status", "code", "cls"), [
    (200, None, "success"),
    (404, None, "success"),  # the function's own 4xx is its answer
    (500, "function_error", "5xx"),
    (502, "function_crashed", "crash"),
    (502, "function_oom", "crash"),
    (502, "function_init_failed", "crash"),
    (504, "function_timeout", "timeout"),
    (429, "too_many_requests", "throttle"),
    (503, "shutting_down", "shutdown"),
    (404, "function_not_found", "missing"),
    (413, "payload_too_large", "fatal"),
    (503, None, "5xx"),
])
def test_classify(status: int, code: str | None, cls: str) -> None:
    assert retry.classify(status, code) == cls


@pytest.mark.parametrize(("error_type", "cls"), [
    ("Runtime.ImportModuleError", "permanent"),  # boto3 missing, a typo in an import: every start fails alike
    ("Runtime.UserCodeSyntaxError", "permanent"),
    ("Runtime.HandlerNotFound", "permanent"),
    ("Runtime.SandboxError", "crash"),  # the node's trouble, may pass on another start
    ("Runtime.InitError", "crash"),
    (None, "crash"),
])
def test_init_errors_permanent_or_transient(error_type: str | None, cls: str) -> None:
    assert retry.classify(502, "function_init_failed", error_type) == cls


def test_permanent_init_error_goes_to_the_dlq_at_once() -> None:
    d = retry.decide("permanent", 1, 0.0, SPEC)
    assert d.action == "dead" and "permanent" in d.reason


def test_backoff_doubles_caps_and_jitters() -> None:
    assert retry.backoff_delay(1, 1.0, 100, lambda: 0.0) == 0.5
    assert retry.backoff_delay(1, 1.0, 100, lambda: 1.0) == 1.0
    assert retry.backoff_delay(3, 1.0, 100, lambda: 1.0) == 4.0
    assert retry.backoff_delay(20, 1.0, 10, lambda: 1.0) == 10.0
    assert 5.0 <= retry.backoff_delay(20, 1.0, 10) <= 10.0


SPEC = FunctionSpec(name="f", retry_attempts=3, retry_backoff=1.0, retry_backoff_max=60, max_event_age=100)


@pytest.mark.parametrize(("cls", "attempt", "age", "action"), [
    ("success", 1, 0, "done"),
    ("5xx", 1, 0, "retry"),
    ("5xx", 2, 0, "retry"),
    ("5xx", 3, 0, "dead"),  # attempts exhausted
    ("timeout", 1, 0, "retry"),
    ("crash", 1, 0, "retry"),
    ("throttle", 10, 0, "retry"),  # throttles do not use up attempts
    ("throttle", 1, 99.9, "dead"),  # ... but respect the max event age
    ("5xx", 1, 99.9, "dead"),
    ("missing", 1, 0, "dead"),
    ("fatal", 1, 0, "dead"),
    ("shutdown", 1, 0, "retry"),
])
def test_decide(cls: str, attempt: int, age: float, action: str) -> None:
    assert retry.decide(cls, attempt, age, SPEC, lambda: 1.0).action == action


def test_retry_on_limits_classes() -> None:
    spec = FunctionSpec(name="f", retry_on=["timeout"])
    assert retry.decide("5xx", 1, 0, spec).action == "dead"
    assert "not in retry_on" in retry.decide("5xx", 1, 0, spec).reason
    assert retry.decide("timeout", 1, 0, spec).action == "retry"
