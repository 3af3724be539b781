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
import copy
import re
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
    out = {"data": data, "messageId": str(m.get("id") or ce.get("id", "")), "publishTime": c.iso_ms(ce.get("time"))}
    if m.get("attributes"):  # as Pub/Sub: a message without attributes has none (no empty object)
        out["attributes"] = {str(k): str(v) for k, v in m["attributes"].items()}
    return out


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
        data = {"@type": PUBSUB_MESSAGE, "data": msg.get("data"),
                **({"attributes": msg["attributes"]} if "attributes" in msg else {})}
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


# -- legacy (background) events ⇄ CloudEvents over HTTP ------------------------------------------------
# What a client or Google's push sends to a function of the other kind, converted as the functions-framework
# does (its event_conversion module; the conformance suite's docs/mapping.md): the event types, the source's
# service, the resource split into source and subject, and each service's data quirks.

PUBSUB_MESSAGE = "type.googleapis.com/google.pubsub.v1.PubsubMessage"
_FIRESTORE, _AUTH, _RTDB, _ANALYTICS = ("firestore.googleapis.com", "firebaseauth.googleapis.com",
                                        "firebasedatabase.googleapis.com", "firebase.googleapis.com")
_PUBSUB, _STORAGE = "pubsub.googleapis.com", "storage.googleapis.com"

LEGACY_TO_CE = {
    "google.pubsub.topic.publish": PUBSUB_PUBLISHED,
    "providers/cloud.pubsub/eventTypes/topic.publish": PUBSUB_PUBLISHED,
    "google.storage.object.finalize": GCS_FINALIZED,
    "google.storage.object.delete": GCS_DELETED,
    "google.storage.object.archive": "google.cloud.storage.object.v1.archived",
    "google.storage.object.metadataUpdate": "google.cloud.storage.object.v1.metadataUpdated",
    "providers/cloud.storage/eventTypes/object.change": GCS_FINALIZED,
    **{f"providers/cloud.firestore/eventTypes/document.{a}": f"google.cloud.firestore.document.v1.{b}"
       for a, b in (("write", "written"), ("create", "created"), ("update", "updated"), ("delete", "deleted"))},
    "providers/firebase.auth/eventTypes/user.create": "google.firebase.auth.user.v1.created",
    "providers/firebase.auth/eventTypes/user.delete": "google.firebase.auth.user.v1.deleted",
    "providers/google.firebase.analytics/eventTypes/event.log": "google.firebase.analytics.log.v1.written",
    **{f"providers/google.firebase.database/eventTypes/ref.{a}": f"google.firebase.database.ref.v1.{b}"
       for a, b in (("create", "created"), ("write", "written"), ("update", "updated"), ("delete", "deleted"))},
}
#: the other way: the two older legacy names have newer ones
CE_TO_LEGACY = {ce: lg for lg, ce in LEGACY_TO_CE.items()
                if lg not in ("providers/cloud.pubsub/eventTypes/topic.publish",
                              "providers/cloud.storage/eventTypes/object.change")}
_LEGACY_SERVICES = (("providers/cloud.firestore/", _FIRESTORE), ("providers/google.firebase.analytics/", _ANALYTICS),
                    ("providers/firebase.auth/", _AUTH), ("providers/google.firebase.database/", _RTDB),
                    ("providers/cloud.pubsub/", _PUBSUB), ("providers/cloud.storage/", _STORAGE),
                    ("google.pubsub", _PUBSUB), ("google.storage", _STORAGE))
#: how a legacy resource splits into the CloudEvent's source resource and subject, per service
_SPLIT = {_ANALYTICS: re.compile(r"(projects/[^/]+)/(events/[^/]+)"),
          _RTDB: re.compile(r"projects/_/(instances/[^/]+)/(refs/.+)"),
          _FIRESTORE: re.compile(r"(projects/[^/]+/databases/\(default\))/(documents/.+)"),
          _STORAGE: re.compile(r"(projects/[^/]/buckets/[^/]+)/(objects/.+)")}
_AUTH_METADATA = {"createdAt": "createTime", "lastSignedInAt": "lastSignInTime"}  # legacy → CloudEvent
_TOPIC_PATH = re.compile(r"projects/[^/?]+/topics/[^/?]+")


class ConversionError(ValueError):
    """The request is not an event the function's kind can take (answered 400 with this message)."""


