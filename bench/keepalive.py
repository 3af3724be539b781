"""Replay the Azure Functions 2019 trace sample (1,000 functions, one day, minute resolution) through the
live keep-alive policy code (`polyfn.scheduler.keepalive`) with a virtual clock, and report cold-start
percentage and idle memory (GB·min) for fixed 10 min, fixed 20 min and hybrid.

Model (the paper's, at the trace's minute resolution): a function needs an instance in every minute
that has invocations; the first invocation of such a minute is cold unless the policy kept or pre-warmed an
instance for that minute; later invocations in the same minute are warm. After the last busy minute of a
run, the policy's window says when an instance is (re)loaded and how long it stays: each loaded idle
minute costs the function's memory (the app's average allocated MB from the trace).

    python bench/keepalive.py [--trace DIR] [--functions N]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polyfn.scheduler.keepalive import FixedPolicy, HybridPolicy  # noqa: E402

# ../shared next to the main checkout; worktrees live one level deeper (/work/wt/NAME)
DEFAULT_TRACE = next((p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared")
                      if (p / "data" / "azure-functions-2019-sample").is_dir()),
                     ROOT.parent / "shared") / "data" / "azure-functions-2019-sample"


def load(trace: Path, limit: int) -> list[tuple[list[int], float]]:
    mem: dict[str, float] = {}
    with open(trace / "1000_mem.csv") as f:
        for row in csv.DictReader(f):
            mem[row["HashApp"]] = float(row["AverageAllocatedMb"])
    out = []
    with open(trace / "1000_inv.csv") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            counts = [int(x) for x in row[3:]]
            out.append((counts, mem.get(row[1], 128.0)))
            if len(out) >= limit:
                break
    return out


def simulate(counts: list[int], mem_mb: float, policy: FixedPolicy | HybridPolicy) -> tuple[int, int, float]:
    """(invocations, cold starts, idle MB·min) for one function over the day."""
    invocations = cold = 0
    idle_mb_min = 0.0
    last_busy: int | None = None
    for minute, n in enumerate(counts):
        if n == 0:
            continue
        invocations += n
        if last_busy is None:
            cold += 1
        else:
            gap = minute - last_busy - 1  # whole idle minutes between two busy minutes
            w = policy.window()
            start = w.prewarm / 60.0
            end = (w.prewarm + w.keepalive) / 60.0
            # warm at `minute` if the instance is loaded during the gap's last minute
            if not (start <= gap < end or (gap == 0 and start == 0 and end > 0)):
                cold += 1
            loaded = max(0.0, min(gap, end) - start)
            idle_mb_min += loaded * mem_mb
            policy.observe_idle(gap * 60.0)
        last_busy = minute
    if last_busy is not None:  # after the last run of the day the window still costs memory
        w = policy.window()
        tail = min(w.keepalive / 60.0, len(counts) - last_busy - 1 - w.prewarm / 60.0)
        idle_mb_min += max(0.0, tail) * mem_mb
    return invocations, cold, idle_mb_min


def run(functions: list[tuple[list[int], float]], make) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    inv = cold = 0
    idle = 0.0
    for counts, mem in functions:
        i, c, m = simulate(counts, mem, make())
        inv += i
        cold += c
        idle += m
    return 100.0 * cold / max(inv, 1), idle / 1024.0, cold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--functions", type=int, default=1000)
    args = ap.parse_args()
    if not (args.trace / "1000_inv.csv").exists():
        sys.exit(f"trace not found in {args.trace}")
    fns = load(args.trace, args.functions)
    total = sum(sum(c) for c, _ in fns)
    print(f"{len(fns)} functions, {total:,} invocations in one day (minute resolution)\n")
    rows = [
        ("fixed 10 min", lambda: FixedPolicy(600)),
        ("fixed 20 min", lambda: FixedPolicy(1200)),
        ("hybrid", HybridPolicy),
    ]
    results = {name: run(fns, make) for name, make in rows}
    base_cold, base_mem, _ = results["fixed 10 min"]
    print(f"{'policy':<14}{'cold starts':>14}{'cold %':>10}{'idle GB·min':>14}{'vs fixed 10: cold':>20}{'memory':>10}")
    for name, (pct, mem, cold) in results.items():
        print(f"{name:<14}{cold:>14,}{pct:>9.3f}%{mem:>14,.0f}{pct / base_cold:>19.2f}x{mem / base_mem:>9.2f}x")
    h_pct, h_mem, _ = results["hybrid"]
    print(f"\nhybrid vs fixed 10 min: {100 * (1 - h_pct / base_cold):.0f} % fewer cold starts, "
          f"{100 * (h_mem / base_mem - 1):+.0f} % idle memory")


if __name__ == "__main__":
    main()
