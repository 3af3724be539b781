"""Triggers that could never work are refused with a 4xx naming the field; a trigger whose broker is down is
added and says so at once; no view of a trigger prints its passwords (issue #18, item 7)."""

from __future__ import annotations

import json

from .conftest import Server, error_code

FN = "def handler(event, context):\n    return event\n"


def test_storage_trigger_on_a_missing_bucket_is_refused_and_its_id_kept(server: Server) -> None:
    server.deploy("rf-store", {"handler.py": FN})
    r = server.api.post("/v1/functions/rf-store/triggers", json={"kind": "storage", "config": {"bucket": "nope"}})
    assert r.status_code == 404 and error_code(r) == "bucket_not_found" and "bucket='nope'" in r.text
    r = server.api.post("/v1/storage/triggers", json={"function": "rf-store", "bucket": "nope"})
    assert r.status_code == 404 and error_code(r) == "bucket_not_found"
    cli = server.cli("trigger", "add", "rf-store", "storage", "--bucket", "nope")
    assert cli.returncode != 0 and "polyfn storage mb s3://nope" in cli.stderr
    assert server.api.get("/v1/storage/triggers", params={"function": "rf-store"}).json()["triggers"] == []
    server.cli("storage", "mb", "s3://rf-here", check=True)
    server.cli("trigger", "add", "rf-store", "storage", "--bucket", "rf-here", "--id", "rf-mine", check=True)
    trigs = server.api.get("/v1/storage/triggers", params={"function": "rf-store"}).json()["triggers"]
    assert [t["id"] for t in trigs] == ["rf-mine"]  # the id asked for, not a generated one
    r = server.api.post("/v1/storage/triggers", json={"function": "rf-store", "bucket": "rf-here", "id": "rf-mine",
                                                      "prefix": "x/"})
    assert r.status_code == 409 and error_code(r) == "trigger_exists"


def test_log_trigger_following_a_missing_function_is_refused(server: Server) -> None:
    server.deploy("rf-log", {"handler.py": FN})
    r = server.api.post("/v1/functions/rf-log/triggers", json={"kind": "log", "config": {"stream": "fn:ghost"}})
    assert r.status_code == 404 and error_code(r) == "function_not_found" and "stream='fn:ghost'" in r.text
    assert server.api.get("/v1/functions/rf-log/triggers").json() == {"triggers": []}


def test_broker_url_that_never_could_work_is_a_400_naming_url(server: Server) -> None:
    server.deploy("rf-url", {"handler.py": FN})
    for kind, url in (("amqp", "amqp//guest:pw@localhost"), ("nats", "http://127.0.0.1:4222"),
                      ("redis", "redis://127.0.0.1:notaport/0")):
        key = {"amqp": "queue", "nats": "subject", "redis": "stream"}[kind]
        r = server.api.post("/v1/functions/rf-url/triggers", json={"kind": kind, "config": {key: "q", "url": url}})
        assert r.status_code == 400 and error_code(r) == "invalid_trigger" and "option url=" in r.text, r.text
        assert ":pw@" not in r.text


def test_broker_down_is_added_with_its_error_at_once_and_passwords_never_shown(server: Server) -> None:
    server.deploy("rf-down", {"handler.py": FN})
    secret = "s3cr3t-Pa55"
    r = server.api.post("/v1/functions/rf-down/triggers", json={
        "kind": "amqp", "id": "rf-down-amqp", "config": {"queue": "q", "url": f"amqp://polyfn:{secret}@127.0.0.1:1/"}})
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["health"]["state"] == "error" and view["health"]["message"], view  # at once, in the answer
    assert secret not in r.text and view["config"]["url"] == "amqp://polyfn:***@127.0.0.1:1/"
    cli = server.cli("trigger", "add", "rf-down", "mqtt", "alerts/#", "-o", "port=1", "-o", "username=u",
                     "-o", f"password={secret}", "--id", "rf-down-mqtt")
    assert cli.returncode == 0 and "cannot reach its broker" in cli.stderr, cli.stderr
    for args in (("trigger", "list", "--json"), ("trigger", "list"), ("describe", "rf-down")):
        shown = server.cli(*args, check=True).stdout
        assert secret not in shown, args
    listed = {t["id"]: t for t in json.loads(server.cli("trigger", "list", "--json", check=True).stdout)}
    assert listed["rf-down-mqtt"]["config"]["password"] == "***"
    assert secret not in server.api.get("/v1/triggers/rf-down-amqp").text
    assert secret not in server.api.get("/v1/functions/rf-down/triggers").text
