"""Explicit event kinds (`polyfn invoke --event KIND`): the CloudEvents they build."""

from __future__ import annotations

import json

import pytest

from polyfn.events import kinds
from polyfn.events.cloudevent import (
    TYPE_BROKER_MESSAGE,
    TYPE_LOG_BATCH,
    TYPE_OBJECT_CREATED,
    TYPE_OBJECT_DELETED,
    TYPE_QUEUE_BATCH,
    TYPE_TIMER,
    CloudEvent,
)


def test_every_kind_and_alias_builds_a_valid_cloudevent() -> None:
    for name in kinds.names():
        ev = kinds.build(name, {})
        again = CloudEvent.from_json(ev.to_json())
        assert again.specversion == "1.0" and again.id and again.time and again.type.startswith("io.polyfn.")


@pytest.mark.parametrize(("kind", "type_"), [("s3:put", TYPE_OBJECT_CREATED), ("s3:delete", TYPE_OBJECT_DELETED),
                                             ("sqs", TYPE_QUEUE_BATCH), ("pubsub", TYPE_BROKER_MESSAGE),
                                             ("cron", TYPE_TIMER), ("logs", TYPE_LOG_BATCH)])
def test_aliases(kind: str, type_: str) -> None:
    assert kinds.build(kind, {}).type == type_


def test_object_data_overrides_defaults() -> None:
    ev = kinds.build("s3:put", {"bucket": "b", "key": "k", "size": "12"})
    assert ev.data["bucket"] == "b" and ev.data["key"] == "k" and ev.data["size"] == 12 and ev.subject == "k"
    assert ev.data["content_type"] == "application/octet-stream"


def test_queue_from_body_or_messages() -> None:
    one = kinds.build("sqs", {"body": {"order": 1}, "attributes": {"a": "b"}})
    (m,) = one.data["messages"]
    assert json.loads(m["body"]) == {"order": 1} and m["attributes"] == {"a": "b"} and m["attempt"] == 1
    many = kinds.build("sqs", {"topic": "t", "messages": [{"body": "x"}, "y"]})
    assert [m["body"] for m in many.data["messages"]] == ["x", "y"] and many.data["topic"] == "t"
    assert kinds.build("sqs", "plain").data["messages"][0]["body"] == "plain"


def test_timer_payload_and_logs() -> None:
    t = kinds.build("timer", "hello")
    assert t.data["payload"] == "hello" and t.data["scheduled_time"].endswith("Z")
    lg = kinds.build("logs", {"lines": ["a", {"message": "b"}]})
    assert [ln["message"] for ln in lg.data["lines"]] == ["a", "b"]


def test_unknown_kind_lists_kinds() -> None:
    with pytest.raises(kinds.UnknownKind) as e:
        kinds.build("nope", {})
    assert "s3:put" in str(e.value) and "sqs" in str(e.value)
    with pytest.raises(kinds.UnknownKind):
        kinds.build("s3:put", [1, 2])
