"""Async invocations through the durable queue: sustained rate and enqueue → start latency.

A trivial native function is invoked with `X-Polyfn-Async: true` on `/fn/NAME` (each accepted invocation is
committed to the SQLite queue before its 202) by `wrk` (C, one thread: a Python client tops out near
500 requests/s on this machine and would measure itself). Reported:

* **saturated**: wrk with C connections for D seconds, as fast as the server accepts; end to end =
  accepted / (time from wrk's start until the queue is empty: every invocation ran). While the queue
  builds up, accepting and running share the node's CPU, so this is the node's sustained capacity;
  "backlog drain/s" is the rate at which the backlog left when wrk stopped ran (dispatching alone);
* **paced**: wrk at a fixed offered rate (`--rate`, each connection sleeping between requests), below
  capacity: the enqueue → start latency a caller sees when the node keeps up;
* enqueue → start p50/p99: a probe client sends one async request every 20 ms during each run and reads
  the activation's start afterwards (client send time → the function's start, so it includes the durable
  commit and the 202);
* server CPU ms per invocation (the `polyfn serve` process, from /proc: less sensitive to a busy machine
  than rates), and from it the jobs/s per core: what one core would run of the node's own work alone
  (1000 / server ms) and with the function's instances' CPU too (1000 / (server + instances ms));
* the peer in the same run: the same function invoked synchronously (`/fn/NAME`, same wrk connections),
  so the cost of durability is visible as a ratio.

With `--queue-url nats://127.0.0.1:4222` the node's queue is the cluster's (a NATS JetStream stream of
the run's own, deleted afterwards): each accepted invocation is stored by JetStream before its 202.

    .venv/bin/python bench/async.py                  # 10 s runs, 64 connections, paced at 1,000/s
    .venv/bin/python bench/async.py -d 5 --rate 500  # quicker
    .venv/bin/python bench/async.py --queue-url nats://127.0.0.1:4222
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import threading
import time
from pathlib import Path

from _common import (
    HELLO_NATIVE,
    Http,
    PolyfnServer,
    cpu_seconds,
    fmt,
    percentile,
    print_header,
    run_wrk,
    table,
    temp_dir,
    tree_cpu_seconds,
    wait_idle,
    wrk_path,
)

#: issue 24, target 7: async jobs/s end to end, saturated, on each queue
TARGET = 10_000


class Probe(threading.Thread):
    """One async request every `every` seconds on its own connection; remembers (activation id, sent)."""

    def __init__(self, port: int, path: str, every: float = 0.02):
        super().__init__(daemon=True)
        self.port, self.path, self.every = port, path, every
        self.sent: list[tuple[str, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.stop.wait(self.every):
            t = time.time()
            conn.request("POST", self.path, body=b'{"probe": 1}', headers={"X-Polyfn-Async": "true"})
            r = conn.getresponse()
            r.read()
            if r.status == 202:
                self.sent.append((r.headers["x-polyfn-activation-id"], t))
        conn.close()


def drain(srv: PolyfnServer, timeout: float = 600) -> int:
    """Wait until every accepted invocation ran (nothing pending or running in the queue); returns how many
    were left when called."""
    api = Http(srv.port, srv.key)  # a fresh connection: the server closes idle keep-alive ones
    left = -1
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            q = api.json("GET", "/v1/queue")
            if left < 0:
                left = q["pending"] + q["running"]
            if q["pending"] == 0 and q["running"] == 0:
                return left
            time.sleep(0.01)
    finally:
        api.close()
    raise RuntimeError("the async queue did not drain")


def latencies(srv: PolyfnServer, sent: list[tuple[str, float]]) -> list[float]:
    api = Http(srv.port, srv.key)
    out = [(api.json("GET", f"/v1/activations/{aid}")["start"] - t) * 1000 for aid, t in sent]
    api.close()
    return out


def async_run(srv: PolyfnServer, pid: int, url: str, conns: int, duration: int, script: str) -> dict[str, float]:
    probe = Probe(srv.port, "/fn/hello")
    wait_idle(pid)
    cpu0, tree0 = cpu_seconds(pid), tree_cpu_seconds(pid)
    t0 = time.perf_counter()
    probe.start()
    res = run_wrk(url, conns, duration, script=script)
    probe.stop.set()
    probe.join()
    t1 = time.perf_counter()
    left = drain(srv)
    e2e = time.perf_counter() - t0
    drain_rate = left / (time.perf_counter() - t1) if left > 200 else float("nan")
    wait_idle(pid)
    n = res.requests + len(probe.sent)
    server = cpu_seconds(pid) - cpu0
    cpu = server / n * 1000
    instances = (tree_cpu_seconds(pid) - tree0 - server) / n * 1000
    lat = latencies(srv, probe.sent)
    errors = res.non_2xx + res.socket_errors
    return {"accept": res.rps, "e2e": n / e2e, "p50": percentile(lat, 50), "p99": percentile(lat, 99),
            "cpu": cpu, "n": n, "errors": errors, "drain": drain_rate, "instances": instances}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", type=int, default=64, help="wrk connections for the saturated runs (default 64)")
    ap.add_argument("-d", type=int, default=10, help="seconds of wrk per run (default 10)")
    ap.add_argument("--rate", type=int, default=1000, help="offered async invocations/s of the paced run")
    ap.add_argument("--queue-url", default="", help="nats://…: the cluster's queue (a JetStream stream of the run's own)")
    args = ap.parse_args()
    wrk_path()
    env = {}
    if args.queue_url:
        env = {"POLYFN_QUEUE_URL": args.queue_url, "POLYFN_QUEUE_STREAM": f"BENCH_{secrets.token_hex(4).upper()}"}
    print_header(f"polyfn async invocations ({'NATS JetStream stream' if env else 'durable SQLite queue'})")
    try:
        run(args, env)
    finally:
        if env:
            delete_stream(args.queue_url, env["POLYFN_QUEUE_STREAM"])


def delete_stream(url: str, stream: str) -> None:
    import asyncio

    import nats

    async def go() -> None:
        nc = await nats.connect(url, max_reconnect_attempts=0)
        try:
            await nc.jetstream().delete_stream(stream)
            await nc.jetstream().delete_stream(f"{stream}_TOPICS")
        finally:
            await nc.close()

    asyncio.run(go())


def run(args: argparse.Namespace, env: dict[str, str]) -> None:
    with temp_dir("polyfn-bench-async-") as tmp, PolyfnServer(log_level="WARNING", env=env) as srv:
        body = json.dumps({"x": 1})
        sync_lua = tmp / "sync.lua"
        sync_lua.write_text(f"wrk.method = 'POST'\nwrk.body = '{body}'\n")
        async_lua = tmp / "async.lua"
        async_lua.write_text(f"wrk.method = 'POST'\nwrk.body = '{body}'\nwrk.headers['X-Polyfn-Async'] = 'true'\n")
        paced_conns = 16
        paced_lua: Path = tmp / "paced.lua"
        paced_lua.write_text(async_lua.read_text() + f"function delay() return {1000 * paced_conns / args.rate:.3f} end\n")
        srv.deploy("hello", {"handler.py": HELLO_NATIVE}, concurrency=1, max_instances=4, min_instances=2)
        url = srv.url("/fn/hello")
        assert srv.proc is not None
        pid = srv.proc.pid
        run_wrk(url, args.c, 2, script=str(sync_lua))  # warm-up
        run_wrk(url, args.c, 2, script=str(async_lua))
        drain(srv)

        wait_idle(pid)
        cpu0 = cpu_seconds(pid)
        sync = run_wrk(url, args.c, args.d, script=str(sync_lua))
        wait_idle(pid)
        sync_cpu = (cpu_seconds(pid) - cpu0) / sync.requests * 1000
        sat = async_run(srv, pid, url, args.c, args.d, str(async_lua))
        paced = async_run(srv, pid, url, paced_conns, args.d, str(paced_lua))
        api = Http(srv.port, srv.key)
        failed = api.json("GET", "/v1/activations?function=hello&status=error&limit=10")["activations"]
    rows = [
        ["sync /fn/hello (peer)", fmt(sync.rps, 0), "-", "-", "-", "-", "-", fmt(sync_cpu, 3)],
        [f"async saturated, {args.c} conns", fmt(sat["accept"], 0), fmt(sat["e2e"], 0), fmt(sat["drain"], 0),
         fmt(sat["p50"]), fmt(sat["p99"]), fmt(sat["e2e"] / sync.rps, 2), fmt(sat["cpu"], 3)],
        [f"async paced, offered {args.rate}/s", fmt(paced["accept"], 0), fmt(paced["e2e"], 0),
         fmt(paced["drain"], 0), fmt(paced["p50"]), fmt(paced["p99"]), "-", fmt(paced["cpu"], 3)],
    ]
    print(table(["run", "accepted/s", "end to end/s", "backlog drain/s", "enqueue→start p50 ms", "p99 ms",
                 "e2e / sync", "server CPU ms/invocation"], rows))
    print(f"\nwrk -t1 -c{args.c} -d{args.d}s (paced: -c{paced_conns} with a per-request delay); "
          f"{int(sat['n'])} + {int(paced['n'])} async invocations; non-2xx/socket errors: "
          f"{int(sat['errors'] + paced['errors'])}; failed activations: {len(failed)}")
    inst = sat["instances"]
    print(f"saturated, per core: {1000 / sat['cpu']:,.0f} jobs/s of the node's own CPU ({sat['cpu']:.3f} ms a job), "
          f"{1000 / (sat['cpu'] + inst):,.0f} with its instances' ({inst:.3f} ms a job)")
    print(f"target ≥ {TARGET:,} async jobs/s end to end (saturated): {'met' if sat['e2e'] >= TARGET else 'NOT met'} "
          f"({sat['e2e']:,.0f}/s)")


if __name__ == "__main__":
    main()
