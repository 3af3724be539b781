"""polyfn's vendor event shapes against the vendors' published samples (fixtures/): same keys, same JSON
types, recursively. Free-form maps (user metadata, attributes, headers, detail) are compared as maps."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from polyfn.events import azure, cloudwatch_logs, cos, gcp, oss, s3, shapes, sqs, timer
from polyfn.events.cloudevent import (
    TYPE_BROKER_MESSAGE,
    TYPE_LOG_BATCH,
    TYPE_OBJECT_CREATED,
    TYPE_OBJECT_DELETED,
    TYPE_QUEUE_BATCH,
    TYPE_TIMER,
    new_event,
)

FIXTURES = Path(__file__).parent / "fixtures"
FREE_FORM = ("meta", "messageAttributes", "requestHeaders", "detail", "message.attributes")

OBJECT = {"bucket": "photos", "key": "folder/Happy Face.jpg", "size": 1024, "etag": '"abc"',
          "content_type": "image/jpeg", "region": None, "source_ip": "10.0.0.1", "sequencer": None}
QUEUE = {"source": "queue", "topic": "orders", "messages": [
    {"id": "m1", "body": "hello", "body_base64": False, "attributes": {"a": "1"}, "sent_at": 1700000000.5,
     "attempt": 2}]}
TIMER = {"trigger": "nightly", "schedule": "0 3 * * *", "timezone": "UTC",
         "scheduled_time": "2026-01-01T03:00:00Z", "payload": "user define msg body"}
LOGS = {"stream": "s1", "group": "g1", "lines": [{"id": "1", "timestamp": 1552518348220, "message": "REPORT x"}]}


def ce(type_: str, data: Any) -> dict[str, Any]:
    return json.loads(new_event(type_, "polyfn:test", data).to_json())


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return type(v).__name__


def shape_diff(ours: Any, sample: Any, path: str = "$") -> list[str]:
    if kind(ours) != kind(sample):
        return [f"{path}: {kind(ours)} vs sample {kind(sample)}"]
    if isinstance(sample, dict):
        if any(path.endswith("." + f) for f in FREE_FORM):
            return []
        out = [f"{path}.{k}: missing" for k in sample if k not in ours]
        out += [f"{path}.{k}: not in the sample" for k in ours if k not in sample]
        for k in sample.keys() & ours.keys():
            out += shape_diff(ours[k], sample[k], f"{path}.{k}")
        return out
    if isinstance(sample, list) and sample and ours:
        return shape_diff(ours[0], sample[0], path + "[0]")
    return []


CASES = [
    ("s3-put.json", lambda: s3.event(ce(TYPE_OBJECT_CREATED, OBJECT))),
    ("sqs.json", lambda: sqs.event(ce(TYPE_QUEUE_BATCH, QUEUE))),
    ("eventbridge-scheduled.json", lambda: timer.eventbridge(ce(TYPE_TIMER, TIMER))),
    ("cloudwatch-logs-decoded.json", lambda: cloudwatch_logs.decode(
        cloudwatch_logs.event(ce(TYPE_LOG_BATCH, LOGS))["awslogs"]["data"])),
    ("oss-put.json", lambda: oss.event(ce(TYPE_OBJECT_CREATED, OBJECT))),
    ("cos-put.json", lambda: cos.event(ce(TYPE_OBJECT_CREATED, OBJECT))),
    ("cmq-topic.json", lambda: cos.cmq_event(ce(TYPE_QUEUE_BATCH, QUEUE))),
    ("tencent-timer.json", lambda: timer.tencent(ce(TYPE_TIMER, TIMER))),
    ("aliyun-timer.json", lambda: timer.aliyun(ce(TYPE_TIMER, TIMER))),
    ("gcs-finalized.json", lambda: gcp.cloudevents(ce(TYPE_OBJECT_CREATED, OBJECT))[0]),
    ("pubsub-published.json", lambda: gcp.cloudevents(ce(TYPE_QUEUE_BATCH, QUEUE))[0]),
]


@pytest.mark.parametrize(("sample", "build"), CASES, ids=[c[0] for c in CASES])
def test_shape_matches_vendor_sample(sample: str, build: Any) -> None:
    ours = build()
    json.dumps(ours)  # JSON-serialisable, as it travels
    assert shape_diff(ours, fixture(sample)) == []


def test_shape_diff_can_fail() -> None:
    assert shape_diff({"a": 1, "b": "x"}, {"a": "1", "c": 2}) == ["$.c: missing", "$.b: not in the sample",
                                                                    "$.a: number vs sample str"]


def test_s3_values() -> None:
    rec = s3.event(ce(TYPE_OBJECT_CREATED, OBJECT))["Records"][0]
    assert rec["s3"]["object"]["key"] == "folder/Happy+Face.jpg"  # URL-encoded as S3 does
    assert rec["s3"]["object"]["eTag"] == "abc" and rec["s3"]["bucket"]["arn"] == "arn:aws:s3:::photos"
    assert rec["requestParameters"]["sourceIPAddress"] == "10.0.0.1"
    assert rec["eventTime"].endswith("Z") and len(rec["eventTime"]) == 24
    gone = s3.event(ce(TYPE_OBJECT_DELETED, OBJECT))["Records"][0]
    assert gone["eventName"] == "ObjectRemoved:Delete" and "size" not in gone["s3"]["object"]


def test_sqs_values() -> None:
    rec = sqs.event(ce(TYPE_QUEUE_BATCH, QUEUE))["Records"][0]
    assert rec["messageId"] == "m1" and rec["body"] == "hello" and rec["attributes"]["ApproximateReceiveCount"] == "2"
    assert rec["attributes"]["SentTimestamp"] == "1700000000500"
    assert rec["messageAttributes"]["a"]["stringValue"] == "1" and rec["md5OfBody"] == "5d41402abc4b2a76b9719d911017c592"
    one = sqs.event(ce(TYPE_BROKER_MESSAGE, {"source": "nats", "topic": "t", **QUEUE["messages"][0]}))
    assert len(one["Records"]) == 1 and one["Records"][0]["eventSourceARN"].endswith(":t")


def test_timers_values() -> None:
    eb = timer.eventbridge(ce(TYPE_TIMER, TIMER))
    assert eb["time"] == "2026-01-01T03:00:00Z" and eb["resources"][0].endswith("rule/nightly")
    assert timer.tencent(ce(TYPE_TIMER, TIMER))["Message"] == "user define msg body"
    assert timer.aliyun(ce(TYPE_TIMER, {**TIMER, "payload": {"k": 1}}))["payload"] == '{"k": 1}'


def test_pubsub_data_is_base64() -> None:
    gce = gcp.cloudevents(ce(TYPE_QUEUE_BATCH, QUEUE))[0]
    assert base64.b64decode(gce["data"]["message"]["data"]) == b"hello"
    assert gce["data"]["message"]["attributes"] == {"a": "1"}
    data, ctx = gcp.legacy(gce)
    assert data["attributes"] == {"a": "1"} and ctx["event_type"] == "google.pubsub.topic.publish"


def test_azure_payloads() -> None:
    t = azure.timer(ce(TYPE_TIMER, TIMER))
    assert set(t) == {"Schedule", "ScheduleStatus", "IsPastDue"} and t["Schedule"]["Expression"] == "0 3 * * *"
    b = azure.blob(ce(TYPE_OBJECT_CREATED, OBJECT), b"x")
    assert b["name"] == "photos/folder/Happy Face.jpg" and b["length"] == 1024
    q = azure.queue_messages(ce(TYPE_QUEUE_BATCH, QUEUE))
    assert q[0]["body"] == "hello" and q[0]["dequeue_count"] == 2


def test_shape_table_passes_unknown_types_through() -> None:
    other = ce("com.example.custom", {"x": 1})
    assert shapes.shape("aws", other) == other
    assert shapes.shape("native", ce(TYPE_OBJECT_CREATED, OBJECT))["type"] == TYPE_OBJECT_CREATED
    assert "Records" in shapes.shape("aws", ce(TYPE_OBJECT_CREATED, OBJECT))
