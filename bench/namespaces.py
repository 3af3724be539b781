"""Does a node with 1,000 namespaces answer as fast as a node with one? (issue #23: "unchanged")

One polyfn node, two phases in the same run:

1. `small`: one namespace (`probe`) with 10 functions (and a key of its own);
2. `large`: then 999 more namespaces, 10 functions and a key each (1,000 × 10 = 10,000 functions), made
   through the control API by 4 threads.

In each phase, with the `probe` namespace's key, `--samples` sequential requests on one connection of each control
call (list the namespace's functions, describe one function, describe the namespace with its use against
every quota, list namespaces, the usage report) and, for the admin key, list namespaces (all of them: that
answer grows with their number by design) — then the gateway: `wrk -t1 -c4 --latency` on
`/fn/probe/fn0` (a warm instance). It prints p50/p99 per call and phase and the ratio large ÷ small
(1.00 = unchanged) and whether "unchanged" is met (p50 ratio ≤ `--tolerance`; the p99 of a few hundred samples
on a shared machine is noise-bound and shown, not judged), with the machine's load average before each phase, and the CPU the idle node's event loop
spends per second in each phase (background work that grows with the number of functions shows there first).

    .venv/bin/python bench/namespaces.py                          # 1,000 × 10 (~5-10 min on 2 cores)
    .venv/bin/python bench/namespaces.py --namespaces 100 --duration 3    # quicker
"""

from __future__ import annotations

import argparse
import os
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


def control(port: int, keys: dict[str, str], samples: int) -> dict[str, tuple[float, float]]:
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
            out[call] = (percentile(lat, 50), percentile(lat, 99))
    finally:
        for c in conns.values():
            c.close()
    return out


def gateway(srv: PolyfnServer, duration: int) -> tuple[float, float, float]:
    url = srv.url(f"/fn/{PROBE}/fn0")
    run_wrk(url, 4, 1)  # warm
    r = run_wrk(url, 4, duration)
    return r.p50_ms, r.p99_ms, r.rps


def measure(srv: PolyfnServer, keys: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    assert srv.proc is not None
    wait_idle(srv.proc.pid, timeout=60)
    load = os.getloadavg()[0]
    cpu0 = main_thread_cpu(srv.proc.pid)
    time.sleep(5)
    idle = (main_thread_cpu(srv.proc.pid) - cpu0) / 5
    res: dict[str, Any] = {"load": load, "idle_cpu": idle, "control": control(srv.port, keys, args.samples)}
    res["gateway"] = gateway(srv, args.duration)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--namespaces", type=int, default=1000, help="namespaces in the large phase")
    ap.add_argument("--functions", type=int, default=10, help="functions per namespace")
    ap.add_argument("--samples", type=int, default=300, help="sequential requests per control call")
    ap.add_argument("--duration", type=int, default=5, help="seconds of wrk on the gateway")
    ap.add_argument("--threads", type=int, default=4, help="threads creating namespaces")
    ap.add_argument("--tolerance", type=float, default=1.25,
                    help="'unchanged' means a p50 ratio (and gateway req/s ratio inverted) at most this")
    args = ap.parse_args()
    print_header(f"namespaces: 1 × {args.functions} vs {args.namespaces} × {args.functions} functions, one node")
    with PolyfnServer(log_level="WARNING") as srv:
        keys = {"admin": srv.key, "ns": make_namespace(srv.port, srv.key, PROBE, args.functions)}
        small = measure(srv, keys, args)
        t0 = time.monotonic()
        done = [1]
        lock = threading.Lock()

        def one(i: int) -> None:
            make_namespace(srv.port, srv.key, f"team-{i:04d}", args.functions)
            with lock:
                done[0] += 1
                if done[0] % 100 == 0:
                    print(f"  {done[0]} namespaces, {time.monotonic() - t0:.0f} s", flush=True)

        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(one, range(1, args.namespaces)))
        made = time.monotonic() - t0
        n_fn = (args.namespaces - 1) * args.functions
        print(f"made {args.namespaces - 1} namespaces and {n_fn} functions in {made:.0f} s "
              f"({n_fn / made:.0f} deploys/s)\n")
        large = measure(srv, keys, args)
        report(small, large, args)  # (before the data dir of 10,000 functions is removed: that takes a while)


def report(small: dict[str, Any], large: dict[str, Any], args: argparse.Namespace) -> None:
    rows = []

    def verdict(call: str, ratio: float) -> str:
        if call == ALL:
            return "grows by design"
        return "met" if ratio <= args.tolerance else "NOT met"

    for call in CALLS:
        s50, s99 = small["control"][call]
        l50, l99 = large["control"][call]
        rows.append([call, fmt(s50), fmt(s99), fmt(l50), fmt(l99), fmt(l50 / s50), fmt(l99 / s99),
                     verdict(call, l50 / s50)])
    s50, s99, srps = small["gateway"]
    l50, l99, lrps = large["gateway"]
    rows.append([f"gateway /fn/{PROBE}/fn0 (wrk -c4)", fmt(s50), fmt(s99), fmt(l50), fmt(l99), fmt(l50 / s50),
                 fmt(l99 / s99), verdict("gateway", max(l50 / s50, srps / lrps))])
    print(table(["call", "1 ns p50 ms", "p99", f"{args.namespaces} ns p50 ms", "p99", "ratio p50", "ratio p99",
                 f"unchanged (p50 ≤ {args.tolerance:g}×)"], rows))
    print(f"\ngateway req/s: {srps:,.0f} (1 ns) vs {lrps:,.0f} ({args.namespaces} ns), ratio {lrps / srps:.2f}")
    print(f"idle node, event loop CPU: {small['idle_cpu']:.1%} (1 ns) vs {large['idle_cpu']:.1%} "
          f"({args.namespaces} ns) of a core")
    print(f"load average (1 min) before each phase: {small['load']:.2f} / {large['load']:.2f}")
    print("('list namespaces (admin, all)' answers every namespace: it grows with their number by design)",
          flush=True)


if __name__ == "__main__":
    main()
