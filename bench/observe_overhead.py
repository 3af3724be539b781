"""What observability costs on the warm path: metrics + log capture vs. a node with metrics off.

Two polyfn nodes in the same run: one with `POLYFN_METRICS=false` (the baseline: no per-invocation
counting) and one as shipped. Each serves `silent` (returns 'Hello World!') and `chatty` (the same after
printing one log line per call). wrk measures, in rounds so drift hits every case alike:

    baseline   metrics off, silent function
    metrics    metrics on, silent function
    logging    metrics on, one log line per call
    scraped    metrics on, one log line per call, GET /metrics every second during the run

and prints the median req/s of each and its cost relative to the baseline (the issue's budget: ≤ 5 %).

    .venv/bin/python bench/observe_overhead.py                 # 3 rounds × 5 s × 4 cases (~1.5 min)
    .venv/bin/python bench/observe_overhead.py --rounds 1 --duration 2
"""

from __future__ import annotations

import argparse
import statistics
import threading
import urllib.request

from _common import PolyfnServer, fmt, print_header, run_wrk, table, wait_idle

SILENT = "def handler(event, context):\n    return 'Hello World!'\n"
CHATTY = "def handler(event, context):\n    print('handled', event.path)\n    return 'Hello World!'\n"


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=int, default=5, help="seconds per measured wrk run")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print_header(f"observability overhead (warm, wrk -t1 -c{args.connections} -d{args.duration}s, "
                 f"{args.rounds} rounds)")

    import os

    os.environ["POLYFN_METRICS"] = "false"
    base = PolyfnServer(log_level="WARNING").__enter__()
    os.environ.pop("POLYFN_METRICS")
    node = PolyfnServer(log_level="WARNING").__enter__()
    try:
        for srv in (base, node):
            srv.deploy("silent", {"handler.py": SILENT})
            srv.deploy("chatty", {"handler.py": CHATTY})
        cases = {
            "baseline": (base, "silent", False),
            "metrics": (node, "silent", False),
            "logging": (node, "chatty", False),
            "scraped": (node, "chatty", True),
        }
        results: dict[str, list[float]] = {k: [] for k in cases}
        for srv, name, _ in cases.values():  # warm every instance and code path once
            run_wrk(srv.url(f"/fn/{name}"), args.connections, 1)
        for rnd in range(args.rounds):
            for case, (srv, name, scrape) in cases.items():
                assert srv.proc is not None
                wait_idle(srv.proc.pid)
                if scrape:
                    with Scraper(srv.url("/metrics")) as sc:
                        r = run_wrk(srv.url(f"/fn/{name}"), args.connections, args.duration)
                    assert sc.count >= args.duration - 1, "the scraper did not keep up"
                else:
                    r = run_wrk(srv.url(f"/fn/{name}"), args.connections, args.duration)
                if r.non_2xx or r.socket_errors:
                    raise SystemExit(f"{case}: {r.non_2xx} non-2xx, {r.socket_errors} socket errors")
                results[case].append(r.rps)
                print(f"  round {rnd + 1} {case:9s} {r.rps:9.0f} req/s  p99 {r.p99_ms:.2f} ms", flush=True)
        ref = statistics.median(results["baseline"])
        rows = []
        for case, values in results.items():
            med = statistics.median(values)
            rows.append([case, fmt(med, 0), "-" if case == "baseline" else f"{(1 - med / ref) * 100:+.1f} %"])
        print()
        print(table(["case", "median req/s", "cost vs baseline"], rows))
    finally:
        node.__exit__(None, None, None)
        base.__exit__(None, None, None)


if __name__ == "__main__":
    main()
