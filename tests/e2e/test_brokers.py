"""Broker triggers against real brokers: NATS (core and JetStream), Redis Streams, MQTT (wildcards) and
RabbitMQ. Faults: unreachable broker at creation (error state, retried, then connected), poison message
(retries, dead-letter queue, the trigger keeps going), broker restart mid-stream (no message lost)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .brokers import mqtt_broker, nats_broker, port_open, rabbitmq_broker, redis_broker
from .conftest import Server, start_server, wait_until

HOST_FS = True  # functions write state files the test reads (conftest.HOST_FS)

CONSUMER = '''
import json, os
def handler(event, context):
    d = event["data"]
    with open(os.path.join(os.environ["STATE"], "log"), "a") as f:
        f.write(json.dumps({"body": d["body"], "source": d["source"], "topic": d["topic"], "type": event["type"],
                            "attributes": d["attributes"]}) + "\\n")
    if "poison" in d["body"]:
        raise ValueError("poison message")
    return "ok"
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn"), env={"POLYFN_TRIGGER_RECONNECT_MAX": "0.5"}, host_fs=True)
    yield s
    s.stop()


def consumer(server: Server, name: str, state: Path) -> None:
    server.deploy(name, {"handler.py": CONSUMER}, env={"STATE": str(state)}, retry_attempts=2, retry_backoff=0.05)


def received(state: Path) -> list[dict[str, Any]]:
    f = state / "log"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def bodies(state: Path) -> set[str]:
    return {e["body"] for e in received(state)}


def add(server: Server, function: str, kind: str, config: dict[str, Any], tid: str) -> dict[str, Any]:
    r = server.api.post(f"/v1/functions/{function}/triggers", json={"kind": kind, "config": config, "id": tid})
    assert r.status_code == 201, r.text
    return r.json()


def health(server: Server, tid: str) -> dict[str, Any]:
    return server.api.get(f"/v1/triggers/{tid}").json()["health"]


def connected(server: Server, tid: str, timeout: float = 15) -> None:
    assert wait_until(lambda: health(server, tid)["state"] == "connected", timeout), health(server, tid)


# -- NATS ---------------------------------------------------------------------------------------------


def nats_publish(url: str, subject: str, payloads: list[str], js: bool = False) -> None:
    import nats

    async def go() -> None:
        nc = await nats.connect(url)
        if js:
            j = nc.jetstream()
            for p in payloads:
                await j.publish(subject, p.encode())
        else:
            for p in payloads:
                await nc.publish(subject, p.encode())
            await nc.flush()
        await nc.close()

    asyncio.run(go())


def test_nats_core_and_unreachable_at_creation(server: Server, tmp_path: Path) -> None:
    consumer(server, "br-nats", tmp_path)
    broker = nats_broker(tmp_path)  # not started yet: the trigger is created against a dead port
    url = f"nats://127.0.0.1:{broker.port}"
    t = add(server, "br-nats", "nats", {"url": url, "subject": "sensors.>"}, "br-nats-core")
    assert t["health"]["state"] in ("starting", "connecting", "error")
    assert wait_until(lambda: health(server, "br-nats-core")["state"] == "error", 10)
    h = health(server, "br-nats-core")
    assert h["message"], h
    listed = server.cli("trigger", "list", "br-nats", check=True).stdout
    assert "error" in listed

    broker.start()
    try:
        connected(server, "br-nats-core")  # retried with backoff until the broker came up
        nats_publish(url, "sensors.room1.temp", ["21.5", "22.0"])
        assert wait_until(lambda: bodies(tmp_path) == {"21.5", "22.0"}, 10), received(tmp_path)
        e = received(tmp_path)[0]
        assert e["type"] == "io.polyfn.broker.message" and e["source"] == "nats"
        assert e["topic"] == "sensors.room1.temp"
    finally:
        broker.stop()


def test_jetstream_poison_and_broker_restart(server: Server, tmp_path: Path) -> None:
    consumer(server, "br-js", tmp_path)
    broker = nats_broker(tmp_path).start()
    url = f"nats://127.0.0.1:{broker.port}"
    try:
        add(server, "br-js", "nats", {"url": url, "subject": "orders.*", "jetstream": True, "stream": "ORDERS"},
            "br-js-orders")
        connected(server, "br-js-orders")
        nats_publish(url, "orders.new", [f"m{i}" for i in range(5)] + ["poison-1"] + ["m5"], js=True)
        assert wait_until(lambda: {f"m{i}" for i in range(6)} <= bodies(tmp_path), 15), received(tmp_path)
        assert wait_until(lambda: server.api.get("/v1/triggers/br-js-orders").json()["dead_lettered"] == 1)
        assert sum(1 for e in received(tmp_path) if e["body"] == "poison-1") == 2  # retried, then DLQ

        broker.restart()  # mid-stream: the trigger reconnects, the stream kept its messages
        nats_publish(url, "orders.new", [f"r{i}" for i in range(5)], js=True)
        assert wait_until(lambda: {f"r{i}" for i in range(5)} <= bodies(tmp_path), 20), received(tmp_path)
        connected(server, "br-js-orders")
        dead = server.api.get("/v1/dlq", params={"function": "br-js"}).json()["dead_letters"]
        assert len(dead) == 1 and dead[0]["trigger"] == "nats"
    finally:
        broker.stop()


# -- Redis Streams ------------------------------------------------------------------------------------


def redis_add(url: str, stream: str, payloads: list[str]) -> None:
    import redis

    r = redis.Redis.from_url(url)
    for p in payloads:
        r.xadd(stream, {"body": p, "kind": "order"})
    r.close()


def test_redis_streams_poison_and_restart(server: Server, tmp_path: Path) -> None:
    consumer(server, "br-redis", tmp_path)
    broker = redis_broker(tmp_path).start()
    url = f"redis://127.0.0.1:{broker.port}/0"
    try:
        add(server, "br-redis", "redis", {"url": url, "stream": "orders", "group": "g1"}, "br-redis-orders")
        connected(server, "br-redis-orders")
        redis_add(url, "orders", ["a", "poison-x", "b"])
        assert wait_until(lambda: {"a", "b", "poison-x"} <= bodies(tmp_path), 15), received(tmp_path)
        assert received(tmp_path)[0]["attributes"] == {"kind": "order"}
        assert wait_until(lambda: server.api.get("/v1/triggers/br-redis-orders").json()["dead_lettered"] == 1)

        import redis

        def pending() -> int:
            r = redis.Redis.from_url(url)
            try:
                return r.xpending("orders", "g1")["pending"]
            finally:
                r.close()

        assert wait_until(lambda: pending() == 0)  # acked after success or DLQ, poison included

        broker.restart()
        redis_add(url, "orders", [f"after{i}" for i in range(5)])
        assert wait_until(lambda: {f"after{i}" for i in range(5)} <= bodies(tmp_path), 20), received(tmp_path)
        connected(server, "br-redis-orders")
    finally:
        broker.stop()


def test_redis_streams_take_over_what_a_gone_consumer_left(server: Server, tmp_path: Path) -> None:
    """Entries another consumer of the group read and never acknowledged (a cluster node that died, or the
    consumer name of an older polyfn) are taken over once idle for `claim_idle`; the trigger's own consumer
    is named per node, so two nodes never share one pending list."""
    import redis

    consumer(server, "br-redis-claim", tmp_path)
    broker = redis_broker(tmp_path).start()
    url = f"redis://127.0.0.1:{broker.port}/0"
    r = redis.Redis.from_url(url)
    try:
        r.xgroup_create("claims", "g", id="0", mkstream=True)
        redis_add(url, "claims", ["left1", "left2"])
        assert len(r.xreadgroup("g", "gone-node", {"claims": ">"})[0][1]) == 2  # read, never acknowledged
        add(server, "br-redis-claim", "redis", {"url": url, "stream": "claims", "group": "g", "claim_idle": 1},
            "br-redis-claim-t")
        connected(server, "br-redis-claim-t")
        assert wait_until(lambda: {"left1", "left2"} <= bodies(tmp_path), 15), received(tmp_path)
        redis_add(url, "claims", ["new"])
        assert wait_until(lambda: "new" in bodies(tmp_path), 10)
        assert wait_until(lambda: r.xpending("claims", "g")["pending"] == 0)
        names = {c["name"].decode() for c in r.xinfo_consumers("claims", "g")}
        mine = names - {"gone-node"}
        assert len(mine) == 1 and next(iter(mine)).startswith("br-redis-claim-t-"), names
        assert sorted(e["body"] for e in received(tmp_path)) == ["left1", "left2", "new"]  # each once
    finally:
        r.close()
        broker.stop()


# -- MQTT ---------------------------------------------------------------------------------------------


def mqtt_publish(port: int, items: list[tuple[str, str]]) -> None:
    import aiomqtt

    async def go() -> None:
        async with aiomqtt.Client("127.0.0.1", port) as c:
            for topic, payload in items:
                await c.publish(topic, payload, qos=1)

    asyncio.run(go())


def test_mqtt_wildcards_and_restart(server: Server, tmp_path: Path) -> None:
    consumer(server, "br-mqtt", tmp_path)
    broker = mqtt_broker(tmp_path).start()
    try:
        add(server, "br-mqtt", "mqtt", {"port": broker.port, "topic": "sensors/+/temp", "qos": 1}, "br-mqtt-temp")
        connected(server, "br-mqtt-temp")
        mqtt_publish(broker.port, [("sensors/a/temp", "20"), ("sensors/b/temp", "30"), ("sensors/a/humidity", "50")])
        assert wait_until(lambda: bodies(tmp_path) == {"20", "30"}, 10), received(tmp_path)
        assert {e["topic"] for e in received(tmp_path)} == {"sensors/a/temp", "sensors/b/temp"}

        broker.restart()
        connected(server, "br-mqtt-temp", 20)
        mqtt_publish(broker.port, [("sensors/c/temp", "40")])
        assert wait_until(lambda: "40" in bodies(tmp_path), 10), received(tmp_path)
        assert "50" not in bodies(tmp_path)
    finally:
        broker.stop()


def test_mqtt_bad_filter(server: Server) -> None:
    server.deploy("br-mqtt-bad", {"handler.py": CONSUMER})
    r = server.api.post("/v1/functions/br-mqtt-bad/triggers", json={"kind": "mqtt", "config": {"topic": "a/#/b"}})
    assert r.status_code == 400 and "'#' only at the end" in r.json()["error"]["message"]


# -- RabbitMQ -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rabbit() -> Iterator[str]:
    """The machine's RabbitMQ when it answers on 5672, else a private node of our own."""
    if port_open(5672):
        yield "amqp://guest:guest@127.0.0.1:5672/"
        return
    b = rabbitmq_broker()
    try:
        b.start()
        yield f"amqp://guest:guest@127.0.0.1:{b.port}/"
    finally:
        b.stop()
        b.remove()


