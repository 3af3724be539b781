"""Azure flavor: v1 (function.json) and v2 (FunctionApp decorators) on the real azure.functions types."""

from __future__ import annotations

import json

import pytest

from polyfn.events.cloudevent import TYPE_OBJECT_CREATED, TYPE_QUEUE_BATCH, TYPE_TIMER
from polyfn.runtimes.python.flavors import HandlerError

from .conftest import body_json, header

V1 = """
import azure.functions as func

def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    if req.params.get("fail"):
        raise KeyError("nope")
    if req.method == "PUT":
        return func.HttpResponse(req.get_body()[::-1], mimetype="application/octet-stream")
    name = req.params.get("name") or (req.get_json() or {}).get("name")
    return func.HttpResponse(f"Hello, {name}. ({context.function_name} {len(context.invocation_id)})",
                             status_code=200, headers={"X-Azure": "yes"})
"""
FUNCTION_JSON = json.dumps({"scriptFile": "__init__.py", "bindings": [
    {"authLevel": "anonymous", "type": "httpTrigger", "direction": "in", "name": "req", "methods": ["get", "post", "put"]},
    {"type": "http", "direction": "out", "name": "$return"}]})

V2 = """
import azure.functions as func
import logging

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
seen = []

@app.route(route="hello/{who}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hi " + req.route_params["who"])

@app.route(route="json", methods=["POST"])
async def js(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(body=req.get_body(), mimetype="application/json", status_code=201)

@app.timer_trigger(schedule="0 */5 * * * *", arg_name="mytimer", run_on_startup=False)
def tick(mytimer: func.TimerRequest) -> None:
    seen.append(("timer", mytimer.past_due))

@app.blob_trigger(arg_name="myblob", path="samples/{name}", connection="AzureWebJobsStorage")
def blob(myblob: func.InputStream):
    seen.append(("blob", myblob.name, myblob.length, myblob.read()))

@app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
def queue(msg: func.QueueMessage):
    seen.append(("queue", msg.get_body().decode(), msg.id))
"""


def test_v1_http_with_function_json_and_context(load) -> None:
    fn = load("azure", None, "HttpTrigger.main", files={"HttpTrigger/function.json": FUNCTION_JSON,
                                                        "HttpTrigger/__init__.py": V1})
    r = fn.http("GET", "/", query="name=Ann")
    assert r.status == 200 and r.body.startswith(b"Hello, Ann. (HttpTrigger 36)")
    assert header(r, "x-azure") == "yes" and header(r, "content-type") == "text/plain; charset=utf-8"
    assert fn.http("POST", "/", b'{"name": "Bo"}', headers={"Content-Type": "application/json"}).body.startswith(
        b"Hello, Bo.")
    data = bytes(range(256))
    r = fn.http("PUT", "/", data, headers={"Content-Type": "application/octet-stream"})
    assert r.body == data[::-1] and header(r, "content-type") == "application/octet-stream"


def test_v1_error_shape(load) -> None:
    fn = load("azure", None, "HttpTrigger.main", files={"HttpTrigger/function.json": FUNCTION_JSON,
                                                        "HttpTrigger/__init__.py": V1})
    r = fn.http("GET", "/", query="fail=1")
    assert r.status == 500 and r.error["errorType"] == "KeyError"
    assert body_json(r)["errorMessage"] == "'nope'"


def test_v1_without_function_json(load) -> None:
    fn = load("azure", "import azure.functions as func\ndef main(req):\n    return 'plain ' + req.method\n",
              "__init__.main")
    assert fn.http("DELETE", "/").body == b"plain DELETE"


def test_v1_parameter_not_a_binding(load) -> None:
    with pytest.raises(HandlerError) as e:
        load("azure", None, "HttpTrigger.main",
             files={"HttpTrigger/function.json": FUNCTION_JSON,
                    "HttpTrigger/__init__.py": "def main(request, other):\n    pass\n"})
    assert "named after bindings" in e.value.message


def test_v2_routes_and_async(load) -> None:
    fn = load("azure", V2, "function_app.app")
    r = fn.http("GET", "/api/hello/world")
    assert r.status == 200 and r.body == b"hi world"
    assert fn.http("GET", "/hello/x").body == b"hi x"
    r = fn.http("POST", "/api/json", b'{"a": 1}', headers={"Content-Type": "application/json"})
    assert r.status == 201 and body_json(r) == {"a": 1}
    missing = fn.http("GET", "/nowhere")
    assert missing.status == 404 and missing.error is None


def test_v2_timer_blob_queue_triggers(load) -> None:
    fn = load("azure", V2, "function_app.app")
    assert fn.cloudevent(TYPE_TIMER, {"trigger": "t", "schedule": "0 */5 * * * *"}).status == 200
    assert fn.cloudevent(TYPE_OBJECT_CREATED, {"bucket": "samples", "key": "a.txt", "size": 5,
                                               "content_base64": "aGVsbG8="}).status == 200
    assert fn.cloudevent(TYPE_QUEUE_BATCH, {"topic": "q", "messages": [{"id": "m1", "body": "hello"}]}).status == 200
    assert fn.module.seen == [("timer", False), ("blob", "samples/a.txt", 5, b"hello"), ("queue", "hello", "m1")]


def test_not_a_function(load) -> None:
    with pytest.raises(HandlerError) as e:
        load("azure", "app = 42\n", "function_app.app")
    assert "FunctionApp" in e.value.message
