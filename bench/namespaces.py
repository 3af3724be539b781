"""Does a node with 1,000 namespaces answer as fast as a node with one? (issue #23: "unchanged")

Two polyfn nodes in the same run, measured against each other:

* `small`: one namespace (`probe`) with 10 functions (and a key of its own);
* `large`: the same `probe` namespace, then 999 more namespaces, 10 functions and a key each (1,000 × 10 =
  10,000 functions), made through the control API by 4 threads.

Then `--rounds` rounds, the order of the two nodes alternating each round (the shared machine's load drifts by
several times within minutes: a figure of one node is only compared with the other's of the same round): with
the `probe` namespace's key, `--samples`/rounds sequential requests on one connection of each control call (list
the namespace's functions, describe one function, describe the namespace with its use against every quota, list
namespaces, the usage report) and, for the admin key, list namespaces (all of them: that answer grows with their
number by design) — then the gateway: `wrk -t1 -c4 --latency` on `/fn/probe/fn0` (a warm instance). It prints
p50/p99 per call and node (over all rounds' samples), the median over rounds of the ratio large ÷ small of the
p50 (1.00 = unchanged) with the rounds' range, and whether "unchanged" is met (median ratio ≤ `--tolerance`;
the p99 of a few hundred samples on a shared machine is noise-bound and shown, not judged), with the machine's
load average, and the CPU each idle node's event loop spends per second (background work that grows with the
number of functions shows there first).

    .venv/bin/python bench/namespaces.py                          # 1,000 × 10 (~10 min on 2 cores)
    .venv/bin/python bench/namespaces.py --namespaces 100 --duration 2    # quicker
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import (
    Http,
    PolyfnServer,
    fmt,
    main_thread_cpu,
    percentile,
    print_header,
    run_wrk,
    table,
    wait_idle,
)

HELLO = "def handler(event, context):\n    return 'Hello World!'\n"
PROBE = "probe"


def make_namespace(port: int, admin: str, name: str, functions: int) -> str:
    """Create namespace `name` with `functions` functions and a deploy key; the key."""
    api = Http(port, admin)
    try:
        api.json("POST", "/v1/namespaces", {"name": name})
        k = api.json("POST", "/v1/keys", {"scope": "deploy", "namespace": name})
        key = f"{k['access_key_id']}:{k['secret_access_key']}"
        for i in range(functions):
            status, _, body = api.request("PUT", f"/v1/functions/fn{i}", {"files": {"handler.py": HELLO}},
                                          headers={"X-Polyfn-Namespace": name})
            if status >= 300:
                raise RuntimeError(f"deploy {name}/fn{i}: {status} {body[:300]!r}")
        return key
    finally:
        api.close()


CALLS = {  # name → (path, key: "ns" or "admin")
    "list functions": ("/v1/functions", "ns"),
    "get function": ("/v1/functions/fn3", "ns"),
    "describe namespace": (f"/v1/namespaces/{PROBE}", "ns"),
    "list namespaces (ns key)": ("/v1/namespaces", "ns"),
    "usage report": ("/v1/usage", "ns"),
    "list namespaces (admin, all)": ("/v1/namespaces", "admin"),
}
ALL = "list namespaces (admin, all)"  # (answers every namespace: grows with their number by design)


def control(port: int, keys: dict[str, str], samples: int) -> dict[str, list[float]]:
    """Latencies (ms) of `samples` sequential requests of each call, after 3 to warm."""
    out = {}
    conns = {k: Http(port, v) for k, v in keys.items()}
    try:
        for call, (path, who) in CALLS.items():
            api = conns[who]
            for _ in range(3):
                api.json("GET", path)
            lat = []
            for _ in range(samples):
                t = time.perf_counter()
                api.json("GET", path)
                lat.append((time.perf_counter() - t) * 1000)
            out[call] = lat
    finally:
        for c in conns.values():
            c.close()
    return out


def idle_cpu(srv: PolyfnServer) -> float:
    """Share of a core the idle node's event loop (main thread) uses, over 5 s."""
    assert srv.proc is not None
    wait_idle(srv.proc.pid, timeout=60)
    cpu0 = main_thread_cpu(srv.proc.pid)
    time.sleep(5)
    return (main_thread_cpu(srv.proc.pid) - cpu0) / 5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--namespaces", type=int, default=1000, help="namespaces in the large node")
    ap.add_argument("--functions", type=int, default=10, help="functions per namespace")
    ap.add_argument("--samples", type=int, default=300, help="sequential requests per control call and node")
    ap.add_argument("--rounds", type=int, default=5, help="rounds, the nodes' order alternating")
    ap.add_argument("--duration", type=int, default=3, help="seconds of wrk on the gateway per round and node")
    ap.add_argument("--threads", type=int, default=4, help="threads creating namespaces")
    ap.add_argument("--tolerance", type=float, default=1.25,
                    help="'unchanged' means a median p50 ratio (and gateway req/s ratio inverted) at most this")
    args = ap.parse_args()
    print_header(f"namespaces: 1 × {args.functions} vs {args.namespaces} × {args.functions} functions, two nodes, "
                 f"{args.rounds} alternating rounds")
    with PolyfnServer(log_level="WARNING") as small, PolyfnServer(log_level="WARNING") as large:
        nodes = {"small": small, "large": large}
        keys = {n: {"admin": srv.key, "ns": make_namespace(srv.port, srv.key, PROBE, args.functions)}
                for n, srv in nodes.items()}
        t0 = time.monotonic()
        done = [1]
        lock = threading.Lock()

        def one(i: int) -> None:
            make_namespace(large.port, large.key, f"team-{i:04d}", args.functions)
            with lock:
                done[0] += 1
                if done[0] % 100 == 0:
                    print(f"  {done[0]} namespaces, {time.monotonic() - t0:.0f} s", flush=True)

        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(one, range(1, args.namespaces)))
        made = time.monotonic() - t0
        n_fn = (args.namespaces - 1) * args.functions
        print(f"made {args.namespaces - 1} namespaces and {n_fn} functions in {made:.0f} s "
              f"({n_fn / made:.0f} deploys/s)\n", flush=True)
        res: dict[str, Any] = {n: {"idle_cpu": idle_cpu(srv), "control": {c: [] for c in CALLS}, "gateway": []}
                               for n, srv in nodes.items()}
        ratios: dict[str, list[float]] = {c: [] for c in [*CALLS, GATEWAY]}
        loads = []
        per_round = max(10, args.samples // args.rounds)
        for rnd in range(args.rounds):
            loads.append(os.getloadavg()[0])
            order = ("small", "large") if rnd % 2 == 0 else ("large", "small")
            got: dict[str, dict[str, list[float]]] = {}
            for n in order:
                got[n] = control(nodes[n].port, keys[n], per_round)
            for call in CALLS:
                for n in order:
                    res[n]["control"][call] += got[n][call]
                ratios[call].append(percentile(got["large"][call], 50) / percentile(got["small"][call], 50))
            gw: dict[str, Any] = {}
            for n in order:
                url = nodes[n].url(f"/fn/{PROBE}/fn0")
                run_wrk(url, 4, 1)  # warm
                gw[n] = run_wrk(url, 4, args.duration)
                res[n]["gateway"].append(gw[n])
            ratios[GATEWAY].append(gw["small"].rps / gw["large"].rps)  # (inverted: > 1 is slower, as latency)
            print(f"  round {rnd + 1}: gateway {gw['small'].rps:,.0f} vs {gw['large'].rps:,.0f} req/s, "
                  f"get function p50 ratio {ratios['get function'][-1]:.2f} (load {loads[-1]:.1f})", flush=True)
        report(res, ratios, loads, args)  # (before the data dir of 10,000 functions is removed: that takes a while)


GATEWAY = f"gateway /fn/{PROBE}/fn0 (wrk -c4)"


def report(res: dict[str, Any], ratios: dict[str, list[float]], loads: list[float], args: argparse.Namespace) -> None:
    rows = []

    def verdict(call: str, ratio: float) -> str:
        if call == ALL:
            return "grows by design"
        return "met" if ratio <= args.tolerance else "NOT met"

    for call in [*CALLS, GATEWAY]:
        if call == GATEWAY:
            s50, s99 = (statistics.median(r.p50_ms for r in res["small"]["gateway"]),
                        statistics.median(r.p99_ms for r in res["small"]["gateway"]))
            l50, l99 = (statistics.median(r.p50_ms for r in res["large"]["gateway"]),
                        statistics.median(r.p99_ms for r in res["large"]["gateway"]))
        else:
            s, lg = res["small"]["control"][call], res["large"]["control"][call]
            s50, s99, l50, l99 = percentile(s, 50), percentile(s, 99), percentile(lg, 50), percentile(lg, 99)
        r = sorted(ratios[call])
        med = statistics.median(r)
        rows.append([call, fmt(s50), fmt(s99), fmt(l50), fmt(l99), fmt(med), f"{fmt(r[0])} … {fmt(r[-1])}",
                     verdict(call, med)])
    print()
    print(table(["call", "1 ns p50 ms", "p99", f"{args.namespaces} ns p50 ms", "p99",
                 "ratio (median of rounds)", "rounds' range", f"unchanged (≤ {args.tolerance:g}×)"], rows))
    srps = statistics.median(r.rps for r in res["small"]["gateway"])
    lrps = statistics.median(r.rps for r in res["large"]["gateway"])
    print(f"\ngateway req/s (median of rounds): {srps:,.0f} (1 ns) vs {lrps:,.0f} ({args.namespaces} ns); its ratio "
          "row is 1 ns ÷ 1,000 ns req/s per round (> 1: slower with more namespaces)")
    print(f"idle node, event loop CPU: {res['small']['idle_cpu']:.1%} (1 ns) vs {res['large']['idle_cpu']:.1%} "
          f"({args.namespaces} ns) of a core")
    print(f"load average (1 min) at each round: {', '.join(f'{x:.1f}' for x in loads)}")
    print("('list namespaces (admin, all)' answers every namespace: it grows with their number by design)",
          flush=True)


if __name__ == "__main__":
    main()
