"""Execution history events, in the shape of Step Functions' `GetExecutionHistory` (`HistoryEvent`).

An event is a dict: `id`, `previousEventId`, `timestamp` (epoch seconds; faces format it), `type`, and one
details field named after the type (`taskScheduledEventDetails`, `stateEnteredEventDetails`, …; `DETAILS`).
Inputs, outputs and parameters inside details are JSON text, as AWS sends them.
"""

from __future__ import annotations

import json
from typing import Any

#: event type → its details field (types not listed carry none, e.g. ParallelStateStarted, LambdaFunctionStarted)
DETAILS: dict[str, str] = {
    "ExecutionStarted": "executionStartedEventDetails",
    "ExecutionSucceeded": "executionSucceededEventDetails",
    "ExecutionFailed": "executionFailedEventDetails",
    "ExecutionAborted": "executionAbortedEventDetails",
    "ExecutionTimedOut": "executionTimedOutEventDetails",
    "TaskScheduled": "taskScheduledEventDetails",
    "TaskStarted": "taskStartedEventDetails",
    "TaskSubmitted": "taskSubmittedEventDetails",
    "TaskSucceeded": "taskSucceededEventDetails",
    "TaskFailed": "taskFailedEventDetails",
    "TaskTimedOut": "taskTimedOutEventDetails",
    "LambdaFunctionScheduled": "lambdaFunctionScheduledEventDetails",
    "LambdaFunctionSucceeded": "lambdaFunctionSucceededEventDetails",
    "LambdaFunctionFailed": "lambdaFunctionFailedEventDetails",
    "LambdaFunctionTimedOut": "lambdaFunctionTimedOutEventDetails",
    "MapStateStarted": "mapStateStartedEventDetails",
    "MapIterationStarted": "mapIterationStartedEventDetails",
    "MapIterationSucceeded": "mapIterationSucceededEventDetails",
    "MapIterationFailed": "mapIterationFailedEventDetails",
    "MapIterationAborted": "mapIterationAbortedEventDetails",
}
for _t in ("Task", "Choice", "Pass", "Wait", "Succeed", "Parallel", "Map", "Fail"):
    DETAILS[f"{_t}StateEntered"] = "stateEnteredEventDetails"
    if _t != "Fail":
        DETAILS[f"{_t}StateExited"] = "stateExitedEventDetails"

#: the events that end an execution, by status
FINAL = {"SUCCEEDED": "ExecutionSucceeded", "FAILED": "ExecutionFailed", "ABORTED": "ExecutionAborted",
         "TIMED_OUT": "ExecutionTimedOut"}


def dumps(value: Any) -> str:
    """JSON text of a value as it appears in events and API outputs (compact, UTF-8 kept)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def data(key: str, value: Any) -> dict[str, Any]:
    """`{"input": "<json>", "inputDetails": {"truncated": false}}` and the like."""
    return {key: dumps(value), key + "Details": {"truncated": False}}


def error_details(error: str | None, cause: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if error is not None:
        out["error"] = error
    if cause is not None:
        out["cause"] = cause
    return out