def test_rabbitmq_queue_and_poison(server: Server, tmp_path: Path, rabbit: str) -> None:
    url = rabbit
    import aio_pika

    queue = f"polyfn-test-{uuid.uuid4().hex}"  # its own: concurrent runs share the machine's RabbitMQ
    consumer(server, "br-amqp", tmp_path)
    add(server, "br-amqp", "amqp", {"url": url, "queue": queue}, "br-amqp-q")
    connected(server, "br-amqp-q")

    async def go() -> None:
        conn = await aio_pika.connect(url)
        ch = await conn.channel()
        for p in ["x1", "poison-q", "x2"]:
            await ch.default_exchange.publish(aio_pika.Message(p.encode(), message_id=p), routing_key=queue)
        await conn.close()

    asyncio.run(go())
    try:
        assert wait_until(lambda: {"x1", "x2", "poison-q"} <= bodies(tmp_path), 15), received(tmp_path)
        assert wait_until(lambda: server.api.get("/v1/triggers/br-amqp-q").json()["dead_lettered"] == 1)
    finally:
        server.api.delete("/v1/triggers/br-amqp-q")

        async def cleanup() -> None:
            conn = await aio_pika.connect(url)
            ch = await conn.channel()
            await ch.queue_delete(queue)
            await conn.close()

        asyncio.run(cleanup())


