"""GCP flavor: Flask request/make_response, functions_framework decorators, CloudEvents, legacy events."""

from __future__ import annotations

import base64
import json

import pytest

from polyfn.events.cloudevent import TYPE_BROKER_MESSAGE, TYPE_OBJECT_CREATED
from polyfn.runtimes.python.flavors import HandlerError

from .conftest import body_json, header


def test_plain_hello_http(load) -> None:
    fn = load("gcp", "def hello_http(request):\n    return 'Hello World!'\n", "main.hello_http")
    r = fn.http("GET", "/")
    assert r.status == 200 and r.body == b"Hello World!" and "text/html" in header(r, "content-type")


def test_flask_request_and_make_response_shapes(load) -> None:
    src = """
    import flask
    import functions_framework

    @functions_framework.http
    def hello(request):
        if request.path == "/json":
            return {"name": request.args.get("name"), "body": request.get_json(silent=True)}
        if request.path == "/tuple":
            return "created", 201, {"X-Id": "7"}
        if request.path == "/abort":
            flask.abort(404)
        if request.path == "/jsonify":
            return flask.jsonify(method=flask.request.method)
        if request.path == "/bin":
            return flask.Response(request.get_data()[::-1], mimetype="application/octet-stream")
        return flask.make_response(("plain", 202))
    """
    fn = load("gcp", src, "main.hello")
    r = fn.http("POST", "/json", b'{"a": 1}', "name=x", {"Content-Type": "application/json"})
    assert r.status == 200 and body_json(r) == {"name": "x", "body": {"a": 1}}
    assert "application/json" in header(r, "content-type")
    r = fn.http("GET", "/tuple")
    assert (r.status, r.body, header(r, "x-id")) == (201, b"created", "7")
    assert fn.http("GET", "/abort").status == 404
    assert body_json(fn.http("PUT", "/jsonify")) == {"method": "PUT"}
    data = bytes(range(256))
    r = fn.http("POST", "/bin", data, headers={"Content-Type": "application/octet-stream"})
    assert r.body == data[::-1] and header(r, "content-type") == "application/octet-stream"
    assert fn.http("GET", "/").status == 202


def test_invoke_api_payload_reaches_http_function_as_post(load) -> None:
    fn = load("gcp", "def f(request):\n    return request.get_json()\n", "main.f")
    assert body_json(fn.event({"k": "v"})) == {"k": "v"}


def test_error_is_500_with_crash_header(load) -> None:
    fn = load("gcp", "def f(request):\n    raise RuntimeError('bad')\n", "main.f")
    r = fn.http("GET", "/")
    assert r.status == 500 and header(r, "x-google-status") == "crash"
    assert body_json(r)["errorType"] == "RuntimeError" and r.error["errorMessage"] == "bad"


def test_cloud_event_function_gets_gcs_event(load) -> None:
    src = """
    import functions_framework
    seen = []
    @functions_framework.cloud_event
    def on_object(cloud_event):
        seen.append((cloud_event["type"], cloud_event["source"], cloud_event["subject"], cloud_event.data))
    """
    fn = load("gcp", src, "main.on_object")
    r = fn.cloudevent(TYPE_OBJECT_CREATED, {"bucket": "b", "key": "k.txt", "size": 5})
    assert r.status == 200 and r.body == b"OK"
    t, source, subject, data = fn.module.seen[0]
    assert t == "google.cloud.storage.object.v1.finalized"
    assert source == "//storage.googleapis.com/projects/_/buckets/b" and subject == "objects/k.txt"
    assert data["bucket"] == "b" and data["name"] == "k.txt" and data["size"] == "5"


def test_cloud_event_over_http_binary_mode(load) -> None:
    src = """
    import functions_framework
    seen = []
    @functions_framework.cloud_event
    def f(cloud_event):
        seen.append((cloud_event["id"], cloud_event["type"], cloud_event.data))
    """
    fn = load("gcp", src, "main.f")
    r = fn.http("POST", "/", b'{"x": 1}', headers={"ce-id": "1", "ce-source": "s", "ce-type": "t",
                                                  "ce-specversion": "1.0", "Content-Type": "application/json"})
    assert r.status == 200 and fn.module.seen == [("1", "t", {"x": 1})]
    bad = fn.http("POST", "/", b"{}", headers={"Content-Type": "application/json"})  # neither kind of event
    assert bad.status == 400 and b"this is a CloudEvent function" in bad.body and b"legacy" in bad.body
    assert not any(k == "x-google-status" for k, _ in bad.headers)


def test_legacy_background_function_pubsub(load) -> None:
    src = """
    seen = []
    def f(data, context):
        seen.append((data, context.event_type, context.resource, context.event_id))
    """
    fn = load("gcp", src, "main.f")
    r = fn.cloudevent(TYPE_BROKER_MESSAGE, {"source": "nats", "topic": "t1", "id": "m1", "body": "hello",
                                            "attributes": {"a": "b"}})
    assert r.status == 200
    data, etype, resource, _ = fn.module.seen[0]
    assert etype == "google.pubsub.topic.publish" and base64.b64decode(data["data"]) == b"hello"
    assert data["attributes"] == {"a": "b"} and resource["service"] == "pubsub.googleapis.com"


