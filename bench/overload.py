"""Overload: a default function's goodput (2xx a second) and the p99 of its accepted calls under a flood of
2,000 connections, against the same at 32 connections, in the same run on the same node.

Targets (issue 29): goodput at 2,000 connections ≥ 80 % of goodput at 32; p99 of the accepted calls at 2,000
connections ≤ 50 ms. Refused calls (429) are counted apart, with their own latency; the activations stored
during the flood are counted too (an over-limit call must not cost a record).

The load comes from `bench/loadgen/main.go` (built with the Go toolchain at start: `apt-get install
golang-go`), which, unlike wrk, keeps the latencies of accepted and refused calls apart. It opens every
connection first ("connect s": the accept storm, once per flood, not measured), then all send at once; each
phase's figures are over its measured seconds (a call unanswered at the end, e.g. a held 429, is dropped).

CPU split: on a small machine the load generator would take CPU from the node, and more in the flood (it
sends more calls) than in the baseline: the flood's goodput would fall for the client's sake. So the node
(the server, its zygotes and instances) runs on the first half of the CPUs and the client on the other half
(`sched_setaffinity`; on the 2-core VM: node on CPU 0, client on CPU 1, Go's GOMAXPROCS follows), the same
in both phases — as if the callers were other machines. `--no-pin` shares every CPU instead. The table shows
the CPU each side used (cores): the gateway (the server process), the instances (its descendants), the
client. The machine may be shared with other work: compare the ratios, not the absolute figures, and use
several `--rounds` (the verdict takes the median).

    .venv/bin/python bench/overload.py                       # 10 s per phase, 3 rounds
    .venv/bin/python bench/overload.py --seconds 8 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HELLO_NATIVE, Http, PolyfnServer, cpu_seconds, descendants, fmt, print_header, table

from polyfn.gateway.http import Tarpit

GOODPUT_TARGET = 0.80
P99_TARGET_MS = 50.0


def build_loadgen(tmp: Path) -> Path:
    go = shutil.which("go")
    if go is None:
        raise SystemExit("the Go toolchain is needed to build bench/loadgen (apt-get install golang-go)")
    src = tmp / "loadgen"
    src.mkdir()
    shutil.copy(Path(__file__).resolve().parent / "loadgen" / "main.go", src / "main.go")
    (src / "go.mod").write_text("module loadgen\n\ngo 1.19\n")
    subprocess.run([go, "build", "-o", str(src / "loadgen"), "."], cwd=src, check=True, capture_output=True)
    return src / "loadgen"


def split_cpus(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(the node's CPUs, the client's): the first half and the rest, or (None, None) to share them all."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def load(loadgen: Path, port: int, path: str, connections: int, seconds: int,
         cpus: set[int] | None = None) -> dict[str, Any]:
    """One loadgen run; its JSON report, plus the CPU seconds the client used ("client_cpu")."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([str(loadgen), "-addr", f"127.0.0.1:{port}", "-path", path, "-c", str(connections),
                          "-d", f"{seconds}s"], capture_output=True, text=True, check=True, timeout=seconds + 120,
                         preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    got: dict[str, Any] = json.loads(out.stdout)
    got["client_cpu"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return got


def node_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of the server process (the gateway) and of its live descendants (zygotes, instances)."""
    tree = descendants(pid)
    return cpu_seconds(pid), sum(cpu_seconds(p) for p in tree if p != pid)


def metric(server: PolyfnServer, name: str, throttled: bool = True) -> float:
    """The sum of a metric's samples (without those of status "throttled" unless `throttled`), on a connection
    of its own (the flood outlasts a kept-alive one)."""
    api = Http(server.port, server.key)
    try:
        _, _, body = api.request("GET", "/metrics")
    finally:
        api.close()
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name) and (throttled or 'status="throttled"' not in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def phase(server: PolyfnServer, loadgen: Path, conns: int, seconds: int, client_cpus: set[int] | None
          ) -> tuple[dict[str, Any], list[str]]:
    """One measured phase: the 2xx figures (with "node_cores": the gateway's and the instances' CPU) and the
    table's row."""
    assert server.proc is not None
    # every activation recorded is counted in polyfn_invocations_total, with its status; a refusal is counted
    # there as "throttled" without a record
    records0 = metric(server, "polyfn_invocations_total", throttled=False)
    refused0 = metric(server, "polyfn_shed_total")
    gw0, inst0 = node_cpu(server.proc.pid)
    got = load(loadgen, server.port, "/fn/hello", conns, seconds, client_cpus)
    gw1, inst1 = node_cpu(server.proc.pid)
    secs = got["seconds"]
    ok = got["status"].get("2xx", {})
    refused = {k: v for k, v in got["status"].items() if k != "2xx"}
    n_refused = sum(v["count"] for v in refused.values())
    records = metric(server, "polyfn_invocations_total", throttled=False) - records0
    shed = metric(server, "polyfn_shed_total") - refused0
    ok = {**ok, "node_cores": (gw1 - gw0 + inst1 - inst0) / secs}
    row = [str(conns), fmt(ok.get("per_s", 0), 0), fmt(ok.get("p50", float("nan"))), fmt(ok.get("p99", float("nan"))),
           fmt(n_refused / secs, 0), ", ".join(f"{k}: {fmt(v['p50'])} / {fmt(v['p99'])}" for k, v in sorted(refused.items()))
           or "-", str(got["errors"]), fmt(records, 0), fmt(shed, 0),
           f"{(gw1 - gw0) / secs:.2f} / {(inst1 - inst0) / secs:.2f} / {got['client_cpu'] / secs:.2f}",
           fmt(got.get("connect_seconds", 0), 2)]
    return ok, row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10, help="measured seconds per phase")
    ap.add_argument("--base", type=int, default=32, help="connections of the baseline phase")
    ap.add_argument("--flood", type=int, default=2000, help="connections of the flood phase")
    ap.add_argument("--rounds", type=int, default=3, help="baseline-then-flood rounds (the verdict: their median)")
    ap.add_argument("--no-pin", dest="pin", action="store_false", default=argparse.SUPPRESS,
                    help="share every CPU between the node and the client (default: half each)")
    args = ap.parse_args()
    print_header(f"overload: goodput and accepted-call p99 at {args.flood} connections vs {args.base}")
    node_cpus, client_cpus = split_cpus(getattr(args, "pin", True))
    print(f"CPUs: node {sorted(node_cpus)}, client {sorted(client_cpus)}" if node_cpus and client_cpus
          else "CPUs: shared by the node and the client (not pinned)")
    rows, ratios, p99s, per_cpu = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="polyfn-overload-") as tmp:
        loadgen = build_loadgen(Path(tmp))
        mine = os.sched_getaffinity(0)
        if node_cpus is not None:
            os.sched_setaffinity(0, node_cpus)  # the server, and every process it starts, inherit it
        try:
            server = PolyfnServer().__enter__()
        finally:
            os.sched_setaffinity(0, mine)
        try:
            server.deploy("hello", {"handler.py": HELLO_NATIVE})
            load(loadgen, server.port, "/fn/hello", args.base, 3, client_cpus)  # warm: instances started
            for r in range(args.rounds):
                base, row = phase(server, loadgen, args.base, args.seconds, client_cpus)
                rows.append([str(r + 1), *row])
                time.sleep(2)
                flood, row = phase(server, loadgen, args.flood, args.seconds, client_cpus)
                rows.append([str(r + 1), *row])
                ratios.append(flood.get("per_s", 0) / base["per_s"] if base.get("per_s") else 0.0)
                if base.get("per_s") and flood.get("per_s") and base["node_cores"] and flood["node_cores"]:
                    per_cpu.append((flood["per_s"] / flood["node_cores"]) / (base["per_s"] / base["node_cores"]))
                p99s.append(flood.get("p99", float("inf")) if flood.get("p99", -1) >= 0 else float("inf"))
                time.sleep(Tarpit.MAX_HOLD)  # the flood's held refusals are answered before the next phase
        finally:
            server.__exit__(None, None, None)
    print(table(["round", "connections", "goodput 2xx/s", "accepted p50 ms", "accepted p99 ms", "refused/s",
                 "refused p50 / p99 ms", "conn errors", "activations recorded", "shed (metric)",
                 "CPU cores: gateway / instances / client", "connect s (before)"], rows))
    ratio, p99 = statistics.median(ratios), statistics.median(p99s)
    each = f" (rounds: {', '.join(f'{x:.0%}' for x in ratios)})" if len(ratios) > 1 else ""
    print(f"\ngoodput at {args.flood} / at {args.base} connections: {ratio:.0%}{each} (target ≥ {GOODPUT_TARGET:.0%}): "
          f"{'met' if ratio >= GOODPUT_TARGET else 'NOT met'}")
    each = f" (rounds: {', '.join(fmt(x) for x in p99s)})" if len(p99s) > 1 else ""
    print(f"p99 of accepted calls at {args.flood} connections: {fmt(p99)} ms{each} (target ≤ {P99_TARGET_MS:g} ms): "
          f"{'met' if 0 <= p99 <= P99_TARGET_MS else 'NOT met'}")
    if per_cpu:  # (not a target: how much of the ratio is the node's own cost, whatever CPU it got)
        print(f"goodput per node CPU-second (gateway + instances), flood / baseline: "
              f"{statistics.median(per_cpu):.0%} (rounds: {', '.join(f'{x:.0%}' for x in per_cpu)}); on a shared "
              "machine the node's CPU share moves the goodput ratio, this one less")
    print("same-run ratios; the machine may be shared with other work, which moves absolute figures")


if __name__ == "__main__":
    main()
