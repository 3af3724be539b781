"""Error names of the States Language and the two kinds of failure the core raises.

`DefinitionError` is a definition refused at creation: each problem names the state and the field, in the
`CODE: message at /States/Name/Field` form AWS's `InvalidDefinition` messages use. `StatesError` is a failure
while running (a bad path at runtime, an intrinsic given the wrong arguments, a task's error): it carries the
error name Retry and Catch match on, and a cause. `WorkflowError` is the service's refusal of a request (each face
maps its stable `code` to its own error shape).
"""

from __future__ import annotations

ALL = "States.ALL"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
TIMEOUT = "States.Timeout"
TASK_FAILED = "States.TaskFailed"
PERMISSIONS = "States.Permissions"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
BRANCH_FAILED = "States.BranchFailed"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
EXCEED_TOLERATED_FAILURE = "States.ExceedToleratedFailureThreshold"
ITEM_READER_FAILED = "States.ItemReaderFailed"
RESULT_WRITER_FAILED = "States.ResultWriterFailed"
RUNTIME = "States.Runtime"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"

#: errors no Retry or Catch can handle: they end the execution (the spec: "States.ALL won't catch" them)
TERMINAL = frozenset({RUNTIME, DATA_LIMIT_EXCEEDED})

#: the names `States.*` the spec defines (a Retry/Catch naming another `States.` name is a typo)
KNOWN = frozenset({ALL, HEARTBEAT_TIMEOUT, TIMEOUT, TASK_FAILED, PERMISSIONS, RESULT_PATH_MATCH_FAILURE,
                   PARAMETER_PATH_FAILURE, BRANCH_FAILED, NO_CHOICE_MATCHED, INTRINSIC_FAILURE,
                   EXCEED_TOLERATED_FAILURE, ITEM_READER_FAILED, RESULT_WRITER_FAILED, RUNTIME,
                   DATA_LIMIT_EXCEEDED, QUERY_EVALUATION_ERROR})


class StatesError(Exception):
    """A runtime failure with a States Language error name (what `ErrorEquals` matches) and a cause."""

    def __init__(self, error: str, cause: str = ""):
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


class Problem:
    """One thing wrong with a definition: a stable code, the location (`/States/A/Next`), a message."""

    __slots__ = ("code", "location", "message")

    def __init__(self, code: str, location: str, message: str):
        self.code, self.location, self.message = code, location, message

    def __str__(self) -> str:
        return f"{self.code}: {self.message} at {self.location or '/'}"

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"


class DefinitionError(ValueError):
    """The definition is invalid; `problems` lists every problem found (not only the first)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__(self.message)

    @property
    def message(self) -> str:
        shown = "; ".join(str(p) for p in self.problems[:20])
        more = f" (and {len(self.problems) - 20} more)" if len(self.problems) > 20 else ""
        return f"Invalid State Machine Definition: '{shown}{more}'"


def matches(error_equals: list[str], error: str) -> bool:
    """Does a Retrier's or Catcher's `ErrorEquals` match `error`? `States.ALL` matches every error but the
    terminal ones; `States.TaskFailed` every error except `States.Timeout` (the spec's wording: "any known
    error name except for States.Timeout")."""
    if error in TERMINAL:
        return False
    return any(name == error or name == ALL or (name == TASK_FAILED and error != TIMEOUT) for name in error_equals)


class WorkflowError(Exception):
    """A refusal: `code` is stable (StateMachineDoesNotExist, ExecutionAlreadyExists, InvalidDefinition, …)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message
