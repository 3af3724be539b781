"""What usage metering costs on the warm path, and whether a load run's metered GB·s equals its activation records.

Two polyfn nodes in the same run, one as shipped (metering on), one with `POLYFN_USAGE_METERING=false`; both serve
one function, `probe`, returning 'Hello World!'. wrk measures both in rounds, the order alternating each round;
the cost is the median over rounds of (1 - on/off of the same round) (the issue's budget: ≤ 2 %), with its 95 %
interval (order statistics) and the range of the per-round costs. Two nodes differ by a few percent for as long
as they run (see bench/observe_overhead.py's A/A figures), so `--fresh-nodes` starts new nodes every round and
`--aa` turns metering on in both (the method's noise floor).

Then the accuracy check, on the metering node: `--check-requests` calls of a function that sleeps 0-3 ms, from
8 threads; the metered `mb_ms` (GB·s × 1024 × 1000) of `GET /v1/usage` against the sum over the run's activation
records of ceil(duration_ms - wait_ms) × memory_mb (target: within 0.1 %; it is exact by construction).

The comparison covers every meter (`--workloads`): warm invocations (GB·s, invocations, bytes), DynamoDB GetItem
and PutItem replayed by wrk with requests signed beforehand (the database reads/writes meter), workflow executions
of four Pass states run to their end through `/v1/workflows/NAME/executions?wait=true` (the transitions meter),
with both nodes sampling stored bytes every second (`POLYFN_STORAGE_SAMPLE_S=1`: the storage meter, on the
metering node only); one cost, interval and verdict per workload.

On a busy machine the wrk comparison's per-round noise (±20-30 points) is far above the 2 % budget, so the bench
also measures what metering adds in CPU directly: `UsageMeter.add` plus the upsert per activation, in-process,
against the CPU per request of the whole node tree (server, zygote, instances) without metering, in the same run.
The hot path itself only fills three more fields of the activation record (and stores three more columns).

    .venv/bin/python bench/usage.py                          # 8 rounds x 3 s (~1.5 min)
    .venv/bin/python bench/usage.py --rounds 30 --duration 2 --fresh-nodes
    .venv/bin/python bench/usage.py --aa --rounds 20 --duration 2
    .venv/bin/python bench/usage.py --workloads invoke        # the warm invocation path only
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import (
    Http,
    PolyfnServer,
    machine_busy,
    print_header,
    run_wrk,
    table,
    tree_cpu_seconds,
    wait_idle,
)

sys.path.insert(0, str(Path(__file__).parent))
from observe_overhead import median_interval

PROBE = "def handler(event, context):\n    return 'Hello World!'\n"
SLEEPY = ("import time\n"
          "def handler(event, context):\n"
          "    time.sleep((event or {}).get('ms', 0) / 1000)\n"
          "    return {'ok': True}\n")
PASS4 = {"StartAt": "a", "States": {"a": {"Type": "Pass", "Next": "b"}, "b": {"Type": "Pass", "Next": "c"},
                                    "c": {"Type": "Pass", "Next": "d"}, "d": {"Type": "Pass", "End": True}}}
WORKLOADS = ("invoke", "GetItem", "PutItem", "workflow")
BUDGET = 2.0  # % of warm throughput
ACCURACY = 0.1  # % between metered GB·s and the sum over activation records


def accuracy(srv: PolyfnServer, requests: int) -> tuple[int, int, int, int]:
    """(metered invocations, records, metered mb_ms, mb_ms summed over the records) of a load run."""
    api = Http(srv.port, srv.key)  # (a new connection: the node closed the idle one of srv.deploy)
    api.json("PUT", "/v1/functions/sleepy", {"files": {"handler.py": SLEEPY}, "memory": 384})
    since = time.time() - 1

    def call(i: int) -> None:
        h = Http(srv.port)
        status, _, body = h.request("POST", "/fn/sleepy", {"ms": i % 4})
        h.close()
        assert status == 200, body

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(requests)))
    api.close()
    api = Http(srv.port, srv.key)  # (a new connection: the node closes one idle while the calls ran)
    total = api.json("GET", f"/v1/usage?function=sleepy&since={since}")["total"]
    acts: dict[str, dict[str, float]] = {}
    until = time.time() + 1
    while True:  # newest first, 1,000 a page
        page = api.json("GET", f"/v1/activations?function=sleepy&limit=1000&until={until}")["activations"]
        for a in page:
            acts[a["id"]] = a
        if len(page) < 1000:
            break
        until = min(a["start"] for a in page) + 1e-9  # (the page's oldest again: ids deduplicate)
    api.close()
    expected = sum(math.ceil(a["duration_ms"] - a["wait_ms"]) * a["memory_mb"] for a in acts.values())
    return total["invocations"], len(acts), total["mb_ms"], expected


def meter_cost(per_flush: int, n: int = 100_000) -> float:
    """CPU µs per activation of what metering adds off the hot path: `UsageMeter.add` (sums and counters) over
    stored batches of `per_flush` records of one function, as the recorder hands them over at the measured rate
    (one flush every 0.2 s), plus the upsert into a real SQLite store of every 25th flush (every 5 s)."""
    import asyncio
    import tempfile

    from polyfn.model import Activation
    from polyfn.observe.metrics import Metrics
    from polyfn.observe.usage import UsageMeter
    from polyfn.store import Store

    acts = [Activation(id=str(i), function="probe", revision=1, trigger="http", start=time.time(),
                       duration_ms=1.2, wait_ms=0.01, instance="i", memory_mb=256, req_bytes=0, resp_bytes=12)
            for i in range(per_flush)]

    async def run() -> float:
        with tempfile.TemporaryDirectory() as d:
            store = await Store.open(f"sqlite+aiosqlite:///{d}/polyfn.db")
            meter = UsageMeter(store, Metrics(), interval=1e9)  # (no clock here: every 25th flush writes)
            t0 = time.process_time()
            for i in range(max(1, n // per_flush)):
                meter.add(acts)
                await meter.flush(background=i % 25 != 24)
            spent = time.process_time() - t0
            await store.close()
            return spent / (max(1, n // per_flush) * per_flush) * 1e6

    return asyncio.run(run())


def hook_cost(workload: str, n: int = 50_000) -> float:
    """CPU µs per request of what metering adds to a database request (`NamespaceUse.db_items`: one item read or
    written) or to a four-Pass execution (`NamespaceUse.workflow_step` once per state, generously: the engine
    calls it once per stored transition), in-process on a real UsageMeter; the upserts are the flush's, as above."""
    from polyfn.namespace_use import NamespaceUse
    from polyfn.observe.metrics import Metrics
    from polyfn.observe.usage import UsageMeter

    use = NamespaceUse(lambda ns: None, UsageMeter(None, Metrics(), interval=1e9))
    ex = type("Ex", (), {"namespace": "default"})()
    events = [{"type": "PassStateExited"}, {"type": "PassStateEntered"}]
    t0 = time.process_time()
    for _ in range(n):
        if workload == "workflow":
            for _state in range(4):
                use.workflow_step(ex, events)
        else:
            use.db_items("default", None, 1 if workload == "GetItem" else 0, 1 if workload == "PutItem" else 0)
    return (time.process_time() - t0) / n * 1e6


