"""Where one log line per call goes: CPU per request of each part of one node, silent vs. chatty function.

`observe_overhead.py` says what observability costs; this says who pays. One polyfn node serves its
function `probe` (returns 'Hello World!', after printing one log line when the path is `/log`): wrk drives
`silent` (/fn/probe/quiet) and `chatty` (/fn/probe/log) in turn, the order alternating every round, and the
CPU time of the node is split into

    server loop     the server's main thread (event loop: HTTP, scheduling, decoding results, metrics)
    server other    the server's other threads (the SQLite activation writer, aiosqlite, helpers)
    runtimes        zygotes and instances (the function's own process: the print capture is here)

each per request, summed over the rounds. Both cases run on the same instances, metrics on as shipped, so
the difference is the log line alone. On a small shared machine each part moves by a few µs from run to
run: take the differences from a run of 8+ rounds, and an A/A run (`--aa`: nothing prints) shows
the noise floor.

    .venv/bin/python bench/observe_breakdown.py                 # 8 rounds x 3 s x 2 functions (~1.5 min)
    .venv/bin/python bench/observe_breakdown.py --aa --rounds 4
"""

from __future__ import annotations

import argparse
import collections
import os
from pathlib import Path

from _common import PolyfnServer, descendants, print_header, run_wrk, table, wait_idle
from observe_overhead import PROBE

TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_part(root: int) -> collections.Counter[str]:
    """CPU seconds so far of the server's main thread, its other threads, and its descendants."""
    acc: collections.Counter[str] = collections.Counter()
    for pid in descendants(root):
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            part = "runtimes" if pid != root else "server loop" if int(task.name) == pid else "server other"
            acc[part] += (int(fields[11]) + int(fields[12])) / TICK
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--aa", action="store_true", help="both functions silent: the noise floor of the method")
    args = ap.parse_args()
    print_header(f"log line cost breakdown (wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds"
                 f"{', A/A' if args.aa else ''})")
    fns = {"silent": "/quiet", "chatty": "/quiet2" if args.aa else "/log"}
    with PolyfnServer(log_level="WARNING") as srv:
        assert srv.proc is not None
        srv.deploy("probe", {"handler.py": PROBE})
        for path in fns.values():
            run_wrk(srv.url(f"/fn/probe{path}"), args.connections, 1)  # warm: instances, code paths
        cpu = {name: collections.Counter() for name in fns}
        requests = collections.Counter()
        for rnd in range(args.rounds):
            for name in (list(fns) if rnd % 2 == 0 else list(fns)[::-1]):
                wait_idle(srv.proc.pid)
                before = cpu_by_part(srv.proc.pid)
                r = run_wrk(srv.url(f"/fn/probe{fns[name]}"), args.connections, args.duration)
                wait_idle(srv.proc.pid)  # the batched activation writes are paid by the run that caused them
                after = cpu_by_part(srv.proc.pid)
                after.subtract(before)
                cpu[name].update(after)
                requests[name] += r.requests
                print(f"  round {rnd + 1} {name:7s} {r.rps:9.0f} req/s", flush=True)
    rows = []
    for part in ("server loop", "server other", "runtimes", "total"):
        per = {name: (sum(c.values()) if part == "total" else c[part]) / requests[name] * 1e6
               for name, c in cpu.items()}
        diff = per["chatty"] - per["silent"]
        rows.append([part, f"{per['silent']:.1f}", f"{per['chatty']:.1f}", f"{diff:+.1f}",
                     f"{diff / per['silent'] * 100:+.1f} %"])
    print()
    print(table(["part", "silent µs/req", "chatty µs/req", "difference", "relative"], rows))


if __name__ == "__main__":
    main()
