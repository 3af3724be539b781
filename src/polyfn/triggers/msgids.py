"""Message ids for broker deliveries: stable across redeliveries, unique across messages (pure).

A delivered event's id is what a function de-duplicates on (`event["id"]`, SQS `messageId`), so a message the
broker delivers twice must keep its id, and two messages must not share one. Brokers differ:

* MQTT has no message id. Its packet id (`mid`) is recycled (1-65535, per session) and is 0 at QoS 0, so it
  is no id by itself (issue #18: ids collided). QoS 0 is at most once (never redelivered): a random id. At
  QoS 1/2 a redelivery carries the same packet id, topic and payload, so the id is a digest of the three:
  stable across redeliveries; two messages share it only if the broker reused the packet id for an
  identical payload on the same topic.
* AMQP: the publisher's `message_id` when set (the only id that survives a republish). Otherwise the delivery
  tag is no id (it restarts at 1 on every channel, and a redelivered message gets a new one): a digest of the
  queue, the body, the headers and the properties that travel with the message.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any


def digest(*parts: Any) -> str:
    """A 32-hex-digit digest of `parts`, each length-prefixed so that no two part lists collide."""
    h = hashlib.sha256()
    for p in parts:
        b = p if isinstance(p, bytes) else str(p).encode()
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.hexdigest()[:32]


def mqtt_id(topic: str, payload: bytes, mid: int, qos: int) -> str:
    if qos == 0 or not mid:
        return uuid.uuid4().hex
    return "mqtt-" + digest(topic, payload, mid)


def amqp_id(queue: str, message_id: str | None, body: bytes, headers: dict[str, Any] | None,
            properties: dict[str, Any]) -> str:
    if message_id:
        return message_id
    hdrs = sorted((str(k), str(v)) for k, v in (headers or {}).items())
    props = sorted((k, str(v)) for k, v in properties.items() if v is not None)
    return "amqp-" + digest(queue, body, repr(hdrs), repr(props))