def prepare(srv: PolyfnServer, workloads: list[str], tmp: Path) -> dict[str, tuple[str, str | None, int]]:
    """Set up each workload on a node: {workload: (url, wrk script or None, connections)}."""
    from db import client, presigned_script
    from db import setup as table_setup

    out: dict[str, tuple[str, str | None, int]] = {}
    for w in workloads:
        if w == "invoke":
            out[w] = (srv.url("/fn/probe"), None, 32)
        elif w in ("GetItem", "PutItem"):
            if not any(k in out for k in ("GetItem", "PutItem")):
                table_setup(client(srv.url(""), "polyfn-admin", srv.key), "bench")
            script = tmp / f"{srv.port}-{w}.lua"  # (signed now: valid for the 15 minutes SigV4 allows)
            presigned_script(srv.url(""), "polyfn-admin", srv.key, "bench", w, 500, script)
            out[w] = (srv.url("/"), str(script), 32)
        elif w == "workflow":
            assert srv.api is not None
            srv.api.json("PUT", "/v1/workflows/flow", {"definition": PASS4})
            script = tmp / f"{srv.port}-workflow.lua"
            script.write_text('wrk.method = "POST"\nwrk.body = \'{"input": {}}\'\n'
                              f'wrk.headers["Authorization"] = "Bearer {srv.key}"\n'
                              'wrk.headers["Content-Type"] = "application/json"\n')
            out[w] = (srv.url("/v1/workflows/flow/executions?wait=true"), str(script), 8)
        else:
            raise SystemExit(f"unknown workload {w!r}: use {', '.join(WORKLOADS)}")
    return out


