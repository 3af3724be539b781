"""Async invocations through the durable queue: sustained rate and enqueue → start latency.

A trivial native function is invoked N times with `X-Polyfn-Async: true` on `/fn/NAME` (each accepted
invocation is committed to the SQLite queue before the 202), by C concurrent clients. Reported:

* accept rate: 202s per second while submitting;
* end-to-end rate: N / (time from the first submit until the queue is empty: every invocation ran);
* enqueue → start latency (p50/p99) of a sample of invocations: the activation's start minus the moment
  the client sent the request (so it includes the durable commit);
* server CPU ms per invocation (the `polyfn serve` process only, from /proc: less sensitive to a busy
  machine than rates);
* the peer in the same run: the same function invoked synchronously (`/fn/NAME`, same clients), so the
  cost of durability is visible as a ratio.

    .venv/bin/python bench/async.py                 # 20,000 invocations, 64 clients
    .venv/bin/python bench/async.py -n 5000 -c 32   # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import httpx
from _common import HELLO_NATIVE, PolyfnServer, cpu_seconds, fmt, percentile, print_header, table, wait_idle


async def submit(url: str, n: int, clients: int, headers: dict[str, str]) -> tuple[float, list[tuple[str, float]]]:
    accepted: list[tuple[str, float]] = []
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            for _ in counter:
                sent = time.time()
                r = await client.post(url, content=b'{"x": 1}', headers=headers)
                if r.status_code not in (200, 202):
                    raise RuntimeError(f"{r.status_code} {r.text[:200]}")
                accepted.append((r.headers.get("x-polyfn-activation-id", ""), sent))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - t0, accepted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20000, help="async invocations (default 20000)")
    ap.add_argument("-c", type=int, default=64, help="concurrent clients (default 64)")
    ap.add_argument("--sample", type=int, default=500, help="activations sampled for latency (default 500)")
    args = ap.parse_args()
    print_header("polyfn async invocations (durable SQLite queue)")
    with PolyfnServer(log_level="WARNING") as srv:
        assert srv.api is not None
        srv.deploy("hello", {"handler.py": HELLO_NATIVE}, concurrency=1, max_instances=4, min_instances=2)
        url = srv.url("/fn/hello")
        asyncio.run(submit(url, 500, args.c, {}))  # warm-up, sync

        assert srv.proc is not None
        pid = srv.proc.pid
        wait_idle(pid)
        cpu0 = cpu_seconds(pid)
        sync_s, _ = asyncio.run(submit(url, args.n, args.c, {}))
        wait_idle(pid)
        cpu1 = cpu_seconds(pid)
        t0 = time.perf_counter()
        accept_s, accepted = asyncio.run(submit(url, args.n, args.c, {"X-Polyfn-Async": "true"}))
        api = httpx.Client(base_url=srv.url(""), headers={"authorization": f"Bearer {srv.key}"}, timeout=60)
        while True:
            q = api.get("/v1/queue").json()
            if q["pending"] == 0 and q["running"] == 0:
                break
            time.sleep(0.02)
        e2e_s = time.perf_counter() - t0
        wait_idle(pid)
        cpu2 = cpu_seconds(pid)
        lat: list[float] = []
        for aid, t_acc in random.sample(accepted, min(args.sample, len(accepted))):
            act = api.get(f"/v1/activations/{aid}").json()
            lat.append((act["start"] - t_acc) * 1000)
        failed = api.get("/v1/activations?function=hello&status=error&limit=10").json()["activations"]
        api.close()
    sync_cpu = (cpu1 - cpu0) / args.n * 1000
    async_cpu = (cpu2 - cpu1) / args.n * 1000
    rows = [
        ["sync /fn/hello (peer)", fmt(args.n / sync_s, 0), "-", "-", "-", fmt(sync_cpu, 3)],
        ["async accept (202, durable)", fmt(args.n / accept_s, 0), "-", "-", "-", "-"],
        ["async end to end (all ran)", fmt(args.n / e2e_s, 0), fmt(percentile(lat, 50)), fmt(percentile(lat, 99)),
         fmt((args.n / e2e_s) / (args.n / sync_s), 2), fmt(async_cpu, 3)],
    ]
    print(table(["path", "invocations/s", "enqueue→start p50 ms", "p99 ms", "ratio to sync",
                 "server CPU ms/invocation"], rows))
    print(f"\n{args.n} invocations, {args.c} clients; errors: {len(failed)}; target ≥ 2,000/s end to end")


if __name__ == "__main__":
    main()
