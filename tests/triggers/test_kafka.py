"""Kafka trigger, client-level contract (no Kafka broker can run here): records from `getmany` become
messages, each partition's offset is committed only after delivery (success or dead-letter queue), poison
records are retried then dead-lettered, and an unreachable cluster shows in the trigger's health."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiokafka.structs import ConsumerRecord, TopicPartition

from polyfn.call import Call
from polyfn.config import Settings
from polyfn.invoker import Outcome
from polyfn.model import FunctionSpec
from polyfn.queue.builtin import QueueDB
from polyfn.triggers import kafka
from polyfn.triggers.base import Context
from polyfn.triggers.store import Trigger


class Consumer:
    """Stands in for AIOKafkaConsumer: the same start/getmany/commit/stop calls, records scripted."""

    def __init__(self, batches: list[dict[TopicPartition, list[ConsumerRecord]]]):
        self.batches = batches
        self.commits: list[dict[TopicPartition, int]] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        if self.batches:
            batch = self.batches.pop(0)
            (tp, records), = batch.items()
            if max_records is not None and len(records) > max_records:  # the rest comes next time
                self.batches.insert(0, {tp: records[max_records:]})
                return {tp: records[:max_records]}
            return batch
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    async def stop(self) -> None:
        self.stopped = True


class Invoker:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def call(self, call: Call) -> Outcome:
        event = json.loads(call.body)
        self.events.append(event)
        if "poison" in event["data"]["body"]:
            return Outcome(500, [(b"x-polyfn-error", b"function_error")], b'{"errorMessage": "poison"}')
        return Outcome(200, [], b'"ok"')


def rec(partition: int, offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(topic="orders", partition=partition, offset=offset, timestamp=int(time.time() * 1000),
                          timestamp_type=0, key=b"k", value=value, checksum=None, serialized_key_size=1,
                          serialized_value_size=len(value), headers=[("h", b"v")])


async def make(tmp_path: Path, invoker: Any) -> tuple[Context, Any]:
    db = await QueueDB.open(tmp_path / "q.db")
    spec = FunctionSpec(name="f", retry_attempts=2, retry_backoff=0.01)
    registry = SimpleNamespace(get=lambda name: SimpleNamespace(revision=SimpleNamespace(spec=spec)))
    ctx = Context(Settings(data_dir=tmp_path, trigger_reconnect_max=0.2), invoker, SimpleNamespace(db=db),
                  registry, None)  # type: ignore[arg-type]
    return ctx, db


async def test_records_delivered_then_committed(tmp_path: Path) -> None:
    inv = Invoker()
    ctx, db = await make(tmp_path, inv)
    p0, p1 = TopicPartition("orders", 0), TopicPartition("orders", 1)
    consumer = Consumer([{p0: [rec(0, 5, b"a"), rec(0, 6, b"poison")]}, {p1: [rec(1, 9, b"b")]}])
    trig = Trigger(id="k1", function="f", kind="kafka", config=kafka.validate({"topic": "orders"}))
    runner = kafka.KafkaRunner(trig, ctx)
    runner.consumer_factory = lambda cfg, group: consumer  # type: ignore[method-assign]
    task = asyncio.create_task(runner.run())
    for _ in range(200):
        if len(consumer.commits) >= 3:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert consumer.commits == [{p0: 6}, {p0: 7}, {p1: 10}]  # each after its record was done
    bodies = [e["data"]["body"] for e in inv.events]
    assert bodies == ["a", "poison", "poison", "b"]  # the poison record was retried once, then dead-lettered
    first = inv.events[0]
    assert first["type"] == "io.polyfn.broker.message" and first["data"]["source"] == "kafka"
    assert first["data"]["id"] == "orders:0:5"
    assert first["data"]["attributes"] == {"h": "v", "partition": "0", "offset": "5", "key": "k"}
    (dead,) = await db.dead()
    assert dead.trigger == "kafka" and "retries exhausted" in (dead.reason or "")
    assert runner.dead_lettered == 1 and runner.delivered == 2 and consumer.stopped
    await db.close()


async def test_unreachable_cluster_reported_and_retried(tmp_path: Path) -> None:
    ctx, db = await make(tmp_path, Invoker())
    trig = Trigger(id="k2", function="f", kind="kafka",
                   config=kafka.validate({"topic": "orders", "bootstrap_servers": "127.0.0.1:1"}))
    runner = kafka.KafkaRunner(trig, ctx)  # the real aiokafka client
    task = asyncio.create_task(runner.run())
    for _ in range(300):
        if runner.health["state"] == "error":
            break
        await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert runner.health["state"] == "error" and "Kafka" in runner.health["message"], runner.health
    await db.close()


def test_validate() -> None:
    assert kafka.validate({"topic": "t"})["start"] == "latest"
    import pytest

    from polyfn.triggers.base import TriggerConfigError

    with pytest.raises(TriggerConfigError):
        kafka.validate({"topic": "t", "start": "middle"})
    with pytest.raises(TriggerConfigError):
        kafka.validate({"topic": "t", "partitions": 3})
