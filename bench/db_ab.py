"""A/B of the DynamoDB API between two source trees: server CPU per operation and ops/s, same run.

On a busy machine the figures of `bench/db.py` move by tens of percent between runs. This starts one node per
variant at once (each its own data dir and table, set up as `bench/db.py` does), then measures them in
alternating bursts of `wrk` (one thread, 32 connections, requests presigned with botocore's SigV4 as in
`bench/db.py --client wrk`), the order swapped every round, and prints per variant the median and best server
CPU per operation (the node's process tree, user + system, and the system share) and the median and best ops/s.
`--client boto3` drives each burst with boto3 instead, as `bench/db.py --client boto3` does (`--procs` processes
× `--threads` clients, the idle server's background subtracted): the load under which the node is woken for one
or two requests at a time, so its fixed costs per request and per commit show.

A variant is a source directory put first on PYTHONPATH for its node:

    mkdir /tmp/base && git archive main src | tar -x -C /tmp/base   # the version to compare against
    .venv/bin/python bench/db_ab.py /tmp/base/src src
    .venv/bin/python bench/db_ab.py /tmp/base/src src --ops GetItem,PutItem --rounds 6 --seconds 3
    .venv/bin/python bench/db_ab.py /tmp/base/src src --client boto3 --ops PutItem,UpdateItem+cond --rounds 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from _common import PolyfnServer, run_wrk, tree_cpu_seconds

from db import OPS, client, load, presigned_script, setup


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="source directory of variant A (e.g. the base's src)")
    ap.add_argument("b", help="source directory of variant B")
    ap.add_argument("--ops", default="GetItem,PutItem,UpdateItem+cond,TransactWrite4")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--client", choices=("wrk", "boto3"), default="wrk")
    ap.add_argument("--procs", type=int, default=4, help="boto3: load-generator processes")
    ap.add_argument("--threads", type=int, default=8, help="boto3: clients per process")
    args = ap.parse_args()
    ops = args.ops.split(",")
    assert all(op in OPS for op in ops), f"--ops: from {', '.join(OPS)}"
    variants = {"A": str(Path(args.a).resolve()), "B": str(Path(args.b).resolve())}
    with tempfile.TemporaryDirectory() as tmp, \
            PolyfnServer(log_level="WARNING", env={"PYTHONPATH": variants["A"]}) as sa, \
            PolyfnServer(log_level="WARNING", env={"PYTHONPATH": variants["B"]}) as sb:
        servers = {"A": sa, "B": sb}
        scripts = {}
        for name, srv in servers.items():
            setup(client(srv.url(""), "polyfn-admin", srv.key), "bench")
            for op in ops if args.client == "wrk" else ():
                scripts[name, op] = Path(tmp) / f"{name}-{op}.lua"
                presigned_script(srv.url(""), "polyfn-admin", srv.key, "bench", op, 2000, scripts[name, op])
        got: dict[tuple[str, str], list[tuple[float, float, float, int]]] = {}
        for r in range(args.rounds):
            for op in ops:
                for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                    srv = servers[name]
                    assert srv.proc is not None
                    if args.client == "boto3":
                        u0, s0 = cpu_times(srv.proc.pid)
                        b = load(srv.url(""), "polyfn-admin", srv.key, "bench", op, args.procs, args.threads,
                                 args.seconds, srv.proc.pid)
                        u1, s1 = cpu_times(srv.proc.pid)
                        got.setdefault((name, op), []).append((
                            b["server_cpu"] / max(b["ops"], 1) * 1e6, b["ops_s"],
                            (s1 - s0) / max(u1 - u0 + s1 - s0, 1e-9), int(b["errors"])))
                        continue
                    cpu0, (u0, s0) = tree_cpu_seconds(srv.proc.pid), cpu_times(srv.proc.pid)
                    w = run_wrk(srv.url("/"), args.connections, args.seconds, threads=1,
                                script=str(scripts[name, op]))
                    cpu, (u1, s1) = tree_cpu_seconds(srv.proc.pid) - cpu0, cpu_times(srv.proc.pid)
                    system = (s1 - s0) / max(u1 - u0 + s1 - s0, 1e-9)
                    got.setdefault((name, op), []).append((cpu / max(w.requests, 1) * 1e6, w.rps, system,
                                                           w.non_2xx + w.socket_errors))
        print(f"A = {variants['A']}\nB = {variants['B']}\nclient: {args.client}, load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
        print(f"{'operation':16} {'':2} {'CPU/op median':>14} {'best':>7} {'system':>7} {'ops/s median':>13} "
              f"{'best':>7} {'errors':>7}")
        for op in ops:
            for name in ("A", "B"):
                v = got[name, op]
                print(f"{op:16} {name:2} {statistics.median(x[0] for x in v):11.0f} µs {min(x[0] for x in v):4.0f} µs "
                      f"{statistics.median(x[2] for x in v):6.0%} {statistics.median(x[1] for x in v):13,.0f} "
                      f"{max(x[1] for x in v):7,.0f} {sum(x[3] for x in v):7}")


if __name__ == "__main__":
    main()
