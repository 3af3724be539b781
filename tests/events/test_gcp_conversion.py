"""polyfn's legacy ⇄ CloudEvent conversion (events/gcp.py) against the functions-framework's own
(`functions_framework.event_conversion`, the real package), event type by event type, both ways."""

from __future__ import annotations

import copy
import json
from typing import Any

import flask
import pytest

from polyfn.events import gcp

ff = pytest.importorskip("functions_framework.event_conversion")
APP = flask.Flask("conversion")

LEGACY = [
    {"data": {"@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage", "data": "AAEC",
              "attributes": {"k": "v"}},
     "context": {"eventId": "1", "timestamp": "2024-01-01T00:00:00.000Z", "eventType": "google.pubsub.topic.publish",
                 "resource": {"service": "pubsub.googleapis.com", "name": "projects/p/topics/t",
                              "type": "type.googleapis.com/google.pubsub.v1.PubsubMessage"}}},
    {"data": {"data": "aGk="}, "eventId": "2", "timestamp": "2024-01-01T00:00:00Z",
     "eventType": "providers/cloud.pubsub/eventTypes/topic.publish", "resource": "projects/p/topics/t"},
    {"data": {"bucket": "b", "name": "dir/o.txt", "kind": "storage#object", "size": "3"},
     "context": {"eventId": "3", "timestamp": "t", "eventType": "google.storage.object.finalize",
                 "resource": {"service": "storage.googleapis.com", "name": "projects/_/buckets/b/objects/dir/o.txt",
                              "type": "storage#object"}}},
    {"data": {"uid": "u1", "email": "a@b.c", "metadata": {"createdAt": "2024-01-01T00:00:00Z",
                                                         "lastSignedInAt": "2024-01-02T00:00:00Z"}},
     "context": {"eventId": "4", "timestamp": "t", "eventType": "providers/firebase.auth/eventTypes/user.create",
                 "resource": "projects/my-project"}},
    {"data": {"data": None, "delta": {"x": 1}}, "domain": "firebaseio.com",
     "context": {"eventId": "5", "timestamp": "t", "eventType": "providers/google.firebase.database/eventTypes/ref.write",
                 "resource": "projects/_/instances/db/refs/a/b"}},
    {"data": {"data": None, "delta": {"x": 1}}, "domain": "europe-west1.firebasedatabase.app",
     "context": {"eventId": "6", "timestamp": "t", "eventType": "providers/google.firebase.database/eventTypes/ref.create",
                 "resource": "projects/_/instances/db/refs/c"}},
    {"data": {"value": {"fields": {}}, "oldValue": {}},
     "context": {"eventId": "7", "timestamp": "t", "eventType": "providers/cloud.firestore/eventTypes/document.update",
                 "resource": "projects/p/databases/(default)/documents/users/u1"}},
    {"data": {"eventDim": [{"name": "e"}]},
     "context": {"eventId": "8", "timestamp": "t", "eventType": "providers/google.firebase.analytics/eventTypes/event.log",
                 "resource": "projects/p/events/session_start"}},
]


def _ff_cloudevent(body: dict[str, Any], path: str = "/") -> dict[str, Any]:
    with APP.test_request_context(path, method="POST", json=copy.deepcopy(body)):
        ce = ff.background_event_to_cloud_event(flask.request)
    return {**ce.get_attributes(), "data": ce.data}


@pytest.mark.parametrize("body", LEGACY, ids=lambda b: (b.get("context") or b)["eventType"])
def test_legacy_to_cloudevent_as_the_functions_framework(body: dict[str, Any]) -> None:
    ours = gcp.background_to_cloudevent(copy.deepcopy(body))
    theirs = _ff_cloudevent(body)
    assert ours == theirs


@pytest.mark.parametrize("body", [b for b in LEGACY if b.get("eventType") is None], ids=lambda b: b["context"]["eventType"])
def test_cloudevent_to_legacy_as_the_functions_framework(body: dict[str, Any]) -> None:
    ce = _ff_cloudevent(body)
    headers = {f"ce-{k}": str(v) for k, v in ce.items() if k not in ("data", "datacontenttype")}
    headers["content-type"] = "application/json"
    with APP.test_request_context("/", method="POST", headers=headers, data=json.dumps(ce["data"])):
        data, context = ff.cloud_event_to_background_event(flask.request)
    ours_data, ours_ctx = gcp.cloudevent_to_background(copy.deepcopy(ce))
    assert ours_data == data
    assert ours_ctx == {"event_id": context.event_id, "timestamp": context.timestamp,
                        "event_type": context.event_type, "resource": context.resource}


def test_raw_pubsub_push_as_the_functions_framework() -> None:
    push = {"message": {"data": "aGk=", "messageId": "m1", "publishTime": "2024-01-01T00:00:00Z", "attributes": {"a": "1"}},
            "subscription": "projects/p/subscriptions/s"}
    ours = gcp.background_to_cloudevent(push, "/projects/p/topics/t?x=1")
    assert ours == _ff_cloudevent(push, "/projects/p/topics/t?x=1")