def test_async_http_function(load) -> None:
    fn = load("gcp", "import asyncio\nasync def f(request):\n    await asyncio.sleep(0)\n    return 'async ok'\n",
              "main.f")
    assert fn.http("GET", "/").body == b"async ok"


def test_signature_type_from_env(load) -> None:
    src = "seen = []\ndef f(ce):\n    seen.append(ce['type'])\n"
    fn = load("gcp", src, "main.f", env={"FUNCTION_SIGNATURE_TYPE": "cloudevent"})
    fn.event({"x": 1})
    assert fn.module.seen == ["io.polyfn.invoke"]


def test_wrong_arity(load) -> None:
    with pytest.raises(HandlerError) as e:
        load("gcp", "def f():\n    return 1\n", "main.f")
    assert "GCP" in e.value.message and e.value.error_type == "Runtime.HandlerSignature"


def test_json_list_return(load) -> None:
    fn = load("gcp", "def f(request):\n    return [1, 2]\n", "main.f")
    assert json.loads(fn.http().body) == [1, 2]


LEGACY_SEEN = """
seen = []
def f(data, context):
    seen.append((data, context.event_id, context.timestamp, context.event_type, context.resource))
"""
CE_SEEN = """
import functions_framework
seen = []
@functions_framework.cloud_event
def f(cloud_event):
    seen.append(({k: v for k, v in cloud_event.get_attributes().items()}, cloud_event.data))
"""
JSON = {"Content-Type": "application/json"}


def test_background_function_over_http_both_shapes(load) -> None:
    fn = load("gcp", LEGACY_SEEN, "main.f")
    ctx = {"eventId": "e1", "timestamp": "2024-01-01T00:00:00Z", "eventType": "google.storage.object.finalize",
           "resource": {"service": "storage.googleapis.com", "name": "projects/_/buckets/b/objects/o"}}
    r = fn.http("POST", "/", json.dumps({"data": {"name": "o"}, "context": ctx}).encode(), headers=JSON)
    assert r.status == 200 and r.body == b"OK"
    flat = {"data": {"x": 1}, "eventId": "e2", "timestamp": "t", "eventType": "some.type", "resource": "r"}
    assert fn.http("POST", "/", json.dumps(flat).encode(), headers=JSON).status == 200
    push = {"message": {"data": "aGk=", "messageId": "m3", "publishTime": "2024-01-02T00:00:00Z"},
            "subscription": "projects/p/subscriptions/s"}
    assert fn.http("POST", "/projects/p/topics/t1", json.dumps(push).encode(), headers=JSON).status == 200
    first, second, third = fn.module.seen
    assert first == ({"name": "o"}, "e1", "2024-01-01T00:00:00Z", "google.storage.object.finalize", ctx["resource"])
    assert second == ({"x": 1}, "e2", "t", "some.type", "r")
    assert third[0] == {"@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage", "data": "aGk=",
                        "attributes": {}}
    assert third[1:4] == ("m3", "2024-01-02T00:00:00Z", "google.pubsub.topic.publish")
    assert third[4]["name"] == "projects/p/topics/t1"
    bad = fn.http("POST", "/", b"not json", headers={"Content-Type": "text/plain"})
    assert bad.status == 400 and b"this is a background function" in bad.body


def test_background_function_gets_cloudevents_converted(load) -> None:
    fn = load("gcp", LEGACY_SEEN, "main.f")
    binary = {"ce-id": "c1", "ce-specversion": "1.0", "ce-time": "2024-01-01T00:00:00Z", **JSON}
    msg = {"message": {"data": "AAE=", "messageId": "c1", "publishTime": "2024-01-01T00:00:00Z"},
           "subscription": "projects/p/subscriptions/s"}
    r = fn.http("POST", "/", json.dumps(msg).encode(), headers={
        **binary, "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/t"})
    assert r.status == 200
    auth = {"uid": "u1", "metadata": {"createTime": "2024-01-01T00:00:00Z", "lastSignInTime": "x"}}
    fn.http("POST", "/", json.dumps(auth).encode(), headers={
        **binary, "ce-type": "google.firebase.auth.user.v1.created", "ce-subject": "users/u1",
        "ce-source": "//firebaseauth.googleapis.com/projects/p"})
    fn.http("POST", "/", b'{"delta": 1}', headers={
        **binary, "ce-type": "google.firebase.database.ref.v1.written", "ce-subject": "refs/a/b",
        "ce-source": "//firebasedatabase.googleapis.com/projects/_/locations/europe-west1/instances/db"})
    fn.http("POST", "/", b"raw bytes", headers={
        **binary, "ce-type": "com.example.other", "ce-source": "s", "ce-eventType": "legacy.type",
        "Content-Type": "application/octet-stream"})
    pubsub, user, rtdb, other = fn.module.seen
    assert pubsub[0] == {"data": "AAE="}  # binary data as is; no attributes added, no id or time in the data
    assert pubsub[3] == "google.pubsub.topic.publish" and pubsub[4] == {
        "service": "pubsub.googleapis.com", "name": "projects/p/topics/t",
        "type": "type.googleapis.com/google.pubsub.v1.PubsubMessage"}
    assert user[0]["metadata"] == {"createdAt": "2024-01-01T00:00:00Z", "lastSignedInAt": "x"}
    assert user[3:] == ("providers/firebase.auth/eventTypes/user.create", "projects/p")
    assert rtdb[3:] == ("providers/google.firebase.database/eventTypes/ref.write", "projects/_/instances/db/refs/a/b")
    assert other[0] == b"raw bytes" and other[3] == "legacy.type"


