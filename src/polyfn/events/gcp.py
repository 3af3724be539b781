"""Google Cloud events: Cloud Storage and Pub/Sub as CloudEvents (what `@functions_framework.cloud_event`
functions receive) and in the legacy background-function form (`def f(data, context)`).

Types and data from the functions-framework's `event_conversion.py` and the Eventarc docs:
- storage: `google.cloud.storage.object.v1.finalized` / `.deleted`, source
  `//storage.googleapis.com/projects/_/buckets/<bucket>`, subject `objects/<name>`, data = object resource.
- Pub/Sub: `google.cloud.pubsub.topic.v1.messagePublished`, data `{message{data (base64), attributes,
  messageId, publishTime}, subscription}`.
"""

from __future__ import annotations

import base64
from typing import Any

from polyfn.events import _common as c
from polyfn.events.cloudevent import (
    TYPE_BROKER_MESSAGE,
    TYPE_OBJECT_CREATED,
    TYPE_OBJECT_DELETED,
    TYPE_QUEUE_BATCH,
    TYPE_TIMER,
)

PROJECT = "polyfn"
GCS_FINALIZED = "google.cloud.storage.object.v1.finalized"
GCS_DELETED = "google.cloud.storage.object.v1.deleted"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
SCHEDULER_JOB = "google.cloud.scheduler.job.v1.executed"

LEGACY_TYPES = {
    GCS_FINALIZED: "google.storage.object.finalize",
    GCS_DELETED: "google.storage.object.delete",
    PUBSUB_PUBLISHED: "google.pubsub.topic.publish",
    SCHEDULER_JOB: "google.pubsub.topic.publish",
}


def storage_object(ce: dict[str, Any]) -> dict[str, Any]:
    d = c.data_of(ce)
    bucket, name = str(d.get("bucket", "")), str(d.get("key", ""))
    when = c.iso_ms(ce.get("time"))
    return {
        "kind": "storage#object",
        "id": f"{bucket}/{name}/1",
        "selfLink": f"https://www.googleapis.com/storage/v1/b/{bucket}/o/{name}",
        "name": name,
        "bucket": bucket,
        "generation": "1",
        "metageneration": "1",
        "contentType": str(d.get("content_type") or "application/octet-stream"),
        "timeCreated": when,
        "updated": when,
        "storageClass": "STANDARD",
        "timeStorageClassUpdated": when,
        "size": str(int(d.get("size") or 0)),
        "md5Hash": "",
        "mediaLink": f"https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/{name}?generation=1&alt=media",
        "crc32c": "",
        "etag": str(d.get("etag", "")).strip('"'),
    }


def pubsub_message(m: dict[str, Any], ce: dict[str, Any]) -> dict[str, Any]:
    body = m.get("body", "")
    if m.get("body_base64"):
        data = str(body)
    else:
        data = base64.b64encode((body if isinstance(body, str) else str(body)).encode()).decode()
    return {"data": data, "attributes": {str(k): str(v) for k, v in (m.get("attributes") or {}).items()},
            "messageId": str(m.get("id") or ce.get("id", "")), "publishTime": c.iso_ms(ce.get("time"))}


def _timer_message(ce: dict[str, Any]) -> dict[str, Any]:
    import json

    payload = c.data_of(ce).get("payload")
    body = payload if isinstance(payload, str) else json.dumps(payload if payload is not None else {})
    return {"body": body, "id": ce.get("id", "")}


def cloudevents(ce: dict[str, Any]) -> list[dict[str, Any]]:
    """polyfn CloudEvent → the Google CloudEvent(s) a GCP function would receive (a batch becomes one per
    message, as Pub/Sub pushes them one at a time)."""
    t = ce.get("type")
    base = {"specversion": "1.0", "time": c.iso_ms(ce.get("time")), "datacontenttype": "application/json"}
    if t in (TYPE_OBJECT_CREATED, TYPE_OBJECT_DELETED):
        obj = storage_object(ce)
        return [{**base, "id": str(ce.get("id", "")), "type": GCS_FINALIZED if t == TYPE_OBJECT_CREATED else GCS_DELETED,
                 "source": f"//storage.googleapis.com/projects/_/buckets/{obj['bucket']}",
                 "subject": f"objects/{obj['name']}", "data": obj}]
    if t in (TYPE_QUEUE_BATCH, TYPE_BROKER_MESSAGE, TYPE_TIMER):
        d = c.data_of(ce)
        topic = str(d.get("topic") or d.get("trigger") or "topic")
        msgs = [_timer_message(ce)] if t == TYPE_TIMER else c.messages_of(ce)
        return [{**base, "id": str(m.get("id") or ce.get("id", "")), "type": PUBSUB_PUBLISHED,
                 "source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/{topic}",
                 "data": {"message": pubsub_message(m, ce),
                          "subscription": f"projects/{PROJECT}/subscriptions/{topic}"}} for m in msgs]
    return [ce]  # already a CloudEvent: pass as is


def legacy(gce: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A Google CloudEvent → (data, context fields) for a background function `def f(data, context)`."""
    t = gce.get("type", "")
    data = gce.get("data")
    if t == PUBSUB_PUBLISHED and isinstance(data, dict):
        msg = data.get("message") or {}
        data = {"@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
                "data": msg.get("data"), "attributes": msg.get("attributes") or {}}
        src = str(gce.get("source", ""))
        resource: Any = {"service": "pubsub.googleapis.com", "name": src.removeprefix("//pubsub.googleapis.com/"),
                         "type": data["@type"]}
    elif t in (GCS_FINALIZED, GCS_DELETED) and isinstance(data, dict):
        resource = {"service": "storage.googleapis.com",
                    "name": f"projects/_/buckets/{data.get('bucket')}/objects/{data.get('name')}",
                    "type": "storage#object"}
    else:
        resource = gce.get("source", "")
    return data, {"event_id": gce.get("id", ""), "timestamp": gce.get("time", ""),
                  "event_type": LEGACY_TYPES.get(t, t), "resource": resource}
