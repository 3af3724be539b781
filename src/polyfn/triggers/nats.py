"""NATS and NATS JetStream triggers (nats-py).

Options: `url` (default nats://127.0.0.1:4222), `subject` (wildcards allowed), `queue` (core NATS queue group),
`jetstream` (bool), `stream` (JetStream stream; created for `subject` when missing), `durable` (consumer name,
default `polyfn-<trigger id>`), `batch_size` (1: one `TYPE_BROKER_MESSAGE` per invocation; more: a
`TYPE_QUEUE_BATCH`).

Core NATS is at-most-once by nature (no acknowledgements: a message sent while the trigger is disconnected
is lost). JetStream is at-least-once: a durable pull consumer, each message acknowledged only after the
function succeeded or the message went to the dead-letter queue; un-acknowledged messages are redelivered
after `ack_wait` (option, default 60 s, extended while the function runs) — also a message that was in
flight when the connection dropped, so the function may see it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from polyfn.triggers.base import BrokerRunner, TriggerConfigError, only, opt_num, opt_str, opt_url
from polyfn.triggers.delivery import Message, deliver

ACK_WAIT = 60.0


def validate(config: dict[str, Any]) -> dict[str, Any]:
    only(config, "nats", {"url", "subject", "queue", "jetstream", "stream", "durable", "batch_size", "ack_wait"})
    js = config.get("jetstream", False)
    if not isinstance(js, bool):
        raise TriggerConfigError("option jetstream must be true or false")
    return {"url": opt_url(config, "url", "nats://127.0.0.1:4222", ("nats", "tls", "ws", "wss"),
                                  "nats://127.0.0.1:4222"), "subject": opt_str(config, "subject", required=True),
            "queue": opt_str(config, "queue"), "jetstream": js, "stream": opt_str(config, "stream"),
            "durable": opt_str(config, "durable"), "batch_size": opt_num(config, "batch_size", 1, 1, 1000, integer=True),
            "ack_wait": opt_num(config, "ack_wait", ACK_WAIT, 1, 3600)}


class NatsRunner(BrokerRunner):
    kind = "nats"

    def __init__(self, trigger: Any, ctx: Any):
        super().__init__(trigger, ctx)
        self.cfg = trigger.config
        self.nc: Any = None

    async def close(self) -> None:
        if self.nc is not None:
            nc, self.nc = self.nc, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2)

    def single_consumer(self) -> bool:
        return not self.cfg["jetstream"] and not self.cfg["queue"]  # plain core subscription: every node gets all

    async def consume(self) -> None:
        c = self.cfg
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def on_disconnect() -> None:
            if not lost.done():
                lost.set_exception(ConnectionError("disconnected from NATS"))

        async def on_error(e: Exception) -> None:
            pass

        # Reconnection is ours (BrokerRunner.run, with health reporting), not the client's.
        self.nc = await asyncio.wait_for(nats.connect(
            c["url"], allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=1, reconnect_time_wait=0.1,
            disconnected_cb=on_disconnect, closed_cb=on_disconnect, error_cb=on_error,
            name=f"polyfn trigger {self.trigger.id}"), 10)
        if c["jetstream"]:
            await self._jetstream(lost)
        else:
            await self._core(lost)

    async def _core(self, lost: asyncio.Future[None]) -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
        await self.nc.subscribe(self.cfg["subject"], queue=self.cfg["queue"] or "", cb=queue.put)
        self.connected()
        while True:
            get = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({get, lost}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                lost.result()
            msg = get.result()
            await deliver(self, "nats", msg.subject, [_message(msg, None)], single=self.cfg["batch_size"] == 1)

    async def _jetstream(self, lost: asyncio.Future[None]) -> None:
        c = self.cfg
        js = self.nc.jetstream()
        stream = c["stream"]
        if stream:
            try:
                await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                await js.add_stream(StreamConfig(name=stream, subjects=[c["subject"]]))
        durable = c["durable"] or f"polyfn-{self.trigger.id}"
        psub = await js.pull_subscribe(c["subject"], durable=durable, stream=stream,
                                       config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=c.get("ack_wait", ACK_WAIT),
                                                             max_ack_pending=max(1000, c["batch_size"])))
        self.connected()
        while True:
            if lost.done():
                lost.result()
            try:
                msgs = await psub.fetch(c["batch_size"], timeout=1)
            except nats.errors.TimeoutError:
                continue
            items = [_message(m, m.metadata) for m in msgs]
            keep = asyncio.create_task(_keep_alive(msgs, c.get("ack_wait", ACK_WAIT)))
            try:
                await deliver(self, "nats", c["subject"], items, single=c["batch_size"] == 1)
            finally:
                keep.cancel()
            for m in msgs:
                await m.ack()


async def _keep_alive(msgs: list[Any], ack_wait: float) -> None:
    """Tell JetStream the messages are still being worked on (long functions, retries with backoff)."""
    while True:
        await asyncio.sleep(ack_wait / 3)
        for m in msgs:
            with contextlib.suppress(Exception):
                await m.in_progress()


def _message(msg: Any, meta: Any) -> Message:
    attrs = {k: v for k, v in (msg.headers or {}).items() if isinstance(v, str)}
    attrs["subject"] = msg.subject
    if meta is not None:
        mid = f"{meta.stream}:{meta.sequence.stream}"
        return Message(id=mid, body=msg.data, attributes=attrs, sent_at=meta.timestamp.timestamp(),
                       attempt=meta.num_delivered)
    import time
    import uuid

    return Message(id=(msg.headers or {}).get("Nats-Msg-Id") or uuid.uuid4().hex, body=msg.data, attributes=attrs,
                   sent_at=time.time())


RUNNER = NatsRunner
