"""Async invocations, two versions of polyfn side by side: the same load on both at the same moment.

On a machine shared with other work, two runs made one after the other see different neighbours; the figures of
`bench/async.py` then move by more than a change is worth. This starts two `polyfn serve` processes, this
checkout's and another source tree's (`--old SRC`, e.g. an export of main: `git archive main src | tar -x -C
DIR`, then `--old DIR/src`), deploys the same function on both (4 instances, concurrency 1, as bench/async.py)
and, each round, drives both at once with their own `wrk` (C connections, D seconds of async invocations) and
waits until both queues are empty. Per version and round: jobs accepted, end to end/s (accepted / time until
its queue is empty), and CPU ms per job of the server process, of its main (event-loop) thread, and of the
function's instances, from /proc. Rounds alternate which wrk starts first; the medians are printed last.

    .venv/bin/python bench/async_ab.py --old /tmp/base/src
    .venv/bin/python bench/async_ab.py --old /tmp/base/src --queue-url nats://127.0.0.1:4222 -r 4 -d 5
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import _common as common

_spec = importlib.util.spec_from_file_location("bench_async", Path(__file__).with_name("async.py"))
assert _spec is not None and _spec.loader is not None
bench_async = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_async)

FIELDS = ("accepted/s", "end to end/s", "server ms/job", "main thread ms/job", "instances ms/job")


def cpu(s: common.PolyfnServer) -> tuple[float, float, float]:
    """CPU seconds so far of the server process, of its main thread, and of it with its descendants."""
    pid = s.proc.pid  # type: ignore[union-attr]
    return common.cpu_seconds(pid), common.main_thread_cpu(pid), common.tree_cpu_seconds(pid)


def one_round(servers: dict[str, common.PolyfnServer], script: str, conns: int, duration: int,
              order: list[str]) -> dict[str, dict[str, float]]:
    before = {k: cpu(s) for k, s in servers.items()}
    out: dict[str, tuple[int, float, float]] = {}

    def drive(k: str) -> None:
        s = servers[k]
        t0 = time.perf_counter()
        res = common.run_wrk(s.url("/fn/hello"), conns, duration, script=script)
        bench_async.drain(s)
        out[k] = (res.requests, res.rps, time.perf_counter() - t0)

    threads = [threading.Thread(target=drive, args=(k,)) for k in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = {}
    for k, s in servers.items():
        pid = s.proc.pid  # type: ignore[union-attr]
        common.wait_idle(pid)
        server, main, tree = cpu(s)
        n, rps, took = out[k]
        s0, m0, t0 = before[k]
        rows[k] = {"accepted/s": rps, "end to end/s": n / took, "server ms/job": (server - s0) / n * 1000,
                   "main thread ms/job": (main - m0) / n * 1000,
                   "instances ms/job": ((tree - t0) - (server - s0)) / n * 1000}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, help="the other version's source tree (its `src` directory)")
    ap.add_argument("-c", type=int, default=64, help="wrk connections per version (default 64)")
    ap.add_argument("-d", type=int, default=5, help="seconds of wrk per round (default 5)")
    ap.add_argument("-r", type=int, default=4, help="rounds (default 4)")
    ap.add_argument("--queue-url", default="", help="nats://…: the cluster's queue (a JetStream stream per version)")
    args = ap.parse_args()
    common.wrk_path()
    envs: dict[str, dict[str, str]] = {"new": {}, "old": {"PYTHONPATH": str(Path(args.old).resolve())}}
    if args.queue_url:
        for env in envs.values():
            env.update({"POLYFN_QUEUE_URL": args.queue_url, "POLYFN_QUEUE_STREAM": f"AB_{secrets.token_hex(4).upper()}"})
    common.print_header(f"polyfn async invocations, this checkout against {args.old} side by side "
                 f"({'NATS JetStream' if args.queue_url else 'SQLite queue'})")
    results: dict[str, list[dict[str, float]]] = {"new": [], "old": []}
    loads: list[float] = []
    try:
        with common.temp_dir("polyfn-bench-async-ab-") as tmp, \
                common.PolyfnServer(log_level="WARNING", env=envs["new"]) as new, \
                common.PolyfnServer(log_level="WARNING", env=envs["old"]) as old:
            script = tmp / "async.lua"
            script.write_text("wrk.method = 'POST'\nwrk.body = '{\"x\": 1}'\nwrk.headers['X-Polyfn-Async'] = 'true'\n")
            servers = {"new": new, "old": old}
            for s in servers.values():
                s.deploy("hello", {"handler.py": common.HELLO_NATIVE}, concurrency=1, max_instances=4, min_instances=2)
                common.run_wrk(s.url("/fn/hello"), args.c, 2, script=str(script))  # warm-up
                bench_async.drain(s)
            for r in range(args.r):
                for s in servers.values():
                    common.wait_idle(s.proc.pid)  # type: ignore[union-attr]
                loads.append(os.getloadavg()[0])
                rows = one_round(servers, str(script), args.c, args.d, ["new", "old"] if r % 2 == 0 else ["old", "new"])
                for k, row in rows.items():
                    results[k].append(row)
                    print(f"round {r + 1} {k}: " + ", ".join(f"{f} {v:.3f}" if v < 10 else f"{f} {v:,.0f}"
                                                              for f, v in row.items()), flush=True)
    finally:
        if args.queue_url:
            for env in envs.values():
                bench_async.delete_stream(args.queue_url, env["POLYFN_QUEUE_STREAM"])
    med = {k: {f: statistics.median(row[f] for row in rows) for f in FIELDS} for k, rows in results.items()}

    def cell(f: str, v: float) -> str:
        return f"{v:,.0f}" if f.endswith("/s") else f"{v:.3f}"

    lines: list[list[Any]] = [[k, *(cell(f, med[k][f]) for f in FIELDS)] for k in ("new", "old")]
    lines.append(["new / old", *(f"{med['new'][f] / med['old'][f]:.2f}" for f in FIELDS)])
    print()
    print(common.table(["median of rounds", *FIELDS], lines))
    print(f"\n{args.r} rounds, wrk -t1 -c{args.c} -d{args.d}s on each version at once; load average "
          f"{min(loads):.1f}–{max(loads):.1f} at the rounds' starts; per core (this checkout): "
          f"{1000 / med['new']['server ms/job']:,.0f} jobs/s of the node's own CPU, "
          f"{1000 / (med['new']['server ms/job'] + med['new']['instances ms/job']):,.0f} with its instances'")


if __name__ == "__main__":
    main()
