"""What observability costs on the warm path: metrics + log capture vs. a node with metrics off.

Two polyfn nodes in the same run: one with `POLYFN_METRICS=false` (the baseline: no per-invocation
counting) and one as shipped. Each serves `silent` (returns 'Hello World!') and `chatty` (the same after
printing one log line per call). wrk measures, in rounds (the order rotates each round) so drift hits
every case alike:

    baseline          metrics off, silent function
    metrics           metrics on, silent function
    logging           metrics on, one log line per call
    scraped           metrics on, silent function, GET /metrics every second during the run
    logging+scraped   metrics on, one log line per call, GET /metrics every second

and prints each case's median req/s and its cost relative to the baseline of the same round (the issue's
budget: <= 5 %), plus the CPU time of the server's whole process tree per request (server, zygote,
instances; measured until the server is idle again, so the batched activation writes are included). On a
shared machine the CPU figure is the steadier one: other work slows req/s but barely changes CPU/req.

    .venv/bin/python bench/observe_overhead.py                 # 5 rounds x 5 s x 5 cases (~4 min)
    .venv/bin/python bench/observe_overhead.py --rounds 7 --cases logging scraped
    .venv/bin/python bench/observe_overhead.py --rounds 1 --duration 2
"""

from __future__ import annotations

import argparse
import statistics
import threading
import urllib.request

from _common import (
    PolyfnServer,
    WrkResult,
    fmt,
    machine_busy,
    print_header,
    run_wrk,
    table,
    tree_cpu_seconds,
    wait_idle,
)

SILENT = "def handler(event, context):\n    return 'Hello World!'\n"
CHATTY = "def handler(event, context):\n    print('handled', event.path)\n    return 'Hello World!'\n"

#: case → (server: "base" has POLYFN_METRICS=false, "node" is as shipped; function; scrape /metrics every 1 s)
CASES = {
    "baseline": ("base", "silent", False),
    "metrics": ("node", "silent", False),
    "logging": ("node", "chatty", False),
    "scraped": ("node", "silent", True),
    "logging+scraped": ("node", "chatty", True),
}


class Scraper:
    """GET /metrics every `interval` seconds until stopped (what a Prometheus server does)."""

    def __init__(self, url: str, interval: float = 1.0):
        self.url = url
        self.interval = interval
        self.count = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with urllib.request.urlopen(self.url, timeout=10) as r:
                r.read()
            self.count += 1

    def __enter__(self) -> Scraper:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def measure(srv: PolyfnServer, name: str, connections: int, duration: int, scrape: bool) -> WrkResult:
    """One wrk run; CPU µs/req covers the server's whole process tree from the start of the run until it is
    idle again (so the batched activation writes after the load are paid by the run that caused them)."""
    assert srv.proc is not None
    wait_idle(srv.proc.pid)
    cpu0 = tree_cpu_seconds(srv.proc.pid)
    if scrape:
        with Scraper(srv.url("/metrics")) as sc:
            r = run_wrk(srv.url(f"/fn/{name}"), connections, duration)
        assert sc.count >= duration - 1, "the scraper did not keep up"
    else:
        r = run_wrk(srv.url(f"/fn/{name}"), connections, duration)
    wait_idle(srv.proc.pid)
    r.cpu_us_per_req = (tree_cpu_seconds(srv.proc.pid) - cpu0) / max(r.requests, 1) * 1e6
    if r.non_2xx or r.socket_errors:
        raise SystemExit(f"{name}: {r.non_2xx} non-2xx, {r.socket_errors} socket errors")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=int, default=5, help="seconds per measured wrk run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES),
                    help="cases to run (the baseline always runs)")
    args = ap.parse_args()
    print_header(f"observability overhead (warm, wrk -t1 -c{args.connections} -d{args.duration}s, "
                 f"{args.rounds} rounds)")
    cases = {k: v for k, v in CASES.items() if k == "baseline" or k in args.cases}
    base = PolyfnServer(log_level="WARNING", env={"POLYFN_METRICS": "false"}).__enter__()
    node = PolyfnServer(log_level="WARNING").__enter__()
    servers = {"base": base, "node": node}
    try:
        for srv in servers.values():
            srv.deploy("silent", {"handler.py": SILENT})
            srv.deploy("chatty", {"handler.py": CHATTY})
        rps: dict[str, list[float]] = {k: [] for k in cases}
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        for srv_name, fn, _ in cases.values():  # warm every instance and code path once
            run_wrk(servers[srv_name].url(f"/fn/{fn}"), args.connections, 1)
        order = list(cases)
        for rnd in range(args.rounds):
            # rotate the order each round so no case always runs right after the same neighbour
            for case in order[rnd % len(order):] + order[: rnd % len(order)]:
                srv_name, fn, scrape = cases[case]
                r = measure(servers[srv_name], fn, args.connections, args.duration, scrape)
                rps[case].append(r.rps)
                cpu[case].append(r.cpu_us_per_req)
                print(f"  round {rnd + 1} {case:16s} {r.rps:9.0f} req/s  {r.cpu_us_per_req:6.1f} CPU µs/req  "
                      f"p99 {r.p99_ms:.2f} ms  (machine {machine_busy(0.2):.0%} busy after)", flush=True)
        ref_rps = statistics.median(rps["baseline"])
        ref_cpu = statistics.median(cpu["baseline"])
        rows = []
        for case in cases:
            med, mcpu = statistics.median(rps[case]), statistics.median(cpu[case])
            # per-round ratio against the baseline of the same round, then the median of those ratios
            costs = sorted((1 - c / b) * 100 for c, b in zip(rps[case], rps["baseline"], strict=True))
            spread = "-" if case == "baseline" else f"{costs[0]:+.1f} … {costs[-1]:+.1f} %"
            rows.append([case, fmt(med, 0), "-" if case == "baseline" else f"{statistics.median(costs):+.1f} %",
                         spread, f"{mcpu:.1f}",
                         "-" if case == "baseline" else f"{(mcpu / ref_cpu - 1) * 100:+.1f} %"])
        print()
        print(table(["case", "median req/s", "throughput cost", "rounds' range", "CPU µs/req", "CPU cost"], rows))
        print(f"\nthroughput cost: median over rounds of (1 - case/baseline of the same round), and the range of "
              f"those per-round costs (the run's noise); baseline median {ref_rps:.0f} req/s. CPU: the servers' "
              f"whole process trees per request.")
    finally:
        node.__exit__(None, None, None)
        base.__exit__(None, None, None)


if __name__ == "__main__":
    main()