def background_event(body: Any, path: str = "/", now: str = "") -> tuple[Any, dict[str, Any]]:
    """A legacy event's JSON body → (data, context fields). Three shapes: `{"data", "context": {…}}`, the older
    flat `{"data", "eventId", "timestamp", "eventType", "resource"}`, and a raw Pub/Sub push
    `{"message": {"data", "messageId", …}, "subscription"}` (the topic from the path, if there)."""
    if not isinstance(body, dict):
        raise ConversionError("a background event is a JSON object: {\"data\": …, \"context\": {\"eventId\", "
                              "\"timestamp\", \"eventType\", \"resource\"}}")
    msg = body.get("message")
    if "context" not in body and "subscription" in body and isinstance(msg, dict) and {"data", "messageId"} <= msg.keys():
        topic = _TOPIC_PATH.search(path)
        data = {"@type": PUBSUB_MESSAGE, "data": msg["data"], "attributes": msg.get("attributes", {})}
        return data, {"event_id": msg["messageId"], "timestamp": msg.get("publishTime", now),
                      "event_type": "google.pubsub.topic.publish",
                      "resource": {"service": _PUBSUB, "type": PUBSUB_MESSAGE, "name": topic[0] if topic else ""}}
    ctx = body.get("context")
    if not isinstance(ctx, dict):
        ctx = {k: body.get(k, "") for k in ("eventId", "timestamp", "eventType", "resource")}
    return body.get("data", ""), {"event_id": ctx.get("eventId", ""), "timestamp": ctx.get("timestamp", ""),
                                  "event_type": ctx.get("eventType", ""), "resource": ctx.get("resource", "")}


def background_to_cloudevent(body: Any, path: str = "/", now: str = "") -> dict[str, Any]:
    """A legacy event's JSON body → the structured CloudEvent a CloudEvent function gets for it."""
    data, ctx = background_event(body, path, now)
    data = copy.deepcopy(data)
    etype = ctx["event_type"]
    if etype not in LEGACY_TO_CE:
        raise ConversionError(f"unable to find the CloudEvent type of the legacy event type {etype!r}")
    res = ctx["resource"]
    service = res.get("service", "") if isinstance(res, dict) else ""
    resource = str(res.get("name", "") if isinstance(res, dict) else res)
    if not service:
        service = next((s for prefix, s in _LEGACY_SERVICES if etype.startswith(prefix)), "")
    subject = ""
    if service in _SPLIT:
        m = _SPLIT[service].fullmatch(resource)
        if m is None:
            raise ConversionError(f"the resource {resource!r} is not a {service} resource")
        resource, subject = m[1], m[2]
    if service == _PUBSUB and isinstance(data, dict):
        data.setdefault("messageId", ctx["event_id"])
        data.setdefault("publishTime", ctx["timestamp"])
        data = {"message": data}
    elif service == _AUTH and isinstance(data, dict):
        meta = data.get("metadata")
        if isinstance(meta, dict):
            data["metadata"] = {_AUTH_METADATA.get(k, k): v for k, v in meta.items()}
        if "uid" in data:
            subject = f"users/{data['uid']}"
    elif service == _RTDB:
        domain = body.get("domain") if isinstance(body, dict) else None
        if not domain:
            raise ConversionError("a Realtime Database event needs 'domain' (e.g. firebaseio.com)")
        location = "us-central1" if domain == "firebaseio.com" else str(domain).split(".")[0]
        resource = f"projects/_/locations/{location}/{resource}"
    ce = {"specversion": "1.0", "id": ctx["event_id"], "time": ctx["timestamp"], "type": LEGACY_TO_CE[etype],
          "source": f"//{service}/{resource}", "datacontenttype": "application/json", "data": data}
    if subject:
        ce["subject"] = subject
    return ce


def cloudevent_to_background(ce: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A Google CloudEvent → (data, context fields) of the legacy event a background function gets for it."""
    etype = ce.get("type", "")
    if etype not in CE_TO_LEGACY:
        raise ConversionError(f"unable to find the legacy event type of the CloudEvent type {etype!r}")
    m = re.fullmatch(r"//([^/]+)/(.+)", str(ce.get("source", "")))
    if m is None:
        raise ConversionError(f"the CloudEvent source {ce.get('source')!r} is not //<service>/<resource>")
    service, name = m[1], m[2]
    data = copy.deepcopy(ce.get("data"))
    subject = ce.get("subject", "")
    resource: Any
    if service == _PUBSUB:
        resource = {"service": service, "name": name, "type": PUBSUB_MESSAGE}
        if isinstance(data, dict):
            data = data.get("message", data)
            if isinstance(data, dict):  # the message as GCF hands it: no id or time (they are the context's)
                data = {k: v for k, v in data.items() if k not in ("messageId", "publishTime")}
    elif service == _AUTH:
        resource = name
        if isinstance(data, dict) and isinstance(data.get("metadata"), dict):
            back = {v: k for k, v in _AUTH_METADATA.items()}
            data["metadata"] = {back.get(k, k): v for k, v in data["metadata"].items()}
    elif service == _STORAGE:
        resource = {"name": f"{name}/{subject}", "service": service,
                    "type": data.get("kind", "storage#object") if isinstance(data, dict) else "storage#object"}
    elif service == _RTDB:
        resource = f"{re.sub(r'/locations/[^/]+', '', name)}/{subject}"
    else:
        resource = f"{name}/{subject}" if subject else name
    return data, {"event_id": ce.get("id", ""), "timestamp": ce.get("time", ""), "event_type": CE_TO_LEGACY[etype],
                  "resource": resource}