# Holds every message after the third until the test opens the gate: the broker restarts while the backlog
# is certainly still being consumed (a count and a file, not a guess about how fast the consumer is).
HELD_CONSUMER = CONSUMER.replace('    d = event["data"]\n', '''    d = event["data"]
    import time
    log, gate = os.path.join(os.environ["STATE"], "log"), os.path.join(os.environ["STATE"], "gate")
    while (os.path.exists(log) and len({json.loads(ln)["body"] for ln in open(log)}) >= 3
           and not os.path.exists(gate)):
        time.sleep(0.02)
''')


def open_gate(state: Path) -> None:
    (state / "gate").touch()


def test_broker_restart_mid_stream_loses_nothing(server: Server, tmp_path: Path) -> None:
    """A backlog is being consumed when each broker restarts: every message still arrives (at least once)."""
    js_state, redis_state = tmp_path / "js", tmp_path / "redis"
    js_state.mkdir()
    redis_state.mkdir()
    server.deploy("br-mid-js", {"handler.py": HELD_CONSUMER}, env={"STATE": str(js_state)})
    server.deploy("br-mid-redis", {"handler.py": HELD_CONSUMER}, env={"STATE": str(redis_state)})
    for d in ("nats-data", "redis-data"):
        (tmp_path / d).mkdir()
    nb = nats_broker(tmp_path / "nats-data").start()
    rb = redis_broker(tmp_path / "redis-data").start()
    nurl, rurl = f"nats://127.0.0.1:{nb.port}", f"redis://127.0.0.1:{rb.port}/0"
    try:
        add(server, "br-mid-js", "nats", {"url": nurl, "subject": "mid.*", "jetstream": True, "stream": "MID",
                                          "ack_wait": 2}, "br-mid-js")
        add(server, "br-mid-redis", "redis", {"url": rurl, "stream": "mid"}, "br-mid-redis")
        connected(server, "br-mid-js")
        connected(server, "br-mid-redis")
        want = {f"n{i}" for i in range(40)}
        nats_publish(nurl, "mid.x", sorted(want), js=True)
        redis_add(rurl, "mid", sorted(want))
        assert wait_until(lambda: len(bodies(js_state)) >= 3 and len(bodies(redis_state)) >= 3, 15)
        nb.restart()
        rb.restart()
        assert len(bodies(js_state)) < 40 and len(bodies(redis_state)) < 40  # really mid-stream: held at the gate
        open_gate(js_state)
        open_gate(redis_state)
        assert wait_until(lambda: bodies(js_state) == want, 40), sorted(want - bodies(js_state))
        assert wait_until(lambda: bodies(redis_state) == want, 40), sorted(want - bodies(redis_state))
    finally:
        nb.stop()
        rb.stop()


def test_mqtt_restart_mid_stream_loses_nothing(server: Server, tmp_path: Path) -> None:
    """QoS 1 with a persistent session: what the broker still held for the trigger (queued or in flight, not
    acknowledged because the function had not finished) is delivered after the broker restarts."""
    state = tmp_path / "state"
    state.mkdir()
    server.deploy("br-mid-mqtt", {"handler.py": HELD_CONSUMER}, env={"STATE": str(state)})
    (tmp_path / "mq").mkdir()
    broker = mqtt_broker(tmp_path / "mq").start()
    try:
        add(server, "br-mid-mqtt", "mqtt", {"port": broker.port, "topic": "plant/#", "qos": 1}, "br-mid-mqtt")
        connected(server, "br-mid-mqtt")
        want = {f"m{i}" for i in range(30)}
        mqtt_publish(broker.port, [("plant/line1", b) for b in sorted(want)])
        assert wait_until(lambda: len(bodies(state)) >= 3, 15)
        broker.restart()
        assert len(bodies(state)) < 30  # really mid-stream: held at the gate
        open_gate(state)
        assert wait_until(lambda: bodies(state) == want, 40), sorted(want - bodies(state))
    finally:
        broker.stop()
