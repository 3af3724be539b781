"""RabbitMQ (AMQP 0-9-1) triggers (aio-pika).

Options: `url` (default amqp://guest:guest@127.0.0.1:5672/), `queue` (declared durable if missing),
`exchange` and `routing_key` (optional: bind the queue to a topic exchange, default key `#`), `prefetch`
(default 10).

At-least-once: messages are acknowledged only after the function succeeded or the message went to the
dead-letter queue; anything unacknowledged when the connection drops is redelivered by RabbitMQ.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aio_pika

from polyfn.triggers import msgids
from polyfn.triggers.base import BrokerRunner, only, opt_num, opt_str, opt_url
from polyfn.triggers.delivery import Message, deliver


def validate(config: dict[str, Any]) -> dict[str, Any]:
    only(config, "amqp", {"url", "queue", "exchange", "routing_key", "prefetch"})
    return {"url": opt_url(config, "url", "amqp://guest:guest@127.0.0.1:5672/", ("amqp", "amqps"),
                                  "amqp://guest:guest@127.0.0.1:5672/"),
            "queue": opt_str(config, "queue", required=True), "exchange": opt_str(config, "exchange"),
            "routing_key": opt_str(config, "routing_key", "#"),
            "prefetch": opt_num(config, "prefetch", 10, 1, 10000, integer=True)}


class AmqpRunner(BrokerRunner):
    kind = "amqp"

    def __init__(self, trigger: Any, ctx: Any):
        super().__init__(trigger, ctx)
        self.cfg = trigger.config
        self.conn: Any = None

    async def close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:
                pass

    async def consume(self) -> None:
        c = self.cfg
        self.conn = await aio_pika.connect(c["url"], timeout=3)
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.conn.close_callbacks.add(
            lambda *_: lost.done() or lost.set_exception(ConnectionError("the AMQP connection closed")))
        channel = await self.conn.channel()
        await channel.set_qos(prefetch_count=c["prefetch"])
        queue = await channel.declare_queue(c["queue"], durable=True)
        if c["exchange"]:
            ex = await channel.declare_exchange(c["exchange"], aio_pika.ExchangeType.TOPIC, durable=True)
            await queue.bind(ex, routing_key=c["routing_key"])
        self.connected()
        async with queue.iterator() as it:
            while True:
                nxt = asyncio.ensure_future(it.__anext__())
                done, _ = await asyncio.wait({nxt, lost}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    lost.result()
                msg = nxt.result()
                attrs = {str(k): str(v) for k, v in (msg.headers or {}).items()}
                if msg.routing_key:
                    attrs["routing_key"] = msg.routing_key
                if msg.content_type:
                    attrs["content_type"] = msg.content_type
                # no timestamp from the publisher: when it reached us (never the epoch)
                sent = msg.timestamp.timestamp() if msg.timestamp else time.time()
                mid = msgids.amqp_id(c["queue"], msg.message_id, msg.body, msg.headers, {
                    "correlation_id": msg.correlation_id, "timestamp": msg.timestamp, "type": msg.type,
                    "app_id": msg.app_id, "user_id": msg.user_id, "reply_to": msg.reply_to,
                    "routing_key": msg.routing_key, "exchange": msg.exchange})
                m = Message(id=mid, body=msg.body, attributes=attrs, sent_at=sent,
                            attempt=2 if msg.redelivered else 1)
                await deliver(self, "amqp", c["queue"], [m], single=True)
                await msg.ack()


RUNNER = AmqpRunner
