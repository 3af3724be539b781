"""WebSocket APIs (issue #22): server memory per idle connection, and post_to_connection fan-out latency. Prints met /
NOT met per target.

    .venv/bin/python bench/ws_fanout.py              # 10,000 idle connections, 1,000 posts/s for 10 s
    .venv/bin/python bench/ws_fanout.py --quick      # 2,000 idle connections, 1,000 posts/s for 3 s

Targets:
- 10,000 idle connections on one node: <= 20 KB of server memory each. The server process's RSS (VmRSS; the
  instances are other processes) before and after a client process opened the connections with a raw handshake
  (the function's routes leave out $connect, so no invocation runs: what is measured is the connection), after the
  server settled; per connection = growth / connections.
- 1,000 messages/s pushed with post_to_connection, fanned out over 1,000 other connections: p99 <= 20 ms from the
  moment a signed POST is written to the node to the moment the receiving client has the message. The requests
  are signed beforehand as boto3 signs them (botocore's SigV4Auth, service execute-api; a signature holds 15
  minutes) and written raw, pipelined over 8 keep-alive connections, a batch every 10 ms (boto3's own client is
  synchronous and costs ~1 ms of client CPU a call: the poster would be what is measured); the receivers run in
  another process (the `websockets` client) and stamp each message's arrival with CLOCK_MONOTONIC, one clock
  for every process. The 10,000 idle connections stay open meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import PolyfnServer, cpu_seconds, machine_busy, percentile, print_header, wait_idle  # noqa: E402

# this file's name is the `websockets` package's: its folder must not shadow the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

FUNCTION = '''def handler(event, context):
    ctx = event["requestContext"]
    if ctx["routeKey"] == "whoami":
        return {"statusCode": 200, "body": ctx["connectionId"]}
    return {"statusCode": 200}
'''


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def idle_clients(port: int, n: int, ready: mp.synchronize.Event, done: mp.synchronize.Event) -> None:
    """Open `n` connections with a raw handshake and hold them until `done`."""
    _raise_nofile()

    async def one(sem: asyncio.Semaphore) -> asyncio.StreamWriter | None:
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET /ws/wsbench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                writer.close()
                return None
            return writer

    async def main() -> None:
        sem = asyncio.Semaphore(256)
        writers = await asyncio.gather(*[one(sem) for _ in range(n)], return_exceptions=True)
        ok = [w for w in writers if isinstance(w, asyncio.StreamWriter)]
        print(f"  idle client: {len(ok)} of {n} connections open", flush=True)
        ready.set()
        while not done.is_set():
            await asyncio.sleep(0.2)
        for w in ok:
            w.close()

    asyncio.run(main())


def receivers(port: int, n: int, ids: mp.Queue, results: mp.Queue, done: mp.synchronize.Event) -> None:
    """`n` connections that learn their ids (route whoami) and stamp every message they get with their
    CLOCK_MONOTONIC (one clock for every process of the machine): (sequence number, arrival ns) pairs."""
    _raise_nofile()
    import websockets

    async def one(sem: asyncio.Semaphore, got: list[tuple[int, int]]) -> None:
        async with sem:
            ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/wsbench", ping_interval=None)
            while True:  # (an invocation refused on a loaded machine answers API Gateway's error frame: again)
                await ws.send(json.dumps({"action": "whoami"}))
                answer = await ws.recv()
                if re.fullmatch(r"[A-Za-z0-9_-]{15}=", answer):
                    break
                await asyncio.sleep(0.5)
            ids.put(answer)
        async for msg in ws:
            got.append((int(msg), time.monotonic_ns()))

    async def main() -> None:
        got: list[tuple[int, int]] = []
        sem = asyncio.Semaphore(64)
        tasks = [asyncio.create_task(one(sem, got)) for _ in range(n)]
        while not done.is_set():
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        for t in tasks:
            t.cancel()
        results.put(got)

    asyncio.run(main())


def signed_posts(port: int, key: str, ids: list[str], count: int) -> list[bytes]:
    """`count` PostToConnection requests, round-robin over `ids`, each signed as boto3 signs it (botocore's
    SigV4Auth, service execute-api; a signature holds 15 minutes) with its sequence number as the payload: raw
    HTTP/1.1 bytes, made before the clock starts (so the poster's own CPU is not what is measured)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signer = SigV4Auth(Credentials("polyfn-admin", key), "execute-api", "us-east-1")
    out = []
    for i in range(count):
        path = f"/ws/wsbench/@connections/{ids[i % len(ids)]}"
        body = str(i).encode()
        req = AWSRequest("POST", f"http://127.0.0.1:{port}{path}", data=body)
        signer.add_auth(req)
        head = "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
        out.append(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
                   .encode() + body)
    return out


async def post_loop(port: int, requests: list[bytes], rate: int, sent_at: list[int], expect: bytes = b"HTTP/1.1 200") -> int:
    """Send `requests` at `rate` a second (a batch every 10 ms) over 8 keep-alive connections (pipelined), noting
    each one's CLOCK_MONOTONIC when it is written; the number of answers that were not `expect`."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(8)]
    failed = 0

    async def read_answers(reader: asyncio.StreamReader, n: int) -> None:
        nonlocal failed
        for _ in range(n):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            body = await reader.readexactly(length)
            if not head.startswith(expect):
                failed += 1
                if failed <= 3:
                    print(f"  a post failed: {head.splitlines()[0].decode()} {body[:200]!r}", flush=True)

    readers = [asyncio.create_task(read_answers(r, len(requests[i::8]))) for i, (r, _) in enumerate(conns)]
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    start = time.monotonic()
    for first in range(0, len(requests), per_tick):
        for i in range(first, min(first + per_tick, len(requests))):
            sent_at[i] = time.monotonic_ns()
            conns[i % 8][1].write(requests[i])
        await asyncio.sleep(max(0.0, start + (first // per_tick + 1) * tick - time.monotonic()))
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    for _, w in conns:
        w.close()
    return failed


def http_floor(srv: PolyfnServer, count: int, rate: int) -> str:
    """Server CPU a request for requests that cost the management API nothing (what any HTTP request to the node
    costs: parsing, the ASGI cycle, the answer's write), sent as the posts are: what a post costs beyond it is
    the SigV4 check, the routing and the push."""
    assert srv.proc is not None
    requests = [b"PUT /ws/wsbench/@connections/AAAAAAAAAAAAAAA= HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1"] * count
    user0, sys0 = cpu_split(srv.proc.pid)
    asyncio.run(post_loop(srv.port, requests, rate, [0] * count, expect=b"HTTP/1.1 404"))
    user1, sys1 = cpu_split(srv.proc.pid)
    user, system = (user1 - user0) / count * 1e6, (sys1 - sys0) / count * 1e6
    return f"{user + system:.0f} µs a request ({user:.0f} user + {system:.0f} system)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--idle", type=int, default=10_000)
    ap.add_argument("--receivers", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    if args.quick:
        args.idle, args.seconds = 2000, 3.0
    print_header("WebSocket APIs: idle connections and post_to_connection fan-out")
    print(f"  machine busy before: {machine_busy():.0%} of all CPUs (other users' work skews the figures)")
    _raise_nofile()
    env = {"POLYFN_HTTP_MAX_CONNECTIONS": str(args.idle + args.receivers + 1000)}
    ok_all = True
    with PolyfnServer(log_level="WARNING", env=env) as srv:
        assert srv.proc is not None
        srv.deploy("wsbench", {"handler.py": FUNCTION}, flavor="aws", handler="handler.handler",
                   ws_routes=["$default", "whoami"], ws_responses=["whoami"])
        ctx = mp.get_context("spawn")
        # a few connections first, so what is measured is connections (not the first one's imports and pools)
        warm_ready, warm_done = ctx.Event(), ctx.Event()
        warm = ctx.Process(target=idle_clients, args=(srv.port, 50, warm_ready, warm_done))
        warm.start()
        warm_ready.wait(60)
        warm_done.set()
        warm.join(30)
        time.sleep(1.5)
        wait_idle(srv.proc.pid)
        before = rss_kb(srv.proc.pid)
        ready, done = ctx.Event(), ctx.Event()
        idle = ctx.Process(target=idle_clients, args=(srv.port, args.idle, ready, done))
        t0 = time.monotonic()
        idle.start()
        if not ready.wait(300):
            print("  the idle client did not open its connections in time")
            return 1
        opened = time.monotonic() - t0
        time.sleep(2.0)
        wait_idle(srv.proc.pid)
        after = rss_kb(srv.proc.pid)
        per = (after - before) * 1024 / args.idle
        met = per <= 20 * 1024
        ok_all &= met
        print(f"  {args.idle} idle connections opened in {opened:.1f} s; server RSS {before / 1024:.1f} MB -> "
              f"{after / 1024:.1f} MB: {per / 1024:.1f} KB a connection (target <= 20 KB): "
              f"{'met' if met else 'NOT met'}")

        ids_q, results_q, recv_done = ctx.Queue(), ctx.Queue(), ctx.Event()
        recv = ctx.Process(target=receivers, args=(srv.port, args.receivers, ids_q, results_q, recv_done))
        recv.start()
        ids = [ids_q.get(timeout=120) for _ in range(args.receivers)]
        requests = signed_posts(srv.port, srv.key, ids, int(args.rate * args.seconds))
        sent_at = [0] * len(requests)
        busy = machine_busy(0.3)
        cpu0, (user0, sys0) = cpu_seconds(srv.proc.pid), cpu_split(srv.proc.pid)
        failed = asyncio.run(post_loop(srv.port, requests, args.rate, sent_at))
        cpu_per_post = (cpu_seconds(srv.proc.pid) - cpu0) / len(requests) * 1e6
        user1, sys1 = cpu_split(srv.proc.pid)
        split = f"{(user1 - user0) / len(requests) * 1e6:.0f} user + {(sys1 - sys0) / len(requests) * 1e6:.0f} system"
        sent = len(requests)
        recv_done.set()
        got = results_q.get(timeout=60)
        recv.join(30)
        done.set()
        idle.join(30)
        floor = http_floor(srv, len(requests), args.rate)
        lat = sorted((at - sent_at[seq]) / 1e6 for seq, at in got)
        if not lat:
            print("  no message arrived")
            return 1
        p50, p99 = percentile(lat, 50), percentile(lat, 99)
        met = p99 <= 20.0 and failed == 0 and len(lat) == sent
        ok_all &= met
        print(f"  post_to_connection fan-out: {sent} posts at {args.rate}/s over {len(ids)} connections "
              f"({failed} failed, {len(lat)} received; machine {busy:.0%} busy at the start): "
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {lat[-1]:.2f} ms; server CPU {cpu_per_post:.0f} µs a post ({split}) "
              "(target p99 <= 20 ms): "
              f"{'met' if met else 'NOT met'}")
        print(f"  the node's floor for one HTTP request (an unsigned PUT to @connections, answered 404 before any "
              f"signature check or push; same rate and connections): {floor}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
