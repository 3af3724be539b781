"""MQTT 3.1.1 / 5 triggers (aiomqtt), with topic wildcards (`+`, `#`) for IoT.

Options: `host` (127.0.0.1), `port` (1883), `topic` (filter, wildcards allowed), `qos` (0-2, default 1),
`client_id` (default `polyfn-<trigger id>`), `username`, `password`, `protocol` (`3.1.1` default, or `5`).

With QoS ≥ 1 the trigger uses a persistent session (`clean_session=False`) and acknowledges each message
only after the function succeeded or the message went to the dead-letter queue (manual acks), so the broker
redelivers what was in flight when the connection dropped and keeps what arrives while it is away.
QoS 0 is at-most-once, as MQTT defines it.
"""

from __future__ import annotations

import time
from typing import Any

import aiomqtt

from polyfn.triggers import msgids
from polyfn.triggers.base import BrokerRunner, TriggerConfigError, only, opt_num, opt_str
from polyfn.triggers.delivery import Message, deliver


def validate(config: dict[str, Any]) -> dict[str, Any]:
    only(config, "mqtt", {"host", "port", "topic", "qos", "client_id", "username", "password", "protocol"})
    proto = str(config.get("protocol", "3.1.1"))
    if proto not in ("3.1.1", "5"):
        raise TriggerConfigError(f"option protocol={proto!r}: use 3.1.1 or 5")
    topic = opt_str(config, "topic", required=True)
    assert topic is not None
    if "#" in topic[:-1] or any(("+" in part and part != "+") for part in topic.split("/")):
        raise TriggerConfigError(f"topic filter {topic!r}: '#' only at the end, '+' only as a whole level")
    return {"host": opt_str(config, "host", "127.0.0.1"), "port": opt_num(config, "port", 1883, 1, 65535, integer=True),
            "topic": topic, "qos": opt_num(config, "qos", 1, 0, 2, integer=True),
            "client_id": opt_str(config, "client_id"), "username": opt_str(config, "username"),
            "password": opt_str(config, "password"), "protocol": proto}


class MqttRunner(BrokerRunner):
    kind = "mqtt"

    def __init__(self, trigger: Any, ctx: Any):
        super().__init__(trigger, ctx)
        self.cfg = trigger.config

    def single_consumer(self) -> bool:
        return True  # every client subscribed to a topic gets each message (and nodes would share a client id)

    async def consume(self) -> None:
        c = self.cfg
        persistent = c["qos"] > 0
        v5 = c["protocol"] == "5"
        client = aiomqtt.Client(
            c["host"], c["port"], identifier=c["client_id"] or f"polyfn-{self.trigger.id}",
            username=c["username"], password=c["password"], timeout=5,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else not persistent,
            clean_start=False if (v5 and persistent) else 3)
        if persistent:
            client._client.manual_ack_set(True)  # ack after delivery, not on receipt (paho >= 2)
        async with client:
            await client.subscribe(c["topic"], qos=c["qos"])
            self.connected()
            async for msg in client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload or "").encode()
                m = Message(id=msgids.mqtt_id(str(msg.topic), payload, msg.mid, msg.qos), body=payload,
                            attributes={"topic": str(msg.topic), "qos": str(msg.qos), "retain": str(msg.retain).lower()},
                            sent_at=time.time())
                await deliver(self, "mqtt", str(msg.topic), [m], single=True)
                if persistent and msg.qos > 0:
                    client._client.ack(msg.mid, msg.qos)


RUNNER = MqttRunner