def test_cloudevent_function_gets_legacy_events_converted(load) -> None:
    fn = load("gcp", CE_SEEN, "main.f")

    def send(event: dict) -> None:
        r = fn.http("POST", "/", json.dumps(event).encode(), headers=JSON)
        assert r.status == 200, r.body

    send({"data": {"@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage", "data": "aGk=",
                   "attributes": {"a": "1"}},
          "context": {"eventId": "p1", "timestamp": "2024-01-01T00:00:00Z", "eventType": "google.pubsub.topic.publish",
                      "resource": {"service": "pubsub.googleapis.com", "name": "projects/p/topics/t"}}})
    send({"data": {"bucket": "b", "name": "o.txt", "kind": "storage#object"},
          "context": {"eventId": "s1", "timestamp": "t", "eventType": "google.storage.object.finalize",
                      "resource": {"service": "storage.googleapis.com", "name": "projects/_/buckets/b/objects/o.txt"}}})
    send({"data": {"uid": "u9", "metadata": {"createdAt": "2024-01-01T00:00:00Z"}},
          "eventId": "a1", "timestamp": "t", "eventType": "providers/firebase.auth/eventTypes/user.create",
          "resource": "projects/p"})
    send({"data": {"data": None, "delta": {"x": 1}}, "domain": "europe-west1.firebasedatabase.app",
          "context": {"eventId": "r1", "timestamp": "t",
                      "eventType": "providers/google.firebase.database/eventTypes/ref.write",
                      "resource": "projects/_/instances/db/refs/a/b"}})
    send({"data": {"value": {}}, "context": {
        "eventId": "f1", "timestamp": "t", "eventType": "providers/cloud.firestore/eventTypes/document.write",
        "resource": "projects/p/databases/(default)/documents/users/u1"}})
    pubsub, storage, user, rtdb, firestore = fn.module.seen
    assert pubsub[0]["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert pubsub[0]["source"] == "//pubsub.googleapis.com/projects/p/topics/t"
    assert pubsub[1]["message"] == {"@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage", "data": "aGk=",
                                    "attributes": {"a": "1"}, "messageId": "p1",
                                    "publishTime": "2024-01-01T00:00:00Z"}
    assert storage[0]["source"] == "//storage.googleapis.com/projects/_/buckets/b"
    assert storage[0]["subject"] == "objects/o.txt"
    assert user[0]["subject"] == "users/u9" and user[1]["metadata"] == {"createTime": "2024-01-01T00:00:00Z"}
    assert user[0]["type"] == "google.firebase.auth.user.v1.created"
    assert rtdb[0]["source"] == "//firebasedatabase.googleapis.com/projects/_/locations/europe-west1/instances/db"
    assert rtdb[0]["subject"] == "refs/a/b" and rtdb[0]["type"] == "google.firebase.database.ref.v1.written"
    assert firestore[0]["source"] == "//firestore.googleapis.com/projects/p/databases/(default)"
    assert firestore[0]["subject"] == "documents/users/u1"
    bad = fn.http("POST", "/", json.dumps({"data": {}, "context": {"eventType": "nope"}}).encode(), headers=JSON)
    assert bad.status == 400 and b"'nope'" in bad.body
    bad = fn.http("POST", "/", json.dumps({"data": {}, "context": {
        "eventType": "providers/google.firebase.database/eventTypes/ref.write",
        "resource": "projects/_/instances/db/refs/a"}}).encode(), headers=JSON)
    assert bad.status == 400 and b"domain" in bad.body


def test_typed_function(load) -> None:
    src = """
    import functions_framework

    class Order:
        def __init__(self, n):
            self.n = n
        @staticmethod
        def from_dict(d):
            return Order(d["n"])
        def to_dict(self):
            return {"n": self.n, "double": self.n * 2}

    @functions_framework.typed
    def f(order: Order):
        return Order(order.n + 1)

    @functions_framework.typed(Order)
    def g(order):
        return "plain " + str(order.n)
    """
    fn = load("gcp", src, "main.f")
    r = fn.http("POST", "/", b'{"n": 2}', headers=JSON)
    assert r.status == 200 and json.loads(r.body) == {"n": 3, "double": 6}
    assert fn.http("POST", "/", b"{nope", headers=JSON).status == 400
    assert fn.event({"n": 5}).status == 200
    g = load("gcp", src, "main.g")
    assert g.http("POST", "/", b'{"n": 4}', headers=JSON).body == b"plain 4"
