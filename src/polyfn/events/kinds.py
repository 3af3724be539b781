"""Explicit test events: `polyfn invoke NAME --event s3:put --data '{"bucket": "b", "key": "k"}'`.

An event kind names a polyfn CloudEvent type and defaults for its `data`; the user's `--data` overrides
fields. The function's flavor then shapes the CloudEvent into its vendor's event (so `s3:put` reaches an
Aliyun function as an OSS event). Kinds are data: `KINDS` below.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from polyfn.events.cloudevent import (
    TYPE_BROKER_MESSAGE,
    TYPE_LOG_BATCH,
    TYPE_OBJECT_CREATED,
    TYPE_OBJECT_DELETED,
    TYPE_QUEUE_BATCH,
    TYPE_TIMER,
    CloudEvent,
    new_event,
)


@dataclass(frozen=True)
class Kind:
    type: str
    source: str
    defaults: dict[str, Any] = field(default_factory=dict)
    help: str = ""


_OBJECT = {"bucket": "bucket", "key": "key", "size": 0, "etag": "", "content_type": "application/octet-stream",
           "region": None, "source_ip": "127.0.0.1", "sequencer": None}
_QUEUE = {"source": "queue", "topic": "queue"}
_TIMER = {"trigger": "timer", "schedule": "", "timezone": "UTC", "scheduled_time": None, "payload": None}
_LOGS = {"stream": "default", "group": "polyfn"}

KINDS: dict[str, Kind] = {
    "storage:put": Kind(TYPE_OBJECT_CREATED, "polyfn:storage", _OBJECT, "an object was written"),
    "storage:delete": Kind(TYPE_OBJECT_DELETED, "polyfn:storage", _OBJECT, "an object was deleted"),
    "queue": Kind(TYPE_QUEUE_BATCH, "polyfn:queue", _QUEUE, "a batch of queue messages"),
    "message": Kind(TYPE_BROKER_MESSAGE, "polyfn:broker", _QUEUE, "one broker message (Pub/Sub style)"),
    "timer": Kind(TYPE_TIMER, "polyfn:cron", _TIMER, "a scheduled tick"),
    "logs": Kind(TYPE_LOG_BATCH, "polyfn:logs", _LOGS, "a batch of log lines"),
}
ALIASES = {
    "s3:put": "storage:put", "s3:delete": "storage:delete", "oss:put": "storage:put", "oss:delete": "storage:delete",
    "cos:put": "storage:put", "cos:delete": "storage:delete", "gcs:finalize": "storage:put",
    "gcs:delete": "storage:delete", "blob": "storage:put", "sqs": "queue", "cmq": "queue",
    "azure:queue": "queue", "pubsub": "message", "cron": "timer", "schedule": "timer", "eventbridge": "timer",
    "cloudwatch:logs": "logs",
}


class UnknownKind(ValueError):
    pass


def names() -> list[str]:
    return sorted([*KINDS, *ALIASES])


def _messages(data: dict[str, Any]) -> list[dict[str, Any]]:
    """`messages` as given, or one message from `body` (any JSON; non-strings are JSON-encoded)."""
    raw = data.pop("messages", None)
    if raw is None:
        body = data.pop("body", data.pop("message", ""))
        raw = [{"body": body, "attributes": data.pop("attributes", {})}]
    now = time.time()
    out = []
    for i, m in enumerate(raw if isinstance(raw, list) else [raw]):
        m = dict(m) if isinstance(m, dict) else {"body": m}
        body = m.get("body", "")
        out.append({"id": str(m.get("id") or uuid.uuid4()), "body": body if isinstance(body, str) else json.dumps(body),
                    "body_base64": bool(m.get("body_base64", False)), "attributes": m.get("attributes") or {},
                    "sent_at": float(m.get("sent_at") or now), "attempt": int(m.get("attempt") or 1), "_i": i})
    for m in out:
        m.pop("_i")
    return out


def build(kind: str, data: Any) -> CloudEvent:
    """The CloudEvent for `kind` with the user's `data` (a JSON object, or for timers any payload)."""
    name = ALIASES.get(kind, kind)
    k = KINDS.get(name)
    if k is None:
        raise UnknownKind(f"unknown event kind {kind!r}: use one of {', '.join(names())}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        if k.type == TYPE_TIMER:
            data = {"payload": data}
        elif k.type in (TYPE_QUEUE_BATCH, TYPE_BROKER_MESSAGE):
            data = {"body": data}
        else:
            raise UnknownKind(f"event kind {kind!r} needs a JSON object as data (e.g. {{\"bucket\": \"b\", \"key\": \"k\"}})")
    d = {**k.defaults, **data}
    subject = None
    if k.type in (TYPE_OBJECT_CREATED, TYPE_OBJECT_DELETED):
        d["size"] = int(d.get("size") or 0)
        subject = str(d["key"])
    elif k.type == TYPE_QUEUE_BATCH:
        d = {"source": d.pop("source"), "topic": d.pop("topic"), "messages": _messages(d)}
    elif k.type == TYPE_BROKER_MESSAGE:
        msg = _messages(d)[0]
        d = {"source": d.get("source"), "topic": d.get("topic"), **msg}
    elif k.type == TYPE_TIMER:
        if not d.get("scheduled_time"):
            d["scheduled_time"] = new_event("x", "x", None).time
    elif k.type == TYPE_LOG_BATCH:
        lines = d.get("lines")
        if lines is None:
            msg = d.pop("message", "hello from polyfn")
            lines = [{"message": msg}]
        now_ms = int(time.time() * 1000)
        d["lines"] = [{"id": str(ln.get("id") or uuid.uuid4().int)[:56], "timestamp": int(ln.get("timestamp") or now_ms),
                       "message": str(ln.get("message", ""))} if isinstance(ln, dict)
                      else {"id": str(uuid.uuid4().int)[:56], "timestamp": now_ms, "message": str(ln)}
                      for ln in lines]
    return new_event(k.type, k.source, d, subject=subject)
