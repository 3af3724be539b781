"""The database's errors: a small family of typed values that each face serialises once, at its edge.

The core speaks the document model DynamoDB defined (typed attribute values, expressions), so its error
kinds are named after DynamoDB's (`kind`): the DynamoDB face sends them as `…#<kind>` with the message as is;
the wx.cloud face maps the kind to its own codes. Messages are DynamoDB's wording, because its clients,
tests and users match on them.
"""

from __future__ import annotations

from typing import Any


class DbError(Exception):
    kind = "InternalServerError"
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Invalid(DbError):
    """A request the client must change (bad types, expressions, keys, limits)."""

    kind = "ValidationException"
    status = 400


class NoSuchTable(DbError):
    kind = "ResourceNotFoundException"
    status = 400

    def __init__(self, message: str = "Requested resource not found"):
        super().__init__(message)


class InUse(DbError):
    kind = "ResourceInUseException"
    status = 400


class LimitExceeded(DbError):
    kind = "LimitExceededException"
    status = 400


class QuotaExceeded(LimitExceeded):
    """A write would take a namespace past its `db_items` or `db_bytes` quota (tenancy.py). DynamoDB has no such
    quota; its `LimitExceededException` (400, not retried by the SDKs) is the nearest kind, with a message
    naming the quota, its limit and the use. polyfn's own faces answer 429 `quota_exceeded` with `extra`."""

    def __init__(self, namespace: str, quota: str, limit: int, used: int, adding: int):
        super().__init__(f"namespace {namespace!r} is at its {quota} quota: {used} used of {limit}, and this "
                         f"write adds {adding}")
        self.extra = {"namespace": namespace, "quota": quota, "limit": limit, "used": used}


class ConditionFailed(DbError):
    """A ConditionExpression evaluated to false; `item` is the current item when the caller asked for it
    (ReturnValuesOnConditionCheckFailure=ALL_OLD)."""

    kind = "ConditionalCheckFailedException"
    status = 400

    def __init__(self, item: dict[str, Any] | None = None, message: str = "The conditional request failed"):
        super().__init__(message)
        self.item = item


class Reason:
    """Why one action of a transaction cancelled it (or None: it did not)."""

    __slots__ = ("code", "item", "message")

    def __init__(self, code: str = "None", message: str | None = None, item: dict[str, Any] | None = None):
        self.code = code
        self.message = message
        self.item = item

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Code": self.code}
        if self.message is not None:
            out["Message"] = self.message
        if self.item is not None:
            out["Item"] = self.item
        return out


class TransactionCanceled(DbError):
    kind = "TransactionCanceledException"
    status = 400

    def __init__(self, reasons: list[Reason]):
        codes = ", ".join(r.code for r in reasons)
        super().__init__(f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]")
        self.reasons = reasons


class TransactionConflict(DbError):
    kind = "TransactionConflictException"
    status = 400


class IdempotentMismatch(DbError):
    kind = "IdempotentParameterMismatchException"
    status = 400


class Throttled(DbError):
    """The storage is busy beyond what a request may wait for: retryable (botocore retries it)."""

    kind = "ThrottlingException"
    status = 400


class AccessDenied(DbError):
    kind = "AccessDeniedException"
    status = 400