def verdict_of(costs: list[float]) -> tuple[float, float, float, str]:
    """(median cost %, its 95 % interval, the verdict against BUDGET)."""
    cost = statistics.median(costs)
    lo, hi = median_interval(costs)
    if hi == hi:  # (NaN: too few rounds for an interval)
        return cost, lo, hi, "met" if hi <= BUDGET else "NOT met" if lo > BUDGET else "not settled"
    return cost, lo, hi, "met (median; too few rounds for an interval)" if cost <= BUDGET else "NOT met (median)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=int, default=3, help="seconds per measured wrk run")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--aa", action="store_true", help="metering on in both nodes: the method's noise floor")
    ap.add_argument("--fresh-nodes", action="store_true", help="new nodes every round")
    ap.add_argument("--check-requests", type=int, default=3000)
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated: {', '.join(WORKLOADS)}")
    args = ap.parse_args()
    workloads = [w for w in args.workloads.split(",") if w]
    print_header(f"usage metering overhead (warm, wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} "
                 f"rounds{', A/A: metering on in both' if args.aa else ''}"
                 f"{', fresh nodes every round' if args.fresh_nodes else ''})")
    servers: dict[str, PolyfnServer] = {}
    targets: dict[str, dict[str, tuple[str, str | None, int]]] = {}
    scripts = tempfile.TemporaryDirectory(prefix="polyfn-usage-bench-")

    def start_nodes() -> None:
        for srv in servers.values():
            srv.__exit__(None, None, None)
        servers.clear()
        for case in ("on", "off"):
            metering = case == "on" or args.aa
            servers[case] = PolyfnServer(log_level="WARNING", env={
                "POLYFN_USAGE_METERING": str(metering).lower(), "POLYFN_STORAGE_SAMPLE_S": "1"}).__enter__()
            servers[case].deploy("probe", {"handler.py": PROBE})
            targets[case] = prepare(servers[case], workloads, Path(scripts.name))
            for url, script, conns in targets[case].values():
                run_wrk(url, conns, 1, script=script)  # warm instances and code paths

    try:
        start_nodes()
        rps: dict[str, dict[str, list[float]]] = {w: {"on": [], "off": []} for w in workloads}
        for rnd in range(args.rounds):
            if args.fresh_nodes and rnd:
                start_nodes()
            for w in workloads:
                for case in (("on", "off") if rnd % 2 == 0 else ("off", "on")):
                    url, script, conns = targets[case][w]
                    conns = args.connections if w == "invoke" else conns
                    r = run_wrk(url, conns, args.duration, script=script)
                    if r.non_2xx or r.socket_errors:
                        raise SystemExit(f"{w} {case}: {r.non_2xx} non-2xx, {r.socket_errors} socket errors")
                    rps[w][case].append(r.rps)
                    print(f"  round {rnd + 1} {w:8s} metering {case:3s} {r.rps:9.0f} req/s  p99 {r.p99_ms:6.2f} ms  "
                          f"(machine {machine_busy(0.2):.0%} busy after)", flush=True)
        rows: list[list[Any]] = []
        verdicts = []
        for w in workloads:
            costs = sorted((1 - on / off) * 100 for on, off in zip(rps[w]["on"], rps[w]["off"], strict=True))
            cost, lo, hi, verdict = verdict_of(costs)
            verdicts.append(verdict)
            rows.append([w, f"{statistics.median(rps[w]['on']):.0f} req/s", f"{statistics.median(rps[w]['off']):.0f} req/s",
                         f"{statistics.median(rps[w]['on']) / statistics.median(rps[w]['off']):.3f}",
                         f"{cost:+.1f} %", f"{lo:+.1f} … {hi:+.1f} %" if hi == hi else "(more rounds)",
                         f"{costs[0]:+.1f} … {costs[-1]:+.1f} %", verdict])
        print()
        print(table(["workload", "metering on", "metering off", "ratio on/off", "throughput cost", "95 % interval",
                     "rounds' range", f"≤ {BUDGET:g} %"], rows))
        print(f"\nmetering costs ≤ {BUDGET:g} % of throughput on every workload: "
              + ("met" if all(v.startswith("met") for v in verdicts) else
                 "NOT met" if any(v.startswith("NOT") for v in verdicts) else "not settled")
              + (" (A/A: both nodes meter)" if args.aa else ""))

        srv = servers["off"]
        assert srv.proc is not None
        shares = []
        for w in workloads:  # the node's CPU per request without metering, against metering's own per request
            url, script, conns = targets["off"][w]
            wait_idle(srv.proc.pid)
            cpu0 = tree_cpu_seconds(srv.proc.pid)
            r = run_wrk(url, args.connections if w == "invoke" else conns, args.duration, script=script)
            wait_idle(srv.proc.pid)
            per_req = (tree_cpu_seconds(srv.proc.pid) - cpu0) / max(r.requests, 1) * 1e6
            if w == "invoke":
                per_act = meter_cost(max(1, round(r.rps * 0.2)))
                what = f"UsageMeter.add + its share of one upsert per {25 * max(1, round(r.rps * 0.2))} records"
            else:
                per_act = hook_cost(w)
                what = "NamespaceUse.db_items" if w != "workflow" else "NamespaceUse.workflow_step × 4"
            shares.append(per_act / per_req * 100)
            print(f"metering's own CPU, {w}: {per_act:.2f} µs per request ({what}, in-process) against "
                  f"{per_req:.0f} CPU µs per request of the whole node without metering: {shares[-1]:.2f} %")
        print(f"metering's CPU ≤ {BUDGET:g} % of a request's on every workload: "
              f"{'met' if all(x <= BUDGET for x in shares) else 'NOT met'}")

        n, records, metered, expected = accuracy(servers["on"], args.check_requests)
        off = abs(metered - expected) / expected * 100 if expected else float("inf")
        print(f"accuracy: {args.check_requests} calls, {n} metered, {records} activation records; metered "
              f"{metered / 1024 / 1000:.6f} GB·s vs {expected / 1024 / 1000:.6f} GB·s summed over the records "
              f"({off:.4f} % apart)")
        ok = n == records == args.check_requests and off <= ACCURACY
        print(f"metered GB·s within {ACCURACY:g} % of the activation records: {'met' if ok else 'NOT met'}")
    finally:
        for srv in servers.values():
            srv.__exit__(None, None, None)
        scripts.cleanup()


if __name__ == "__main__":
    main()
