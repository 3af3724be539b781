"""The CloudEvents 1.0 envelope polyfn uses internally, and the event types its triggers emit.

`data` for each type (the contract between triggers and flavors):

| type | data |
|---|---|
| `TYPE_OBJECT_CREATED` / `TYPE_OBJECT_DELETED` | `{"bucket", "key", "size", "etag", "content_type", "region", "source_ip", "sequencer"}` |
| `TYPE_QUEUE_BATCH` | `{"source": "queue"/"nats"/"redis"/"amqp"/"mqtt"/"kafka", "topic", "messages": [{"id", "body" (str), "body_base64" (bool), "attributes" {str: str}, "sent_at" (epoch s), "attempt" (int)}]}` |
| `TYPE_BROKER_MESSAGE` | one message, same fields as a `messages` item plus `"source"`, `"topic"` |
| `TYPE_TIMER` | `{"trigger", "schedule", "timezone", "scheduled_time" (ISO 8601), "payload" (any JSON)}` |
| `TYPE_LOG_BATCH` | `{"stream", "group", "lines": [{"id", "timestamp" (epoch ms), "message"}]}` |
| `TYPE_DB_CHANGES` | `{"table", "records": [DynamoDB Streams records, `events/dynamodb.py`]}` |
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any

import msgspec

TYPE_OBJECT_CREATED = "io.polyfn.storage.object.created"
TYPE_OBJECT_DELETED = "io.polyfn.storage.object.deleted"
TYPE_QUEUE_BATCH = "io.polyfn.queue.batch"
TYPE_BROKER_MESSAGE = "io.polyfn.broker.message"
TYPE_TIMER = "io.polyfn.timer.fired"
TYPE_LOG_BATCH = "io.polyfn.log.batch"
TYPE_DB_CHANGES = "io.polyfn.db.changes"

CONTENT_TYPE = "application/cloudevents+json"


class CloudEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A CloudEvents 1.0 event in structured JSON form (attribute names as the spec spells them)."""

    id: str
    source: str
    type: str
    specversion: str = "1.0"
    time: str | None = None
    subject: str | None = None
    datacontenttype: str | None = "application/json"
    data: Any = None
    traceparent: str | None = None

    def to_json(self) -> bytes:
        # `specversion` is REQUIRED by the spec: never let omit_defaults drop it.
        return msgspec.json.encode({"specversion": self.specversion, **msgspec.to_builtins(self)})

    @classmethod
    def from_json(cls, raw: bytes) -> CloudEvent:
        return msgspec.json.decode(raw, type=cls)


def new_event(type: str, source: str, data: Any, subject: str | None = None, id: str | None = None,
              time: _dt.datetime | None = None) -> CloudEvent:
    when = (time or _dt.datetime.now(_dt.UTC)).isoformat().replace("+00:00", "Z")
    return CloudEvent(id=id or uuid.uuid4().hex, source=source, type=type, time=when, subject=subject, data=data)
