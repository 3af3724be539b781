"""Burst: 0 → N concurrent requests (default 200) to a scaled-to-zero function doing 100 ms of work each.

Each round deploys a new revision (an empty pool: truly scaled to zero), opens N keep-alive connections,
then sends one request on each at the same moment, and reports: time until all N responses arrived,
instances started (the function's `cold_starts`), errors (any non-200), client-side p50/p99, and how
many activations were cold. The ideal time is ~100 ms of work + one cold start per instance; with
`concurrency` 1 and N callers, the pool starts up to `max_instances` instances reactively (queueing
callers) and the autoscaler's panic mode keeps them while the burst lasts.

    .venv/bin/python bench/burst.py                 # 200 requests, 3 rounds
    .venv/bin/python bench/burst.py --quick         # 50 requests, 1 round
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PolyfnServer, fmt, percentile, print_header, table

WORK = "import time\ndef handler(event, context):\n    time.sleep(%s)\n    return 'done'\n"


async def one_round(port: int, n: int, path: str) -> tuple[float, list[float], list[int]]:
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(n)]
    req = f"GET {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    go = asyncio.Event()

    async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[float, int]:
        await go.wait()
        t0 = time.perf_counter()
        writer.write(req)
        await writer.drain()
        status_line = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        await reader.readexactly(length)
        writer.close()
        return (time.perf_counter() - t0) * 1000, int(status_line.split()[1]) if status_line else 0

    tasks = [asyncio.create_task(call(r, w)) for r, w in conns]
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    go.set()
    results = await asyncio.gather(*tasks)
    total = (time.perf_counter() - t0) * 1000
    return total, [r[0] for r in results], [r[1] for r in results]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--requests", type=int, default=200, help="concurrent requests in the burst")
    ap.add_argument("--work", type=float, default=0.1, help="seconds of work (sleep) per request")
    ap.add_argument("--max-instances", type=int, default=200, help="the function's max_instances")
    ap.add_argument("--concurrency", type=int, default=1, help="the function's in-flight per instance")
    ap.add_argument("--memory", type=int, default=64, help="the function's memory (MB)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="50 requests, 1 round")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.rounds = 50, 1
    print_header(f"burst: 0 → {args.requests} concurrent requests, {args.work * 1000:.0f} ms of work each")
    env = {"POLYFN_MAX_INSTANCES": str(max(args.max_instances, 1)), "POLYFN_MAX_QUEUE": str(args.requests * 2),
           "POLYFN_METRICS": "true"}
    rows = []
    with PolyfnServer(env=env) as server:
        assert server.api is not None
        for rnd in range(args.rounds):
            server.deploy("burst", {"handler.py": WORK % args.work + f"# round {rnd}\n"},
                          max_instances=args.max_instances, concurrency=args.concurrency, memory=args.memory)
            time.sleep(0.5)
            total, lat, codes = asyncio.run(one_round(server.port, args.requests, "/fn/burst"))
            desc = server.api.json("GET", "/v1/functions/burst")
            sc = desc.get("scaling") or {}
            errors = sum(1 for c in codes if c != 200)
            rows.append([str(rnd + 1), fmt(total, 0), str(sc.get("cold_starts", "?")), str(errors),
                         fmt(percentile(lat, 50), 0), fmt(percentile(lat, 99), 0),
                         fmt(statistics.fmean(lat), 0),
                         f"{total / (args.work * 1000):.1f}×"])
            if errors:
                print(f"round {rnd + 1}: status codes {sorted(set(codes))}; server log tail:\n{server.log_tail(10)}")
        print(f"polyfn: instance isolation: {server.isolation}")
    print("milliseconds, client-side; ratio = time to complete all / the work of one request\n")
    print(table(["round", "all done", "instances started", "errors", "p50", "p99", "mean", "ratio"], rows))


if __name__ == "__main__":
    main()
