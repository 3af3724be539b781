"""Storage triggers end to end: uploads invoke functions with CloudEvents; retries, DLQ, loop protection,
per-function credentials, and the thumbnail scenario through the real CLI."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .conftest import REPO, Server, start_server, wait_until
from .storage_helpers import s3_client, storage_info

pytestmark = pytest.mark.timeout(120)

RECORDER = '''
import json, boto3
s3 = boto3.client("s3")
def handler(event, context):
    s3.put_object(Bucket="eventlog", Key=event["id"], Body=json.dumps(event).encode())
    return "ok"
'''


@pytest.fixture(scope="module")
def s3(server: Server) -> Any:
    return s3_client(server)


def _objects(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def _events(s3: Any) -> list[dict[str, Any]]:
    return [json.loads(s3.get_object(Bucket="eventlog", Key=k)["Body"].read()) for k in _objects(s3, "eventlog")]


def test_thumbnail_scenario_through_the_cli(server: Server, s3: Any, tmp_path: Path) -> None:
    from PIL import Image

    # The example as shipped: a function sees only the standard library, the provided boto3 and its own
    # requirements (Pillow), installed at deploy — never the test's or the server's environment.
    example = REPO / "examples" / "scenarios" / "thumbnail"
    server.deploy("thumbnail", {"main.py": (example / "main.py").read_text(),
                                "requirements.txt": (example / "requirements.txt").read_text()},
                  handler="main.handle", flavor="aliyun")
    server.cli("storage", "mb", "s3://images", check=True)
    r = server.cli("trigger", "add", "thumbnail", "storage", "--bucket", "images", "--events", "created",
                   "--prefix", "uploads/", check=True)
    assert "uploads/" in r.stderr
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (640, 480), (200, 30, 30)).save(photo)
    server.cli("storage", "cp", str(photo), "s3://images/uploads/", check=True)
    assert wait_until(lambda: "thumbs/photo-thumb.jpg" in _objects(s3, "images", "thumbs/"), timeout=60), \
        server.log.read_text()[-3000:]
    thumb = Image.open(io.BytesIO(s3.get_object(Bucket="images", Key="thumbs/photo-thumb.jpg")["Body"].read()))
    assert thumb.format == "JPEG" and thumb.size == (640, 480)  # within the seed's 800x800 box: not enlarged
    listing = server.cli("storage", "ls", "s3://images/thumbs/", check=True).stdout
    assert "thumbs/photo-thumb.jpg" in listing
    out = tmp_path / "back.jpg"
    server.cli("storage", "cp", "s3://images/thumbs/photo-thumb.jpg", str(out), check=True)
    assert Image.open(out).size == thumb.size
    trig = json.loads(server.cli("trigger", "list", "--json", check=True).stdout)
    assert [t["function"] for t in trig if t["bucket"] == "images"] == ["thumbnail"]


def test_created_and_deleted_cloudevents(server: Server, s3: Any) -> None:
    s3.create_bucket(Bucket="eventlog")
    s3.create_bucket(Bucket="watched")
    server.deploy("recorder", {"main.py": RECORDER}, handler="main.handler")
    r = server.api.post("/v1/storage/triggers", json={"function": "recorder", "bucket": "watched",
                                                      "events": "created,deleted", "suffix": ".txt"})
    assert r.status_code == 201, r.text
    s3.put_object(Bucket="watched", Key="docs/a.txt", Body=b"hello", ContentType="text/plain")
    s3.put_object(Bucket="watched", Key="docs/ignored.bin", Body=b"x")  # suffix does not match
    assert wait_until(lambda: len(_objects(s3, "eventlog")) >= 1, timeout=30)
    s3.delete_object(Bucket="watched", Key="docs/a.txt")
    assert wait_until(lambda: len(_objects(s3, "eventlog")) >= 2, timeout=30)
    events = sorted(_events(s3), key=lambda e: e["type"])
    assert [e["type"] for e in events] == ["io.polyfn.storage.object.created", "io.polyfn.storage.object.deleted"]
    created = events[0]
    assert created["specversion"] == "1.0" and created["subject"] == "docs/a.txt"
    data = created["data"]
    assert data["bucket"] == "watched" and data["key"] == "docs/a.txt" and data["size"] == 5
    assert data["etag"] == "5d41402abc4b2a76b9719d911017c592" and data["content_type"] == "text/plain"
    assert data["region"] == "us-east-1" and data["source_ip"] == "127.0.0.1" and data["sequencer"]
    acts = server.api.get("/v1/activations", params={"function": "recorder"}).json()["activations"]
    assert {a["trigger"] for a in acts} == {"storage"}


FLAVORED = {  # name → (files, deploy options): each returns (or prints) the key as its vendor's event shape has it
    "fl-aws": ({"lambda_function.py": "def lambda_handler(event, context):\n"
                "    r = event['Records'][0]\n    return [r['eventSource'], r['s3']['object']['key']]\n"},
               {"flavor": "aws", "handler": "lambda_function.lambda_handler"}),
    "fl-aliyun": ({"index.py": "import json\ndef handler(event, context):\n    e = json.loads(event)['events'][0]\n"
                   "    return [e['eventSource'], e['oss']['object']['key']]\n"}, {"flavor": "aliyun", "handler": "index.handler"}),
    "fl-tencent": ({"index.py": "def main_handler(event, context):\n    r = event['Records'][0]\n"
                    "    return ['cos', r['cos']['cosObject']['key']]\n"}, {"flavor": "tencent", "handler": "index.main_handler"}),
    "fl-gcp": ({"main.py": "import functions_framework\n@functions_framework.cloud_event\ndef on_object(ce):\n"
                "    print('GCS', ce['type'], ce.data['name'])\n"}, {"flavor": "gcp", "handler": "main.on_object"}),
    "fl-azure": ({"function_app.py": "import azure.functions as func\napp = func.FunctionApp()\n"
                  "@app.blob_trigger(arg_name='blob', path='flavors/{name}', connection='AzureWebJobsStorage')\n"
                  "def on_blob(blob: func.InputStream):\n    print('BLOB', blob.name, blob.length)\n"},
                 {"flavor": "azure", "handler": "function_app.app"}),
    "fl-node": ({"index.js": "exports.handler = async (event) => [event.Records[0].eventSource, "
                 "event.Records[0].s3.object.key];\n"}, {"flavor": "aws", "runtime": "node", "handler": "index.handler"}),
}


def test_each_flavor_gets_its_vendor_event_shape(server: Server, s3: Any) -> None:
    """The queue carries the CloudEvent (kind `cloudevent`, trigger `storage`); the flavor shapes it when the
    invocation runs — in the instance for Python, in the node for Node.js."""
    s3.create_bucket(Bucket="flavors")
    for name, (files, opts) in FLAVORED.items():
        server.deploy(name, files, **opts)
        assert server.api.post("/v1/storage/triggers", json={"function": name, "bucket": "flavors"}).status_code == 201
    s3.put_object(Bucket="flavors", Key="in/photo.jpg", Body=b"jpg")

    def final(name: str) -> dict[str, Any] | None:
        acts = server.api.get("/v1/activations", params={"function": name}).json()["activations"]
        act = server.activation(acts[0]["id"]) if acts else None
        return act if act and act["status"] not in ("pending", "running") else None

    assert wait_until(lambda: all(final(n) for n in FLAVORED), timeout=60), server.log.read_text()[-3000:]
    got = {n: final(n) for n in FLAVORED}
    assert {n: a["status"] for n, a in got.items()} == dict.fromkeys(FLAVORED, "success"), got
    assert json.loads(got["fl-aws"]["result"]) == ["aws:s3", "in/photo.jpg"]
    assert json.loads(got["fl-aliyun"]["result"]) == ["acs:oss", "in/photo.jpg"]
    assert json.loads(got["fl-tencent"]["result"])[1].endswith("/flavors/in/photo.jpg")  # COS: /APPID/bucket/key
    assert json.loads(got["fl-node"]["result"]) == ["aws:s3", "in/photo.jpg"]
    gcs = " ".join(ln["message"] if isinstance(ln, dict) else str(ln) for ln in got["fl-gcp"]["logs"])
    assert "GCS google.cloud.storage.object.v1.finalized in/photo.jpg" in gcs, got["fl-gcp"]
    blob = " ".join(ln["message"] if isinstance(ln, dict) else str(ln) for ln in got["fl-azure"]["logs"])
    assert "BLOB flavors/in/photo.jpg 3" in blob, got["fl-azure"]


def test_functions_get_their_own_credentials(server: Server, s3: Any) -> None:
    code = '''
import os
def handler(event, context):
    return {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_REGION")}
'''
    server.deploy("whoami", {"main.py": code}, handler="main.handler")
    # made by the deploy, not by the first start (a brand-new function's first start does not wait for it)
    made = [k["access_key_id"] for k in server.api.get("/v1/storage/keys").json()["keys"] if k["function"] == "whoami"]
    env = server.api.post("/v1/functions/whoami/invoke", json={}).json()
    assert made == [env["AWS_ACCESS_KEY_ID"]]
    assert env["AWS_ENDPOINT_URL_S3"] == storage_info(server)["endpoint"]
    assert env["AWS_REGION"] == "us-east-1"
    keys = server.api.get("/v1/storage/keys").json()["keys"]
    assert {"access_key_id": env["AWS_ACCESS_KEY_ID"], "function": "whoami"}.items() <= next(
        k for k in keys if k["access_key_id"] == env["AWS_ACCESS_KEY_ID"]).items()
    # the function's own env wins over the injected defaults
    server.deploy("whoami2", {"main.py": code}, handler="main.handler", env={"AWS_REGION": "eu-west-1"})
    assert server.api.post("/v1/functions/whoami2/invoke", json={}).json()["AWS_REGION"] == "eu-west-1"
    # deleting the function revokes its key
    assert server.api.delete("/v1/functions/whoami").status_code == 200
    keys = server.api.get("/v1/storage/keys").json()["keys"]
    assert env["AWS_ACCESS_KEY_ID"] not in [k["access_key_id"] for k in keys]


def test_loop_protection_refuses_self_triggering_write(server: Server, s3: Any) -> None:
    code = '''
import boto3
from botocore.exceptions import ClientError
s3 = boto3.client("s3")
def handler(event, context):
    key = event["data"]["key"]
    try:
        s3.put_object(Bucket="loopy", Key="in/again-" + key.rsplit("/", 1)[-1], Body=b"x")
        return "wrote"
    except ClientError as e:
        s3.put_object(Bucket="loopy", Key="out/refused", Body=e.response["Error"]["Message"].encode())
        return "refused"
'''
    s3.create_bucket(Bucket="loopy")
    server.deploy("looper", {"main.py": code}, handler="main.handler")
    assert server.api.post("/v1/storage/triggers", json={"function": "looper", "bucket": "loopy",
                                                         "prefix": "in/"}).status_code == 201
    s3.put_object(Bucket="loopy", Key="in/first", Body=b"x")
    assert wait_until(lambda: "out/refused" in _objects(s3, "loopy", "out/"), timeout=30)
    msg = s3.get_object(Bucket="loopy", Key="out/refused")["Body"].read().decode()
    assert "loop protection" in msg and "looper" in msg
    assert _objects(s3, "loopy", "in/") == ["in/first"]
    # a user key may still write there (and triggers the function as usual)
    s3.put_object(Bucket="loopy", Key="in/second", Body=b"x")


def test_trigger_api_errors(server: Server) -> None:
    r = server.api.post("/v1/storage/triggers", json={"function": "nope", "bucket": "b-1"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "function_not_found"
    server.deploy("trig-target", {"main.py": "def handler(e, c):\n    return 1\n"}, handler="main.handler")
    r = server.api.post("/v1/storage/triggers", json={"function": "trig-target", "bucket": "b-1",
                                                      "events": "updated"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_trigger"
    r = server.api.post("/v1/storage/triggers", json={"function": "trig-target", "bucket": "Bad_Bucket"})
    assert r.status_code == 400
    r = server.api.post("/v1/storage/triggers", json={"function": "trig-target", "bucket": "b-1"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "bucket_not_found"  # it could never fire
    server.cli("storage", "mb", "s3://b-1", check=True)
    server.cli("storage", "mb", "s3://b-2", check=True)
    r = server.api.post("/v1/storage/triggers", json={"function": "trig-target", "bucket": "b-1"})
    assert r.status_code == 201
    tid = r.json()["id"]
    dup = server.api.post("/v1/storage/triggers", json={"function": "trig-target", "bucket": "b-1"})
    assert dup.status_code == 409
    assert server.api.delete(f"/v1/storage/triggers/{tid}").status_code == 200
    assert server.api.delete(f"/v1/storage/triggers/{tid}").status_code == 404
    r = server.cli("trigger", "add", "trig-target", "cron", "--bucket", "x")
    assert r.returncode == 2 and "storage" in r.stderr
    assert server.api.post("/v1/storage/triggers", json={"function": "trig-target", "bucket": "b-2"}).status_code == 201
    assert server.api.delete("/v1/functions/trig-target").status_code == 200
    assert server.api.get("/v1/storage/triggers", params={"function": "trig-target"}).json()["triggers"] == []


def test_failing_trigger_function_is_retried_then_dead_lettered(server: Server, s3: Any) -> None:
    """Storage deliveries are async invocations of the durable queue: the function's retry policy, then the
    dead-letter queue (`polyfn dlq list|show|replay`)."""
    s3.create_bucket(Bucket="inbox")
    flaky = '''
calls = 0
def handler(event, context):
    global calls
    calls += 1
    if calls == 1:
        raise RuntimeError("first attempt fails")
    return {"calls": calls}
'''
    server.deploy("flaky", {"main.py": flaky}, handler="main.handler", min_instances=1, max_instances=1,
                  retry_attempts=3, retry_backoff=0.05)
    server.deploy("broken", {"main.py": "def handler(e, c):\n    raise ValueError('always')\n"}, handler="main.handler",
                  retry_attempts=3, retry_backoff=0.05)
    trig = {}
    for fn in ("flaky", "broken"):
        r = server.api.post("/v1/storage/triggers", json={"function": fn, "bucket": "inbox"})
        assert r.status_code == 201
        trig[fn] = r.json()["id"]
    s3.put_object(Bucket="inbox", Key="doc", Body=b"x")

    def dead() -> list[dict[str, Any]]:
        return [d for d in server.api.get("/v1/dlq").json()["dead_letters"] if d["function"] in ("flaky", "broken")]

    assert wait_until(lambda: len(dead()) == 1, timeout=30), server.log.read_text()[-2000:]
    d = dead()[0]
    assert d["function"] == "broken" and d["trigger"] == "storage" and d["attempt"] == 3
    assert "always" in d["last_error"]["message"]
    listed = server.cli("dlq", "list", "broken", check=True).stdout
    assert d["id"] in listed and "storage" in listed
    shown = json.loads(server.cli("dlq", "show", d["id"], check=True).stdout)
    event = json.loads(shown["body"])
    assert event["type"] == "io.polyfn.storage.object.created" and event["data"]["key"] == "doc"
    assert ["x-polyfn-storage-trigger", trig["broken"]] in shown["headers"]
    flaky_acts = server.api.get("/v1/activations", params={"function": "flaky"}).json()["activations"]
    assert wait_until(lambda: server.activation(flaky_acts[0]["id"])["status"] == "success", timeout=30)
    act = server.activation(flaky_acts[0]["id"])
    assert act["trigger"] == "storage" and json.loads(act["result"]) == {"calls": 2}  # failed once, then retried
    broken = server.activation(d["id"])
    assert broken["status"] == "dead_letter" and broken["attempts"] == 3 and broken["trigger"] == "storage"
    assert not (server.data_dir / "storage" / "dead-letters.jsonl").exists()
    # every failed attempt is a trigger error on /metrics: broken failed 3 times, flaky once
    metrics = server.http.get("/metrics").text
    for fn, n in (("broken", 3), ("flaky", 1)):
        line = f'polyfn_trigger_errors_total{{function="{fn}",kind="storage",reason="function_error"}} {n}'
        assert any(m.startswith(line) for m in metrics.splitlines()), (line, [
            m for m in metrics.splitlines() if m.startswith("polyfn_trigger_errors_total")])
    # a replay runs the delivery again with the same event (it fails again: back in the DLQ)
    server.cli("dlq", "replay", d["id"], check=True)
    assert wait_until(lambda: [e["dead_at"] for e in dead()] > [d["dead_at"]], timeout=30)
    with pytest.raises(ClientError):
        s3.delete_bucket(Bucket="inbox")


def test_loop_protection_shows_in_the_activation(server: Server, s3: Any) -> None:
    """A function that writes under its own trigger's prefix without catching the refusal: its activation
    carries the loop-protection message, and nothing was stored."""
    code = '''
import boto3
s3 = boto3.client("s3")
def handler(event, context):
    s3.put_object(Bucket="loop2", Key="in/echo-" + event["data"]["key"].rsplit("/", 1)[-1], Body=b"x")
    return "wrote"
'''
    s3.create_bucket(Bucket="loop2")
    server.deploy("looper2", {"main.py": code}, handler="main.handler", retry_attempts=1)
    assert server.api.post("/v1/storage/triggers", json={"function": "looper2", "bucket": "loop2",
                                                         "prefix": "in/"}).status_code == 201
    s3.put_object(Bucket="loop2", Key="in/first", Body=b"x")

    def acts() -> list[dict[str, Any]]:
        return server.api.get("/v1/activations", params={"function": "looper2"}).json()["activations"]

    assert wait_until(lambda: len(acts()) >= 1, timeout=30)
    act = server.activation(acts()[0]["id"])
    assert act["trigger"] == "storage"
    text = json.dumps(act)
    assert "loop protection" in text and "looper2" in text and "another prefix or bucket" in text, text[:2000]
    assert _objects(s3, "loop2", "in/") == ["in/first"]
    assert len(acts()) == 1  # the refused write triggered nothing


SLOW_RECORDER = '''
import os, time
def handler(event, context):
    time.sleep(0.3)
    with open(os.path.join(os.environ["STATE"], "seen.log"), "a") as f:
        f.write(event["data"]["key"] + "\\n")
    return "ok"
'''


def test_acknowledged_uploads_are_delivered_after_kill_9(tmp_path: Path) -> None:
    """Every upload boto3 saw succeed is delivered, even when the server is SIGKILLed with most of the
    deliveries still queued, once it restarts."""
    state = tmp_path / "state"
    state.mkdir()
    s = start_server(tmp_path / "data", host_fs=True)
    try:
        s.deploy("slow-rec", {"main.py": SLOW_RECORDER}, handler="main.handler", env={"STATE": str(state)},
                 max_instances=1)
        s3 = s3_client(s)
        s3.create_bucket(Bucket="durable")
        assert s.api.post("/v1/storage/triggers", json={"function": "slow-rec", "bucket": "durable"}).status_code == 201
        keys = [f"k{i:02d}" for i in range(12)]
        for k in keys:
            s3.put_object(Bucket="durable", Key=k, Body=b"x")  # acknowledged: its event is in the queue file
    finally:
        s.stop(signal.SIGKILL)  # one delivery at a time, 0.3 s each: most are still queued
    seen_log = state / "seen.log"

    def seen() -> set[str]:
        return set(seen_log.read_text().split()) if seen_log.exists() else set()

    assert len(seen()) < len(keys)
    s = start_server(tmp_path / "data", host_fs=True)
    try:
        assert wait_until(lambda: set(keys) <= seen(), 60), f"never delivered: {set(keys) - seen()}"
        acts = s.api.get("/v1/activations", params={"function": "slow-rec", "limit": 100}).json()["activations"]
        assert {a["trigger"] for a in acts} == {"storage"}
    finally:
        s.stop()
