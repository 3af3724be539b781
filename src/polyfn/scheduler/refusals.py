"""What a pool answers a caller it does not serve: refused now (`Throttled`: load shed, scheduler/shed.py; or
`NoCapacity`: the node's memory budget), the function's instance failed to start (`StartFailed`, with its typed
init error), or the pool was drained (`PoolClosed`). The invoker turns each into its platform error."""

from __future__ import annotations

from typing import Any

from polyfn.scheduler import shed


class Throttled(Exception):
    """The function refused the call (`reason`: scheduler/shed.py); retry after `retry_after` seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int = 1, reason: str = shed.QUEUE_FULL):
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason


class NoCapacity(Throttled):
    """The node's memory budget has no room for another instance, even after evicting idle ones."""

    status = 503
    code = "node_memory_exhausted"

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message, retry_after, shed.NO_MEMORY)


class PoolClosed(Exception):
    pass


class StartFailed(Exception):
    """Starting an instance failed; `error` is the typed init error payload shown to callers. A failure
    remembered during the back-off (no start was tried for this call) has `retry_after` (seconds until the
    next start may be tried) and `age` (seconds since the start failed), and no logs (they were recorded
    with the activation whose start failed)."""

    def __init__(self, error: dict[str, Any], logs: list[tuple[float, str, str]] | None = None,
                 retry_after: float = 0.0, age: float = 0.0):
        super().__init__(error.get("errorMessage", "instance failed to start"))
        self.error = error
        self.logs = logs or []
        self.retry_after = retry_after
        self.age = age

    def remembered(self, retry_after: float, age: float) -> StartFailed:
        return StartFailed(self.error, None, retry_after, age)
