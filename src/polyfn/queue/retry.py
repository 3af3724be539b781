"""Retry decisions for async invocations and trigger deliveries: pure functions of the outcome, the
function's policy, the attempt number and a random source (no clocks, no I/O), so they are table-testable.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from polyfn.model import FunctionSpec

#: Outcome classes beyond the retryable ones in `model.RETRY_CLASSES`.
SUCCESS = "success"  # the function answered (any status below 500 except 429)
SHUTDOWN = "shutdown"  # the node is draining: run again later without counting the attempt
MISSING = "missing"  # the function does not exist (any more)
FATAL = "fatal"  # will never work as sent (payload too large, …)
PERMANENT = "permanent"  # the function cannot start until it is redeployed (its module does not import …)

#: init errors that the same code will hit again on every start (Lambda's `Runtime.*` init error types);
#: other init failures (sandbox, resources, an init timeout) may pass on a later try and are retried
PERMANENT_INIT = frozenset({"Runtime.ImportModuleError", "Runtime.UserCodeSyntaxError", "Runtime.HandlerNotFound",
                            "Runtime.HandlerSignature", "Runtime.UnknownFlavor", "Runtime.MalformedHandlerName"})


def classify(status: int, platform_error: str | None, error_type: str | None = None) -> str:
    """The failure class of an invocation from its HTTP status, `X-Polyfn-Error` code (None if absent) and,
    for a failed start, the init error's type."""
    if platform_error == "shutting_down":
        return SHUTDOWN
    if platform_error == "function_not_found":
        return MISSING
    if platform_error in ("payload_too_large", "response_too_large"):
        return FATAL
    if status == 429 or platform_error == "too_many_requests":
        return "throttle"
    if platform_error == "function_timeout" or status == 504:
        return "timeout"
    if platform_error == "function_init_failed" and error_type in PERMANENT_INIT:
        return PERMANENT
    if platform_error in ("function_crashed", "function_oom", "function_init_failed"):
        return "crash"
    if status >= 500:
        return "5xx"
    return SUCCESS


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Delay before retry number `attempt` (1 = first retry): base·2^(attempt-1), capped, with "equal
    jitter" (half fixed, half random) so a burst of failures does not retry in lock-step."""
    d = min(cap, base * (2 ** max(attempt - 1, 0)))
    return d / 2 + rand() * d / 2


class Decision:
    __slots__ = ("action", "delay", "reason")

    def __init__(self, action: str, delay: float = 0.0, reason: str = ""):
        self.action = action  # "done" | "retry" | "dead"
        self.delay = delay
        self.reason = reason

    def __repr__(self) -> str:
        return f"Decision({self.action!r}, {self.delay!r}, {self.reason!r})"


def decide(cls: str, attempt: int, age: float, spec: FunctionSpec,
           rand: Callable[[], float] = random.random) -> Decision:
    """What to do after attempt number `attempt` (1-based) ended with failure class `cls`, the event
    being `age` seconds old. Throttles do not use up attempts (they are bounded by `max_event_age`)."""
    if cls == SUCCESS:
        return Decision("done")
    if cls == SHUTDOWN:
        return Decision("retry", 0.0, "node shutting down")
    if cls == PERMANENT:
        return Decision("dead", reason="the function cannot start (a permanent init error): not retried")
    if cls in (MISSING, FATAL):
        return Decision("dead", reason="function_not_found" if cls == MISSING else "not_retryable")
    if cls not in spec.retry_on:
        return Decision("dead", reason=f"{cls} (not in retry_on)")
    if cls != "throttle" and attempt >= spec.retry_attempts:
        return Decision("dead", reason=f"{cls}: retries exhausted after {attempt} attempt(s)")
    delay = backoff_delay(attempt, spec.retry_backoff, spec.retry_backoff_max, rand)
    if age + delay > spec.max_event_age:
        return Decision("dead", reason=f"max_event_age exceeded ({spec.max_event_age:g} s)")
    return Decision("retry", delay, cls)
