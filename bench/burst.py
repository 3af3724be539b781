"""Burst: 0 → N concurrent requests (default 200) to a scaled-to-zero function doing 100 ms of work each.

Issue 24's target 4, second half: all N complete in ≤ 1.5 s with 0 errors. Two shapes (`--shape`, both by
default), each round opening N keep-alive connections, then sending one request on each at the same moment:

* `zero`: a function that served before and has no instance left (its `keepalive` is 1 s: the round waits
  until the keep-alive closed every instance), as a Lambda or Knative function scaled to zero. Its function
  zygote (the import cache, one process) outlives its instances, so every instance of the burst forks from it;
* `deploy`: each round deploys a new revision (an empty pool); round 1 is a function this node never served
  (no function zygote yet: the burst's starts wait for one built at once), later rounds a new revision of a
  served function (its zygote built at deploy).

It reports the time until all N responses arrived, instances started (the function's `cold_starts`), errors
(any non-200), client-side p50/p99, and the instances' start times (`init_ms`). With `concurrency` 1 the pool
starts up to `max_instances` instances reactively (queueing callers, within the node's memory budget).

    .venv/bin/python bench/burst.py                 # 200 requests, 3 rounds per shape
    .venv/bin/python bench/burst.py --quick         # 50 requests, 1 round per shape
    .venv/bin/python bench/burst.py --shape zero --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Http, PolyfnServer, fmt, percentile, print_header, table

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


TARGET_MS = 1500


def wait_for_zero(server: PolyfnServer, timeout: float = 30.0) -> dict:
    """Wait until the function has no instance left (its keep-alive closed them); its scaling block."""
    assert server.api is not None
    end = time.monotonic() + timeout
    while True:
        sc = server.api.json("GET", "/v1/functions/burst").get("scaling") or {}
        if not sc.get("instances") or time.monotonic() > end:
            return sc
        time.sleep(0.25)


def burst_round(server: PolyfnServer, args: argparse.Namespace, label: str) -> tuple[list[str], float, int]:
    assert server.api is not None
    before = (server.api.json("GET", "/v1/functions/burst").get("scaling") or {})
    total, lat, codes = asyncio.run(one_round(server.port, args.requests, "/fn/burst"))
    server.api.close()  # (idle through the burst: the server may have closed it; it reopens)
    sc = server.api.json("GET", "/v1/functions/burst").get("scaling") or {}
    inits = [i["init_ms"] for i in sc.get("instances") or []]
    errors = sum(1 for c in codes if c != 200)
    if errors:
        print(f"{label}: status codes {sorted(set(codes))}; server log tail:\n{server.log_tail(10)}")
    zb = (before.get("zygote") or {}).get("state", "?")
    started = sc.get("cold_starts", 0) - before.get("cold_starts", 0)
    row = [label, str(len(before.get("instances") or [])), zb, fmt(total, 0), str(started),
           str(errors), fmt(percentile(lat, 50), 0), fmt(percentile(lat, 99), 0),
           fmt(percentile(inits, 50), 0) if inits else "-", fmt(max(inits), 0) if inits else "-"]
    return row, total, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--requests", type=int, default=200, help="concurrent requests in the burst")
    ap.add_argument("--work", type=float, default=0.1, help="seconds of work (sleep) per request")
    ap.add_argument("--max-instances", type=int, default=200, help="the function's max_instances")
    ap.add_argument("--concurrency", type=int, default=1, help="the function's in-flight per instance")
    ap.add_argument("--memory", type=int, default=64, help="the function's memory (MB)")
    ap.add_argument("--rounds", type=int, default=3, help="bursts per shape")
    ap.add_argument("--shape", choices=["zero", "deploy", "both"], default="both",
                    help="a served function scaled to zero, or a new revision per round")
    ap.add_argument("--quick", action="store_true", help="50 requests, 1 round per shape")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.rounds = 50, 1
    print_header(f"burst: 0 → {args.requests} concurrent requests, {args.work * 1000:.0f} ms of work each")
    env = {"POLYFN_MAX_INSTANCES": str(max(args.max_instances, 1)), "POLYFN_MAX_QUEUE": str(args.requests * 2),
           "POLYFN_METRICS": "true"}
    shapes = ["zero", "deploy"] if args.shape == "both" else [args.shape]
    spec = {"max_instances": args.max_instances, "concurrency": args.concurrency, "memory": args.memory}
    rows: list[list[str]] = []
    verdicts = []
    for shape in shapes:
        totals: list[float] = []
        errors = 0
        with PolyfnServer(env=env) as server:
            assert server.api is not None
            if shape == "zero":  # served once, then scaled to zero by its 1 s keep-alive
                server.deploy("burst", {"handler.py": WORK % args.work}, keepalive=1, **spec)
                first = Http(server.port)
                first.request("GET", "/fn/burst")
                first.close()
            for rnd in range(args.rounds):
                if shape == "deploy":
                    server.deploy("burst", {"handler.py": WORK % args.work + f"# round {rnd}\n"}, **spec)
                    time.sleep(0.5)
                else:
                    time.sleep(1.0)  # (the keep-alive is counted from the last call's end)
                    wait_for_zero(server)
                row, total, errs = burst_round(server, args, f"{shape} {rnd + 1}")
                rows.append(row)
                totals.append(total)
                errors += errs
            isolation = server.isolation
        worst = max(totals)
        ok = worst <= TARGET_MS and not errors
        verdicts.append(f"{shape}: worst {fmt(worst, 0)} ms, {errors} errors → {'met' if ok else 'NOT met'}")
    print(f"polyfn: instance isolation: {isolation}")
    print("milliseconds, client-side; `live before`: instances when the burst began; `zygote`: the function "
          "zygote's state then; `start`: the instances' init_ms\n")
    print(table(["shape, round", "live before", "zygote", "all done", "instances started", "errors", "p50", "p99",
                 "start p50", "start max"], rows))
    print(f"\ntarget (issue 24, 4): 0 → {args.requests} in ≤ {TARGET_MS} ms with 0 errors")
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    main()
