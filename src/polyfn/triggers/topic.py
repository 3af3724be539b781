"""Embedded queue topics: `polyfn publish TOPIC` / `POST /v1/topics/{topic}/messages` fan a message out to
every `topic` trigger on that topic; each trigger's copy waits durably in the queue file until delivered.

Options: `topic` (required), `batch_size` (1-1000, default 10), `batch_window` (seconds to wait for a fuller
batch, 0-300, default 0). The function gets a `TYPE_QUEUE_BATCH` CloudEvent (`source` "queue"); its
`batchItemFailures` are honoured; failed messages are retried per the function's policy, then dead-lettered.

With the cluster's queue (`queue_url`) the copies wait in its JetStream topics stream instead, one subject
and durable consumer per trigger, so whichever node runs the trigger takes them (`_run_stream`): a message
published on one node is delivered once, and a node that dies mid-batch leaves it to the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

from polyfn.queue.jetstream import keep_held
from polyfn.tenancy import owns
from polyfn.triggers.base import Runner, TriggerConfigError, opt_num, opt_str
from polyfn.triggers.delivery import Interrupted, Message, deliver

TOPIC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_topic(topic: str) -> str:
    if not TOPIC_RE.match(topic):
        raise TriggerConfigError(f"topic {topic!r}: use 1-128 characters A-Z, a-z, 0-9, '.', '_' and '-'",
                                 code="invalid_topic")
    return topic


def validate(config: dict[str, Any]) -> dict[str, Any]:
    topic = opt_str(config, "topic", required=True)
    assert topic is not None
    unknown = set(config) - {"topic", "batch_size", "batch_window"}
    if unknown:
        raise TriggerConfigError(f"unknown topic option(s): {', '.join(sorted(unknown))}")
    return {"topic": check_topic(topic), "batch_size": opt_num(config, "batch_size", 10, 1, 1000, integer=True),
            "batch_window": opt_num(config, "batch_window", 0.0, 0, 300)}


class TopicRunner(Runner):
    kind = "topic"

    def __init__(self, trigger: Any, ctx: Any):
        super().__init__(trigger, ctx)
        self.topic = trigger.config.get("topic", "")
        self.batch_size = trigger.config["batch_size"]
        self.window = trigger.config["batch_window"]
        self.wake = asyncio.Event()
        self.source = "queue"
        self.builder: Any = None  # default CloudEvent: TYPE_QUEUE_BATCH

    async def run(self) -> None:
        if getattr(self.ctx.queue, "jobs", None) is not None:
            await self._run_stream()
            return
        db = self.ctx.queue.db
        self.set_health("connected")
        while True:
            if self.window and await db.topic_count(self.trigger.id) < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full(), self.window)
            rows = await db.topic_claim(self.trigger.id, self.batch_size)
            if not rows:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 5)
                continue
            msgs = [Message(id=r["id"], body=bytes(r["body"]), attributes=json.loads(r["attributes"]),
                            sent_at=r["sent_at"], attempt=r["attempt"]) for r in rows]
            await deliver(self, self.source, self.topic, msgs, single=False, builder=self.builder)
            await db.topic_ack([r["seq"] for r in rows])

    async def _run_stream(self) -> None:
        jobs = self.ctx.queue.jobs
        self.set_health("connected")
        while True:
            got = await jobs.topic_fetch(self.trigger.id, self.batch_size, timeout=5.0)
            if not got:
                continue
            held = [raw for _, raw in got]
            beat = asyncio.create_task(keep_held(held.copy, jobs.ack_wait / 3))  # window, retries, slow runs
            try:
                deadline = time.monotonic() + self.window
                while len(got) < self.batch_size and time.monotonic() < deadline:  # a fuller batch
                    more = await jobs.topic_fetch(self.trigger.id, self.batch_size - len(got),
                                                  timeout=max(0.01, deadline - time.monotonic()))
                    got += more
                    held += [raw for _, raw in more]
                msgs = [Message(id=m.id, body=m.body, attributes=m.attributes, sent_at=m.sent_at,
                                attempt=raw.metadata.num_delivered) for m, raw in got]
                try:
                    await deliver(self, self.source, self.topic, msgs, single=False, builder=self.builder)
                except Interrupted:  # the node is stopping: the other nodes take the batch now
                    for raw in held:
                        with contextlib.suppress(Exception):
                            await raw.nak()
                    raise
            finally:
                beat.cancel()
            for raw in held:  # after success or dead-lettering (a lost ack: delivered once more)
                await raw.ack()

    async def _full(self) -> None:
        while await self.ctx.queue.db.topic_count(self.trigger.id) < self.batch_size:
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 1)

    def describe(self) -> dict[str, Any]:
        return {}


async def publish(manager: Any, topic: str, msg_id: str, body: bytes, attributes: dict[str, str],
                  namespace: str | None = None) -> int:
    """Store a copy for every subscribing trigger (of `namespace`'s functions only, when given: a topic name is
    per namespace); returns how many there are (0: the message is dropped)."""
    check_topic(topic)
    subs = [r for r in manager.runners_of("topic") if r.topic == topic and (
        namespace is None or owns(namespace, r.trigger.function))]
    if subs:
        await manager.ctx.queue.topic_publish_many(topic, [r.trigger.id for r in subs],
                                                   [(msg_id, body, attributes, time.time())])
        for r in subs:
            r.wake.set()
    return len(subs)


RUNNER = TopicRunner
