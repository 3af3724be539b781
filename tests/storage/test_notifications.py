"""Storage triggers: matching, loop protection, retries and the dead-letter file (fake invoker)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from polyfn.storage.errors import S3Error
from polyfn.storage.notifications import Notifications, StorageTrigger, TriggerError, parse_events
from polyfn.store import Store


class Out:
    def __init__(self, status: int, body: bytes = b"{}") -> None:
        self.status = status
        self.body = body


class FakeInvoker:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, name: str, kind: str, trigger: str, method: str, path: str, query: str,
                       headers: Any, body: bytes, content_type: str) -> Out:
        assert (kind, trigger, content_type) == ("cloudevent", "storage", "application/cloudevents+json")
        self.calls.append((name, json.loads(body)))
        status = self.statuses.pop(0) if self.statuses else 200
        return Out(status, b'{"error": {"code": "function_error", "message": "boom"}}' if status >= 400 else b"ok")


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


async def test_configs_persist_and_loop_protection(store: Any, tmp_path: Path) -> None:
    n = Notifications(store, FakeInvoker([]), "us-east-1", tmp_path / "dlq.jsonl")
    t = await n.add("thumb", "images", "created", "uploads/")
    again = Notifications(store, FakeInvoker([]), "us-east-1", tmp_path / "dlq.jsonl")
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


async def test_retries_then_dead_letter(store: Any, tmp_path: Path) -> None:
    inv = FakeInvoker([500, 502, 500, 500, 500, 200])
    n = Notifications(store, inv, "us-east-1", tmp_path / "dlq.jsonl", attempts=3, backoff=0.001)
    await n.add("f", "b-1", "created")
    n.start()
    assert n.emit("created", "b-1", "k1", 3, "etag", "text/plain", "10.0.0.1") == 1
    assert n.emit("created", "other", "k", 1) == 0
    for _ in range(500):
        if n.failed and not n.pending():
            break
        await asyncio.sleep(0.01)
    assert n.emit("created", "b-1", "k2", 1) == 1
    await n.stop()
    assert [c[1]["data"]["key"] for c in inv.calls] == ["k1", "k1", "k1", "k2", "k2", "k2"]
    assert (n.failed, n.delivered) == (1, 1)  # k1 exhausted its 3 attempts; k2 succeeded on the third
    dead = n.dead_letters()
    assert dead[0]["attempts"] == 3 and dead[0]["event"]["data"]["key"] == "k1" and "boom" in dead[0]["error"]
    ev = inv.calls[0][1]
    assert ev["type"] == "io.polyfn.storage.object.created" and ev["specversion"] == "1.0"
    assert ev["data"] == {"bucket": "b-1", "key": "k1", "size": 3, "etag": "etag", "content_type": "text/plain",
                          "region": "us-east-1", "source_ip": "10.0.0.1", "sequencer": ev["data"]["sequencer"]}


async def test_missing_function_is_dead_lettered_at_once(store: Any, tmp_path: Path) -> None:
    inv = FakeInvoker([404])
    n = Notifications(store, inv, "us-east-1", tmp_path / "dlq.jsonl", attempts=5, backoff=0.001)
    await n.add("gone", "b-1", "deleted")
    n.start()
    n.emit("deleted", "b-1", "k")
    for _ in range(300):
        if n.failed:
            break
        await asyncio.sleep(0.01)
    await n.stop()
    assert len(inv.calls) == 1 and n.dead_letters()[0]["attempts"] == 1
