"""Messages per second from each broker through a trigger to a function.

For each broker the benchmark starts its own private broker process on a free port (nats-server with
JetStream, redis-server, mosquitto; RabbitMQ: the machine's on 5672 when it answers, else skipped), adds a
trigger for a trivial function, publishes N messages as fast as the client can, and measures the time
until the trigger reports all N delivered (`delivered` in `GET /v1/triggers/{id}`). The embedded topic
(`POST /v1/topics/{topic}/messages`, batches of 100) runs in the same table as the in-process reference.

    .venv/bin/python bench/broker.py            # 2,000 messages per broker
    .venv/bin/python bench/broker.py -n 500
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _common import PolyfnServer, fmt, free_port, print_header, table

SINK = "def handler(event, context):\n    return None\n"


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start(argv: list[str], port: int, cwd: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd,
                            start_new_session=True)
    deadline = time.monotonic() + 20
    while not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{argv[0]} did not start")
        time.sleep(0.05)
    return proc


def measure(api: httpx.Client, tid: str, n: int, publish: Callable[[], None], timeout: float = 300) -> float:
    deadline = time.monotonic() + 30
    while api.get(f"/v1/triggers/{tid}").json()["health"]["state"] != "connected":
        if time.monotonic() > deadline:
            raise RuntimeError(f"trigger {tid} did not connect: {api.get(f'/v1/triggers/{tid}').json()['health']}")
        time.sleep(0.1)
    t0 = time.perf_counter()
    publish()
    deadline = time.monotonic() + timeout
    while api.get(f"/v1/triggers/{tid}").json()["delivered"] < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{tid}: only {api.get(f'/v1/triggers/{tid}').json()['delivered']} of {n} delivered")
        time.sleep(0.02)
    return n / (time.perf_counter() - t0)


def add(api: httpx.Client, kind: str, config: dict[str, Any], tid: str) -> None:
    r = api.post("/v1/functions/sink/triggers", json={"kind": kind, "config": config, "id": tid})
    r.raise_for_status()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=2000, help="messages per broker (default 2000)")
    args = ap.parse_args()
    n = args.n
    print_header("polyfn broker triggers: messages/s to a function")
    rows: list[list[str]] = []
    procs: list[subprocess.Popen[bytes]] = []
    with PolyfnServer(log_level="WARNING") as srv, tempfile.TemporaryDirectory(prefix="polyfn-bench-brokers-") as d:
        work = Path(d)
        srv.deploy("sink", {"handler.py": SINK}, min_instances=1)
        api = httpx.Client(base_url=srv.url(""), headers={"authorization": f"Bearer {srv.key}"}, timeout=60)
        try:
            add(api, "topic", {"topic": "bench", "batch_size": 100}, "b-topic")

            def pub_topic() -> None:
                with httpx.Client(base_url=srv.url(""), headers={"authorization": f"Bearer {srv.key}"}) as c:
                    for i in range(n):
                        c.post("/v1/topics/bench/messages", content=b'{"i": %d}' % i)

            rows.append(["embedded topic (batches of 100)", fmt(measure(api, "b-topic", n, pub_topic), 0)])

            if shutil.which("nats-server"):
                port = free_port()
                (work / "js").mkdir()
                procs.append(start(["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd",
                                    str(work / "js")], port, work))
                url = f"nats://127.0.0.1:{port}"
                add(api, "nats", {"url": url, "subject": "bench.core"}, "b-nats")
                add(api, "nats", {"url": url, "subject": "bench.js", "jetstream": True, "stream": "BENCH"}, "b-js")

                def pub_nats(subject: str, js: bool) -> Callable[[], None]:
                    def go() -> None:
                        import nats

                        async def run() -> None:
                            nc = await nats.connect(url)
                            if js:
                                j = nc.jetstream()
                                await asyncio.gather(*(j.publish(subject, b"x") for _ in range(n)))
                            else:
                                for _ in range(n):
                                    await nc.publish(subject, b"x")
                                await nc.flush()
                            await nc.close()

                        asyncio.run(run())
                    return go

                rows.append(["NATS core", fmt(measure(api, "b-nats", n, pub_nats("bench.core", False)), 0)])
                rows.append(["NATS JetStream", fmt(measure(api, "b-js", n, pub_nats("bench.js", True)), 0)])
            if shutil.which("redis-server"):
                port = free_port()
                procs.append(start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
                                   port, work))
                rurl = f"redis://127.0.0.1:{port}/0"
                add(api, "redis", {"url": rurl, "stream": "bench"}, "b-redis")

                def pub_redis() -> None:
                    import redis

                    r = redis.Redis.from_url(rurl)
                    pipe = r.pipeline()
                    for _ in range(n):
                        pipe.xadd("bench", {"body": "x"})
                    pipe.execute()
                    r.close()

                rows.append(["Redis Streams", fmt(measure(api, "b-redis", n, pub_redis), 0)])
            mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            if Path(mosq).exists():
                port = free_port()
                conf = work / "mosquitto.conf"
                conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"
                                "max_queued_messages 100000\n")
                procs.append(start([mosq, "-c", str(conf)], port, work))
                add(api, "mqtt", {"port": port, "topic": "bench/#", "qos": 1}, "b-mqtt")

                def pub_mqtt() -> None:
                    import aiomqtt

                    async def run() -> None:
                        async with aiomqtt.Client("127.0.0.1", port) as c:
                            for _ in range(n):
                                await c.publish("bench/x", b"x", qos=1)

                    asyncio.run(run())

                rows.append(["MQTT QoS 1", fmt(measure(api, "b-mqtt", n, pub_mqtt), 0)])
            if port_open(5672):
                aurl = "amqp://guest:guest@127.0.0.1:5672/"
                add(api, "amqp", {"url": aurl, "queue": "polyfn-bench"}, "b-amqp")

                def pub_amqp() -> None:
                    import aio_pika

                    async def run() -> None:
                        conn = await aio_pika.connect(aurl)
                        ch = await conn.channel()
                        for _ in range(n):
                            await ch.default_exchange.publish(aio_pika.Message(b"x"), routing_key="polyfn-bench")
                        await conn.close()

                    asyncio.run(run())

                try:
                    rows.append(["RabbitMQ", fmt(measure(api, "b-amqp", n, pub_amqp), 0)])
                finally:
                    api.delete("/v1/triggers/b-amqp")

                    async def drop() -> None:  # leave the shared broker as we found it
                        import aio_pika

                        conn = await aio_pika.connect(aurl)
                        await (await conn.channel()).queue_delete("polyfn-bench")
                        await conn.close()

                    asyncio.run(drop())
            else:
                rows.append(["RabbitMQ", "skipped (no broker on 5672)"])
        finally:
            api.close()
            for p in procs:
                p.terminate()
                p.wait(10)
    print(table(["source", "messages/s (publish → all delivered)"], rows))
    print(f"\n{n} messages each; one message per invocation except the embedded topic")


if __name__ == "__main__":
    main()
