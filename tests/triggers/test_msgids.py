"""Broker message ids: the same for a redelivery, different for different messages (issue #18, item 9)."""

from __future__ import annotations

from polyfn.triggers.msgids import amqp_id, digest, mqtt_id


def test_mqtt_qos1_redelivery_keeps_its_id_and_a_recycled_packet_id_does_not_collide() -> None:
    first = mqtt_id("sensors/a", b'{"t": 21}', 7, 1)
    assert mqtt_id("sensors/a", b'{"t": 21}', 7, 1) == first  # the broker redelivers: same mid, topic, payload
    assert mqtt_id("sensors/a", b'{"t": 22}', 7, 1) != first  # packet id 7 reused for another message
    assert mqtt_id("sensors/b", b'{"t": 21}', 7, 1) != first
    assert mqtt_id("sensors/a", b'{"t": 21}', 8, 1) != first


def test_mqtt_qos0_ids_are_unique() -> None:
    assert len({mqtt_id("t", b"same", 0, 0) for _ in range(100)}) == 100


def test_amqp_prefers_the_publishers_id_else_a_digest_of_the_message() -> None:
    assert amqp_id("orders", "order-17", b"x", {}, {}) == "order-17"
    a = amqp_id("orders", None, b'{"id": 1}', {"h": 1}, {"correlation_id": "c1", "timestamp": None})
    assert a == amqp_id("orders", None, b'{"id": 1}', {"h": 1}, {"timestamp": None, "correlation_id": "c1"})
    assert a != amqp_id("orders", None, b'{"id": 2}', {"h": 1}, {"correlation_id": "c1"})
    assert a != amqp_id("orders", None, b'{"id": 1}', {"h": 2}, {"correlation_id": "c1"})
    assert a != amqp_id("other", None, b'{"id": 1}', {"h": 1}, {"correlation_id": "c1"})


def test_digest_parts_are_length_prefixed() -> None:
    assert digest("ab", "c") != digest("a", "bc")
