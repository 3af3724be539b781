"""Storage triggers: matching, loop protection, and what `emit` hands the durable queue (a recording
`enqueue`; delivery, retries and the dead-letter queue run through the real queue in
tests/e2e/test_storage_triggers.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from polyfn.call import Call
from polyfn.storage.errors import S3Error
from polyfn.storage.notifications import Notifications, StorageTrigger, TriggerError, parse_events
from polyfn.store import Store


class Recorder:
    """Stands in for `AsyncQueue.enqueue` (same signature); `fail` makes it raise like a closed queue."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    async def __call__(self, call: Call, callback_url: str | None = None, job_id: str | None = None,
                       check: bool = True) -> str:
        if self.fail:
            raise RuntimeError("queue closed")
        self.calls.append({"function": call.function, "kind": call.kind, "trigger": call.trigger,
                           "event": json.loads(call.body), "content_type": call.content_type,
                           "headers": call.headers, "check": check})
        return f"a{len(self.calls)}"


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    s = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    yield s
    await s.close()


@pytest.mark.parametrize("trig, bucket, key, event, hit", [
    (StorageTrigger("t", "f", "img", ("created",)), "img", "any", "created", True),
    (StorageTrigger("t", "f", "img", ("created",)), "img", "any", "deleted", False),
    (StorageTrigger("t", "f", "img", ("created",)), "other", "any", "created", False),
    (StorageTrigger("t", "f", "img", ("created",), "uploads/"), "img", "uploads/a.jpg", "created", True),
    (StorageTrigger("t", "f", "img", ("created",), "uploads/"), "img", "thumbs/a.jpg", "created", False),
    (StorageTrigger("t", "f", "img", ("created", "deleted"), "", ".jpg"), "img", "x.jpg", "deleted", True),
    (StorageTrigger("t", "f", "img", ("created",), "", ".jpg"), "img", "x.png", "created", False),
])
def test_matching(trig: StorageTrigger, bucket: str, key: str, event: str, hit: bool) -> None:
    assert trig.matches(bucket, key, event) is hit


def test_parse_events() -> None:
    assert parse_events("created, deleted") == ("created", "deleted")
    for bad in ("", "updated", "created,moved"):
        with pytest.raises(TriggerError):
            parse_events(bad)


async def test_configs_persist_and_loop_protection(store: Any) -> None:
    n = Notifications(store, "us-east-1")
    t = await n.add("thumb", "images", "created", "uploads/")
    again = Notifications(store, "us-east-1")
    await again.load()
    assert again.list() == [t]
    with pytest.raises(S3Error) as e:
        again.check_loop("images", "uploads/x.jpg", "created", "thumb")
    assert e.value.status == 403 and "loop protection" in e.value.message
    again.check_loop("images", "thumbs/x.jpg", "created", "thumb")  # another prefix: fine
    again.check_loop("images", "uploads/x.jpg", "created", "other-fn")  # another function: fine
    again.check_loop("images", "uploads/x.jpg", "created", "")  # a user key: fine
    assert await again.remove(t.id) == t
    assert again.list() == []


async def test_emit_queues_one_async_invocation_per_matching_trigger(store: Any) -> None:
    n = Notifications(store, "us-east-1")
    t1 = await n.add("f", "b-1", "created")
    t2 = await n.add("g", "b-1", "created,deleted", suffix=".txt")
    assert await n.emit("created", "other", "k", 1) == 0  # nothing matches: no queue needed
    with pytest.raises(RuntimeError, match="not running"):
        await n.emit("created", "b-1", "k1", 3)
    n.enqueue = rec = Recorder()
    assert await n.emit("created", "b-1", "k1.txt", 3, "etag", "text/plain", "10.0.0.1") == 2
    assert await n.emit("deleted", "b-1", "k1.txt") == 1
    assert [(c["function"], c["kind"], c["trigger"], c["check"]) for c in rec.calls] == [
        ("f", "cloudevent", "storage", False), ("g", "cloudevent", "storage", False),
        ("g", "cloudevent", "storage", False)]
    assert [c["headers"] for c in rec.calls] == [[("x-polyfn-storage-trigger", t.id)] for t in (t1, t2, t2)]
    ev = rec.calls[0]["event"]
    assert rec.calls[0]["content_type"] == "application/cloudevents+json"
    assert ev["type"] == "io.polyfn.storage.object.created" and ev["specversion"] == "1.0"
    assert ev["source"] == "polyfn:storage:us-east-1:b-1" and ev["subject"] == "k1.txt"
    assert ev["data"] == {"bucket": "b-1", "key": "k1.txt", "size": 3, "etag": "etag", "content_type": "text/plain",
                          "region": "us-east-1", "source_ip": "10.0.0.1", "sequencer": ev["data"]["sequencer"]}
    assert rec.calls[1]["event"] == ev  # one event, delivered to each trigger
    assert rec.calls[2]["event"]["type"] == "io.polyfn.storage.object.deleted"
    assert rec.calls[2]["event"]["data"]["sequencer"] > ev["data"]["sequencer"]
    n.enqueue = Recorder(fail=True)
    with pytest.raises(RuntimeError, match="queue closed"):  # the S3 API answers 500, not 200
        await n.emit("created", "b-1", "k2", 1)

