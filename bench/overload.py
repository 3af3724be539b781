"""Overload: a default function's goodput (2xx a second) and the p99 of its accepted calls under a flood of
2,000 connections, against the same at 32 connections, in the same run on the same node.

Targets (issue 29): goodput at 2,000 connections ≥ 80 % of goodput at 32; p99 of the accepted calls at 2,000
connections ≤ 50 ms. Refused calls (429) are counted apart, with their own latency; the activations stored
during the flood are counted too (an over-limit call must not cost a record).

The load comes from `bench/loadgen/main.go` (built with the Go toolchain at start: `apt-get install
golang-go`), which, unlike wrk, keeps the latencies of accepted and refused calls apart. The machine may be
shared with other work: compare the ratios, not the absolute figures.

    .venv/bin/python bench/overload.py                       # 10 s per phase
    .venv/bin/python bench/overload.py --seconds 20 --flood 2000 --base 32
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HELLO_NATIVE, Http, PolyfnServer, fmt, print_header, table, tree_cpu_seconds

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


def load(loadgen: Path, port: int, path: str, connections: int, seconds: int) -> dict[str, Any]:
    out = subprocess.run([str(loadgen), "-addr", f"127.0.0.1:{port}", "-path", path, "-c", str(connections),
                          "-d", f"{seconds}s"], capture_output=True, text=True, check=True, timeout=seconds + 120)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def metric(server: PolyfnServer, name: str, **labels: str) -> float:
    """The sum of a metric's samples (with `labels`), on a connection of its own (the flood outlasts a
    kept-alive one)."""
    api = Http(server.port, server.key)
    try:
        _, _, body = api.request("GET", "/metrics")
    finally:
        api.close()
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10, help="measured seconds per phase")
    ap.add_argument("--base", type=int, default=32, help="connections of the baseline phase")
    ap.add_argument("--flood", type=int, default=2000, help="connections of the flood phase")
    args = ap.parse_args()
    print_header(f"overload: goodput and accepted-call p99 at {args.flood} connections vs {args.base}")
    with tempfile.TemporaryDirectory(prefix="polyfn-overload-") as tmp, PolyfnServer() as server:
        loadgen = build_loadgen(Path(tmp))
        assert server.proc is not None
        server.deploy("hello", {"handler.py": HELLO_NATIVE})
        load(loadgen, server.port, "/fn/hello", args.base, 3)  # warm: instances started, caches hot
        rows, phases = [], {}
        for conns in (args.base, args.flood):
            records0, refused0 = metric(server, "polyfn_invocations_total"), metric(server, "polyfn_shed_total")
            cpu0 = tree_cpu_seconds(server.proc.pid)
            got = load(loadgen, server.port, "/fn/hello", conns, args.seconds)
            cpu = tree_cpu_seconds(server.proc.pid) - cpu0
            ok = got["status"].get("2xx", {})
            refused = {k: v for k, v in got["status"].items() if k != "2xx"}
            n_refused = sum(v["count"] for v in refused.values())
            phases[conns] = ok
            records = metric(server, "polyfn_invocations_total") - records0
            shed = metric(server, "polyfn_shed_total") - refused0
            rows.append([str(conns), fmt(ok.get("per_s", 0), 0), fmt(ok.get("p50", float("nan"))),
                         fmt(ok.get("p99", float("nan"))), fmt(n_refused / got["seconds"], 0),
                         ", ".join(f"{k}: {fmt(v['p99'])}" for k, v in sorted(refused.items())) or "-",
                         str(got["errors"]), fmt(records, 0), fmt(shed, 0), fmt(cpu / got["seconds"], 2)])
    print(table(["connections", "goodput 2xx/s", "accepted p50 ms", "accepted p99 ms", "refused/s",
                 "refused p99 ms by status", "conn errors", "activations recorded", "shed (metric)",
                 "node CPU cores"], rows))
    base, flood = phases[args.base], phases[args.flood]
    ratio = flood.get("per_s", 0) / base["per_s"] if base.get("per_s") else float("nan")
    p99 = flood.get("p99", float("inf"))
    print(f"\ngoodput at {args.flood} / at {args.base} connections: {ratio:.0%} (target ≥ {GOODPUT_TARGET:.0%}): "
          f"{'met' if ratio >= GOODPUT_TARGET else 'NOT met'}")
    print(f"p99 of accepted calls at {args.flood} connections: {fmt(p99)} ms (target ≤ {P99_TARGET_MS:g} ms): "
          f"{'met' if 0 <= p99 <= P99_TARGET_MS else 'NOT met'}")
    print("same-run ratios; the machine may be shared with other work, which moves absolute figures")


if __name__ == "__main__":
    main()
