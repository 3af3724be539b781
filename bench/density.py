"""Density: deploy N functions (default 1,000), invoke each once, and measure what the node then holds:
the server's RSS, the total PSS of the N idle warm instances (PSS shares copy-on-write pages fairly
between the processes mapping them, so the sum is the instances' real footprint; an instance is its whole
process tree: with the pid namespace, the outer process, the namespace's init and the worker), PSS per
instance, and the PSS of the zygote, its pre-forked blanks and the function zygotes. Target (issue 24):
≤ 5 MB PSS per idle sandboxed Python instance; the script prints met / NOT met.

Each function gets `memory: 32` (the minimum) so N instances fit the node's memory budget; the budget is
a promise (each instance may grow to its limit), PSS is what is used. PSS comes from
/proc/PID/smaps_rollup, read by the server (`GET /v1/functions/NAME/instances`), so run this as the
user that runs the server.

    .venv/bin/python bench/density.py            # 1,000 functions
    .venv/bin/python bench/density.py --quick    # 100 functions
    .venv/bin/python bench/density.py --quick --python-helpers   # the pid namespace's helpers in Python
    .venv/bin/python bench/density.py --quick --scale-out 3      # and instances forked from function zygotes

`--scale-out K` adds a second measurement in the same server: once each of the first `--scale-functions`
functions has its function zygote (the import cache), it is pre-warmed to 1 + K instances; the K new ones
are forked from the function zygote (every scale-out and restart of a revision starts that way). It prints
their PSS and private memory (USS: PSS depends on how many processes share the zygote's pages, USS does
not), the function zygote's own, its offered child's (the pre-forked child it keeps waiting) and the
whole tree's but the instances (with the pid namespace's two helpers: what a function pays for having a
zygote), with met / NOT met for the same target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PolyfnServer, fmt, percentile, print_header, table

HELLO = "def handler(event, context):\n    return {'n': %d}\n"


def smaps(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


def rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup in kB: Pss, Rss and Uss (Private_Clean + Private_Dirty)."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            k, _, v = line.partition(":")
            out[k] = int(v.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    out["Uss"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--functions", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="100 functions")
    ap.add_argument("--python-helpers", action="store_true",
                    help="POLYFN_NATIVE_INIT=false: the supervisor and init stay forked interpreters (the old way)")
    ap.add_argument("--target-mb", type=float, default=5.0)
    ap.add_argument("--scale-out", type=int, default=0, metavar="K",
                    help="then pre-warm functions to 1 + K instances (K forked from the function zygote); 0: skip")
    ap.add_argument("--scale-functions", type=int, default=20, help="how many functions --scale-out scales")
    ap.add_argument("--imports", default="", metavar="MODULES",
                    help="comma-separated modules each handler imports (a heavier module than hello's)")
    args = ap.parse_args()
    if args.quick:
        args.functions = 100
    n = args.functions
    print_header(f"density: {n} functions, each invoked once, then idle")
    env = {"POLYFN_MEMORY_BUDGET": str(64 * n + 64 * (args.scale_out + 1) * args.scale_functions + 1024), "POLYFN_KEEPALIVE": "3600",
           "POLYFN_NATIVE_INIT": "false" if args.python_helpers else "true"}
    with PolyfnServer(env=env) as server:
        assert server.api is not None and server.proc is not None
        rss0, _ = smaps(server.proc.pid)
        t0 = time.perf_counter()
        head = "".join(f"import {m}\n" for m in args.imports.split(",") if m)
        for i in range(n):
            server.deploy(f"d{i}", {"handler.py": head + HELLO % i}, memory=32)
        deploy_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        errors = 0
        for i in range(n):
            status, _, _ = server.api.request("GET", f"/fn/d{i}")
            errors += status != 200
        invoke_s = time.perf_counter() - t0
        time.sleep(2)  # let the instances settle (idle)
        server_rss, server_pss = smaps(server.proc.pid)
        inst_pids: set[int] = set()
        pss: list[int] = []
        rss: list[int] = []
        procs: list[int] = []
        for i in range(n):
            for inst in server.api.json("GET", f"/v1/functions/d{i}/instances").get("instances", []):
                inst_pids.add(inst["pid"])
                inst_pids.update(descendants(inst["pid"]))
                if inst.get("pss_kb"):
                    pss.append(inst["pss_kb"])
                    rss.append(inst["rss_kb"])
                    procs.append(inst.get("processes") or 1)
        others = [p for p in descendants(server.proc.pid) if p not in inst_pids]
        other_pss = sum(smaps(p)[1] for p in others)
        scaled = scale_out(server, min(args.scale_functions, n), args.scale_out) if args.scale_out else None
        print(f"polyfn: instance isolation: {server.isolation}")
    mb = 1 / 1024
    print(f"deployed {n} in {deploy_s:.1f} s, invoked each once in {invoke_s:.1f} s ({errors} errors); "
          f"{len(pss)} live instances measured\n")
    rows = [
        ["server process RSS", fmt(server_rss * mb, 1) + " MB", f"(at start {fmt(rss0 * mb, 1)} MB; PSS "
                                                               f"{fmt(server_pss * mb, 1)} MB)"],
        ["instances: total PSS", fmt(sum(pss) * mb, 1) + " MB",
         f"{len(pss)} instances, {statistics.fmean(procs) if procs else 0:g} processes each (pid namespace)"],
        ["instance PSS p50 / p99 / mean",
         f"{fmt(percentile(pss, 50) * mb, 2)} / {fmt(percentile(pss, 99) * mb, 2)} / "
         f"{fmt(statistics.fmean(pss) * mb, 2)} MB" if pss else "-", f"target ≤ {args.target_mb:g} MB"],
        ["instance RSS p50 (its largest process)", fmt(percentile(rss, 50) * mb, 1) + " MB" if rss else "-",
         "RSS counts shared pages fully"],
        ["zygote and its blanks: PSS", fmt(other_pss * mb, 1) + " MB",
         f"{len(others)} other processes under the server"],
        ["total (server PSS + instances + zygote)", fmt((server_pss + sum(pss) + other_pss) * mb, 1) + " MB",
         f"{fmt((server_pss + sum(pss) + other_pss) * mb / max(n, 1), 2)} MB per function"],
    ]
    print(table(["what", "value", "note"], rows))
    if pss:
        mean = statistics.fmean(pss) * mb
        print(f"\ndensity: {mean:.2f} MB PSS per idle instance (pid namespace helpers: "
              f"{'Python' if args.python_helpers else 'native'}) — target ≤ {args.target_mb:g} MB: "
              f"{'met' if mean <= args.target_mb else 'NOT met'}")

    if scaled:
        print_scaled(scaled, args)


def scale_out(server: PolyfnServer, m: int, k: int) -> dict[str, list[dict[str, int]]]:
    """Pre-warm functions d0..d{m-1} to 1 + k instances once each has its function zygote; then the
    memory of the instances forked from a zygote (children of its worker), of the zygotes and of the
    children they offer (their other children)."""
    assert server.api is not None
    deadline = time.monotonic() + 120
    zygotes: dict[str, int] = {}
    supervisors: list[int] = []
    while len(zygotes) < m and time.monotonic() < deadline:
        for i in range(m):
            z = server.api.json("GET", f"/v1/functions/d{i}")["scaling"].get("zygote") or {}
            if z.get("state") == "ready" and f"d{i}" not in zygotes:
                zygotes[f"d{i}"] = z["pid"]
                supervisors.append(z["supervisor_pid"])
        time.sleep(0.1)
    started = sum(server.api.json("POST", f"/v1/functions/{name}/prewarm", {"instances": 1 + k})["started"]
                  for name in zygotes)
    insts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        insts = [i for name in zygotes
                 for i in server.api.json("GET", f"/v1/functions/{name}/instances")["instances"]]
        if len(insts) >= (1 + k) * len(zygotes) and all(i["state"] == "idle" for i in insts):
            break
        time.sleep(0.2)
    if len(zygotes) < m or started < k * len(zygotes) or len(insts) < (1 + k) * len(zygotes):
        print(f"warning: scale-out incomplete: {len(zygotes)} of {m} zygotes ready, {started} instances "
              f"started by the pre-warm, {len(insts)} live of {(1 + k) * len(zygotes)}")
    time.sleep(2)  # settle: idle
    out: dict[str, list[dict[str, int]]] = {"instances": [], "zygotes": [], "offered": [], "trees": []}
    listed = {i["pid"] for name in zygotes
              for i in server.api.json("GET", f"/v1/functions/{name}/instances")["instances"]}
    for sup in supervisors:  # the zygote's whole tree but its instances: what a function pays for its zygote
        tree = [rollup(p) for p in [sup, *descendants(sup)] if p not in listed]
        out["trees"].append({k: sum(r.get(k, 0) for r in tree) for k in ("Pss", "Uss")})
    for zpid in zygotes.values():
        out["zygotes"].append(rollup(zpid))
        for c in descendants(zpid):
            if parent(c) == zpid:
                out["instances" if c in listed else "offered"].append(rollup(c))
    return out


def print_scaled(scaled: dict[str, list[dict[str, int]]], args: argparse.Namespace) -> None:
    mb = 1 / 1024

    def stats(rows: list[dict[str, int]], key: str) -> str:
        v = [r.get(key, 0) for r in rows]
        return f"{fmt(percentile(v, 50) * mb, 2)} / {fmt(statistics.fmean(v) * mb, 2)} MB" if v else "-"

    insts, zs, offered = scaled["instances"], scaled["zygotes"], scaled["offered"]
    print(f"\nscale-out: {len(zs)} functions with a function zygote, each pre-warmed to 1 + {args.scale_out}; "
          f"{len(insts)} instances forked from a function zygote measured\n")
    print(table(["p50 / mean", "PSS", "USS (private)"], [
        ["instance forked from a function zygote", stats(insts, "Pss"), stats(insts, "Uss")],
        ["function zygote (its worker process)", stats(zs, "Pss"), stats(zs, "Uss")],
        ["its offered child (waiting to be taken)", stats(offered, "Pss"), stats(offered, "Uss")],
        ["per function: the zygote's tree but its instances", stats(scaled["trees"], "Pss"),
         stats(scaled["trees"], "Uss")],
    ]))
    if insts:
        mean = statistics.fmean(r.get("Pss", 0) for r in insts) * mb
        print(f"\ndensity, scale-out: {mean:.2f} MB PSS per idle instance forked from a function zygote — "
              f"target ≤ {args.target_mb:g} MB: {'met' if mean <= args.target_mb else 'NOT met'}")


if __name__ == "__main__":
    main()
