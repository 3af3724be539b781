"""Kafka triggers (aiokafka).

Options: `bootstrap_servers` (default 127.0.0.1:9092), `topic`, `group_id` (default `polyfn-<trigger id>`),
`batch_size` (1: one `TYPE_BROKER_MESSAGE` per record; more: a `TYPE_QUEUE_BATCH` per partition batch),
`start` (`latest` default, or `earliest`, for a new group).

At-least-once: auto-commit is off; a partition's offset is committed only after its records were delivered
(function succeeded or the record went to the dead-letter queue). After a crash or a rebalance the group
resumes from the last committed offset. No Kafka broker can run on the development machines: the tests
cover the client-level contract (getmany → deliver → commit, records mapped to messages, connection
errors reported in the trigger's health and retried), not a live broker.
"""

from __future__ import annotations

from typing import Any

from polyfn.triggers.base import BrokerRunner, TriggerConfigError, only, opt_num, opt_str
from polyfn.triggers.delivery import Message, deliver


def validate(config: dict[str, Any]) -> dict[str, Any]:
    only(config, "kafka", {"bootstrap_servers", "topic", "group_id", "batch_size", "start"})
    start = config.get("start", "latest")
    if start not in ("latest", "earliest"):
        raise TriggerConfigError(f"option start={start!r}: use latest or earliest")
    return {"bootstrap_servers": opt_str(config, "bootstrap_servers", "127.0.0.1:9092"),
            "topic": opt_str(config, "topic", required=True), "group_id": opt_str(config, "group_id"),
            "batch_size": opt_num(config, "batch_size", 1, 1, 10000, integer=True), "start": start}


def _consumer(cfg: dict[str, Any], group: str) -> Any:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(cfg["topic"], bootstrap_servers=cfg["bootstrap_servers"], group_id=group,
                            enable_auto_commit=False, auto_offset_reset=cfg["start"],
                            request_timeout_ms=10000, retry_backoff_ms=500)


def record_message(rec: Any) -> Message:
    attrs = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for k, v in (rec.headers or ())}
    attrs["partition"] = str(rec.partition)
    attrs["offset"] = str(rec.offset)
    if rec.key is not None:
        attrs["key"] = rec.key.decode("utf-8", "replace") if isinstance(rec.key, bytes) else str(rec.key)
    return Message(id=f"{rec.topic}:{rec.partition}:{rec.offset}", body=rec.value or b"", attributes=attrs,
                   sent_at=(rec.timestamp or 0) / 1000)


class KafkaRunner(BrokerRunner):
    kind = "kafka"
    consumer_factory = staticmethod(_consumer)  # replaced in tests by an object with aiokafka's interface

    def __init__(self, trigger: Any, ctx: Any):
        super().__init__(trigger, ctx)
        self.cfg = trigger.config
        self.consumer: Any = None

    async def close(self) -> None:
        if self.consumer is not None:
            c, self.consumer = self.consumer, None
            try:
                await c.stop()
            except Exception:
                pass

    async def consume(self) -> None:
        c = self.cfg
        self.consumer = self.consumer_factory(c, c["group_id"] or f"polyfn-{self.trigger.id}")
        await self.consumer.start()
        self.connected()
        while True:
            batches = await self.consumer.getmany(timeout_ms=1000, max_records=c["batch_size"])
            for tp, records in batches.items():
                if not records:
                    continue
                msgs = [record_message(r) for r in records]
                await deliver(self, "kafka", tp.topic, msgs, single=c["batch_size"] == 1)
                await self.consumer.commit({tp: records[-1].offset + 1})


RUNNER = KafkaRunner
