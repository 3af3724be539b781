"""How a Task reaches a function, and what its answer means to the States Language.

The engine calls an `InvokeFn` (function name, JSON payload, activation id) and gets a `TaskOutcome`: the
function's result, or an error name and cause as Step Functions reports them for Lambda (the function's own
`errorType` and its error payload as the cause; `Sandbox.Timedout`, `Runtime.ExitError`, … for the platform's
failures; `Lambda.ResourceNotFoundException` for a function that is gone), or a `retry_after` when the node
asks to be called again (throttled or shutting down; not an attempt). `invoker_tasks` builds that callable on
the node's one invocation path (`Invoker.call`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from polyfn.call import Call
from polyfn.tenancy import local


@dataclass(slots=True)
class TaskOutcome:
    ok: bool
    output: Any = None
    error: str | None = None
    cause: str | None = None
    retry_after: float | None = None  # not an answer: call again after this many seconds


#: (function, payload JSON bytes, activation id) -> outcome
InvokeFn = Callable[[str, bytes, str], Awaitable[TaskOutcome]]

_PLATFORM_ERRORS = {
    "function_timeout": "Sandbox.Timedout",
    "function_crashed": "Runtime.ExitError",
    "function_oom": "Runtime.OutOfMemory",
    "response_too_large": "Lambda.ResponseSizeTooLarge",
    "payload_too_large": "Lambda.RequestTooLargeException",
}


def _decode(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def outcome(status: int, headers: dict[str, str], body: bytes, function: str) -> TaskOutcome:
    """Map one invocation's HTTP-shaped outcome (lower-case header names) to a task outcome."""
    code = headers.get("x-polyfn-error")
    if code in ("too_many_requests", "shutting_down", "queue_unavailable"):
        return TaskOutcome(False, retry_after=float(headers.get("retry-after") or 1))
    value = _decode(body)
    if code is not None or "x-polyfn-function-error" in headers:
        err = value.get("error") if isinstance(value, dict) and isinstance(value.get("error"), dict) else value
        err = err if isinstance(err, dict) else {"errorMessage": str(err)}
        message = err.get("errorMessage") or err.get("message") or ""
        if code == "function_not_found":
            return TaskOutcome(False, error="Lambda.ResourceNotFoundException",
                               cause=f"Function not found: {function!r} does not exist (was it deleted while the "
                                     "execution ran?)")
        if code is not None:
            name = err.get("errorType") if code == "function_init_failed" else _PLATFORM_ERRORS.get(code)
            cause = {"errorMessage": message or code, "errorType": name or "Lambda.Unknown"}
            return TaskOutcome(False, error=name or "Lambda.Unknown", cause=json.dumps(cause))
        name = err.get("errorType") or err.get("type") or "Lambda.Unknown"
        cause = {"errorMessage": message, "errorType": name}
        if err.get("stackTrace"):
            cause["stackTrace"] = err["stackTrace"]
        return TaskOutcome(False, error=str(name), cause=json.dumps(cause))
    if status >= 400:
        return TaskOutcome(False, error="Lambda.Unknown",
                           cause=json.dumps({"errorMessage": f"the function answered HTTP {status}", "body": value}))
    return TaskOutcome(True, output=value)


def lambda_invoke_output(payload: Any, version: str = "$LATEST") -> dict[str, Any]:
    """What `arn:aws:states:::lambda:invoke` returns: Lambda's Invoke response with the result in `Payload`."""
    return {"ExecutedVersion": version, "Payload": payload,
            "SdkHttpMetadata": {"HttpHeaders": {"Content-Type": "application/json"}, "HttpStatusCode": 200},
            "SdkResponseMetadata": {}, "StatusCode": 200}


def invoker_tasks(invoker: Any) -> InvokeFn:
    """An `InvokeFn` on the node's `Invoker` (kind `event`, trigger `workflow`; the activation id is the task's,
    the same on every attempt, so a function can use it as an idempotency key)."""

    async def call(function: str, payload: bytes, activation_id: str) -> TaskOutcome:
        out = await invoker.call(Call(function, "event", "workflow", headers=[
            ("content-type", "application/json"), ("x-polyfn-idempotency-key", activation_id)],
            body=payload, content_type="application/json", activation_id=activation_id))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in out.headers}
        return outcome(out.status, headers, out.body, local(function))  # (a namespace's execution: its names)

    return call
