"""Which vendor event shape each flavor gives each polyfn event type: a table, nothing else.

`shape(flavor, ce)` turns a polyfn CloudEvent (structured-mode dict) into the event the vendor's code
expects. A type a flavor has no shape for is passed as the CloudEvent dict itself. GCP and Azure have
richer mappings (CloudEvent objects, typed bindings) and use `events.gcp` / `events.azure` directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polyfn.events import cloudwatch_logs, cos, dynamodb, oss, s3, sqs, timer
from polyfn.events.cloudevent import (
    TYPE_BROKER_MESSAGE,
    TYPE_DB_CHANGES,
    TYPE_LOG_BATCH,
    TYPE_OBJECT_CREATED,
    TYPE_OBJECT_DELETED,
    TYPE_QUEUE_BATCH,
    TYPE_TIMER,
)

Shaper = Callable[[dict[str, Any]], Any]

SHAPES: dict[str, dict[str, Shaper]] = {
    "aws": {
        TYPE_OBJECT_CREATED: s3.event,
        TYPE_OBJECT_DELETED: s3.event,
        TYPE_QUEUE_BATCH: sqs.event,
        TYPE_BROKER_MESSAGE: sqs.event,
        TYPE_TIMER: timer.eventbridge,
        TYPE_LOG_BATCH: cloudwatch_logs.event,
        TYPE_DB_CHANGES: dynamodb.event,
    },
    "aliyun": {
        TYPE_OBJECT_CREATED: oss.event,
        TYPE_OBJECT_DELETED: oss.event,
        TYPE_TIMER: timer.aliyun,
    },
    "tencent": {
        TYPE_OBJECT_CREATED: cos.event,
        TYPE_OBJECT_DELETED: cos.event,
        TYPE_QUEUE_BATCH: cos.cmq_event,
        TYPE_BROKER_MESSAGE: cos.cmq_event,
        TYPE_TIMER: timer.tencent,
    },
}


def shaper(flavor: str) -> Callable[[dict[str, Any]], Any]:
    """A function ce → vendor event for `flavor` (bound once per instance: one dict lookup per event)."""
    table = SHAPES.get(flavor, {})

    def shape(ce: dict[str, Any]) -> Any:
        fn = table.get(ce.get("type", ""))
        return fn(ce) if fn is not None else ce

    return shape


def shape(flavor: str, ce: dict[str, Any]) -> Any:
    return shaper(flavor)(ce)


def shape_for_launched_runtime(flavor: str, raw: bytes) -> bytes | None:
    """Node.js (and other launched runtimes) have no Python event modules inside the instance, so the server
    shapes their CloudEvents: the vendor event as JSON, or None when the flavor has no shape for the type
    (the CloudEvent is then delivered as is)."""
    import json

    table = SHAPES.get(flavor)
    if not table:
        return None
    try:
        ce = json.loads(raw)
    except ValueError:
        return None
    fn = table.get(ce.get("type", "")) if isinstance(ce, dict) else None
    return json.dumps(fn(ce)).encode() if fn is not None else None
