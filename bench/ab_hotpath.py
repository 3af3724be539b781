"""A/B of the warm hot path between two source trees (or settings): event-loop CPU per request, same run.

The server's event-loop thread bounds warm throughput on this machine, and req/s of single runs moves by
±10 %: comparing two versions in separate runs hides changes of a few percent. This starts one node per
variant at once and measures them in alternating rounds (wrk -t1 -c32), reporting each variant's median
req/s and the median CPU time of the server's main thread per request (read from /proc: user + system).

A variant is a source directory put first on PYTHONPATH (the server and its zygotes import polyfn from
it), optionally followed by `|NAME=VALUE` environment settings:

    git worktree add /tmp/base HEAD            # the version to compare against
    .venv/bin/python bench/ab_hotpath.py /tmp/base/src src
    .venv/bin/python bench/ab_hotpath.py src "src|POLYFN_METRICS=false" --function chatty --rounds 7
    .venv/bin/python bench/ab_hotpath.py /tmp/base/src src --function async-c32   # bench/ceiling.py's shape

Besides the main thread it prints the CPU of the server's whole process tree per request (instances, the
activation writer's thread): on 2 cores what an instance spends per call is taken from the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

from _common import PolyfnServer, main_thread_cpu, run_wrk, tree_cpu_seconds

#: how much more CPU per request B may use than A and still count as not slower (same-run medians move by a
#: few percent on a busy machine)
NOISE = 0.03

FUNCTIONS = {
    "silent": "def handler(event, context):\n    return 'Hello World!'\n",
    "chatty": "def handler(event, context):\n    print('handled', event.path)\n    return 'Hello World!'\n",
    # bench/ceiling.py's probe shape: one instance taking many calls at once
    "async-c32": "async def handler(event, context):\n    return 'Hello World!'\n",
    "sync-c32": "def handler(event, context):\n    return 'Hello World!'\n",
}
SPECS = {"async-c32": {"concurrency": 32, "max_instances": 2}, "sync-c32": {"concurrency": 32, "max_instances": 2}}


def variant_env(spec: str) -> dict[str, str]:
    path, *settings = spec.split("|")
    return {"PYTHONPATH": str(Path(path).resolve()), **dict(s.split("=", 1) for s in settings)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="variant A: source dir[|NAME=VALUE...]")
    ap.add_argument("b", help="variant B: source dir[|NAME=VALUE...]")
    ap.add_argument("--function", choices=sorted(FUNCTIONS), default="silent")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    variants = {"A": args.a, "B": args.b}
    results: dict[str, list[tuple[float, float, float]]] = {"A": [], "B": []}
    with contextlib.ExitStack() as stack:
        servers = {}
        for key, spec in variants.items():
            server = stack.enter_context(PolyfnServer(log_level="WARNING", env=variant_env(spec)))
            server.deploy(args.function, {"handler.py": FUNCTIONS[args.function]}, **SPECS.get(args.function, {}))
            run_wrk(server.url(f"/fn/{args.function}"), args.connections, 1)  # warm-up
            servers[key] = server
        for i in range(args.rounds):
            for key in ("A", "B") if i % 2 == 0 else ("B", "A"):
                server = servers[key]
                assert server.proc is not None
                time.sleep(1.0)  # let the previous run's activation batches land
                before, tree = main_thread_cpu(server.proc.pid), tree_cpu_seconds(server.proc.pid)
                res = run_wrk(server.url(f"/fn/{args.function}"), args.connections, args.duration)
                used = main_thread_cpu(server.proc.pid) - before
                n = max(res.requests, 1)
                results[key].append((res.rps, used / n * 1e6, (tree_cpu_seconds(server.proc.pid) - tree) / n * 1e6))
    for key in ("A", "B"):
        rps = [r[0] for r in results[key]]
        cpu = [r[1] for r in results[key]]
        print(f"{key} {variants[key]}: req/s {[round(r) for r in rps]} median {statistics.median(rps):,.0f} | "
              f"main thread µs/req {[round(c, 1) for c in cpu]} median {statistics.median(cpu):.1f} | "
              f"tree µs/req median {statistics.median(r[2] for r in results[key]):.1f}")
    a, b = (statistics.median(r[1] for r in results[k]) for k in ("A", "B"))
    ta, tb = (statistics.median(r[2] for r in results[k]) for k in ("A", "B"))
    print(f"tree µs/req B/A = {tb / ta:.3f}")
    print(f"B not slower than A (main thread µs/req within {NOISE:.0%}): B/A = {b / a:.3f}: "
          f"{'met' if b <= a * (1 + NOISE) else 'NOT met'}")


if __name__ == "__main__":
    main()
