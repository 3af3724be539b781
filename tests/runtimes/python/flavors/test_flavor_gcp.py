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
    bad = fn.http("POST", "/", b"{}", headers={"Content-Type": "application/json"})
    assert bad.status == 500 and "CloudEvent" in bad.error["errorMessage"]


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
