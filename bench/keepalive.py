"""Replay the Azure Functions 2019 trace sample (1,000 functions, one day, minute resolution) through the
live keep-alive policy code (`polyfn.scheduler.keepalive`) with a virtual clock, and report cold-start
percentage and idle memory (GB·min) for fixed 10 min, fixed 20 min, hybrid and adaptive.

Adaptive is cross-validated: its exchange rate (`AdaptiveConfig.cold_start_worth`) was chosen on one half of the
functions, and each half is replayed with a node prior (`IdlePrior`) learned from the *other* half only (on a
node the prior learns from the namespace's functions as they run), so no function's own day shapes its windows
before it happens. Target (issue 24): >= 55 % fewer cold starts than fixed 10 min at no more idle memory.

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
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polyfn.scheduler.keepalive import AdaptivePolicy, FixedPolicy, HybridPolicy, IdlePrior  # noqa: E402

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


def simulate(counts: list[int], mem_mb: float, policy: FixedPolicy | HybridPolicy | AdaptivePolicy
             ) -> tuple[int, int, float]:
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
    """(cold %, idle GB·min, cold starts); `make(mem_mb)` builds one function's policy."""
    inv = cold = 0
    idle = 0.0
    for counts, mem in functions:
        i, c, m = simulate(counts, mem, make(mem))
        inv += i
        cold += c
        idle += m
    return 100.0 * cold / max(inv, 1), idle / 1024.0, cold


class FrozenPrior(IdlePrior):
    """A prior learned beforehand that the replayed functions do not add to."""

    def moved(self, bins: dict[int, int], n: int, new_bin: int) -> None:
        pass


def learned_prior(functions: list[tuple[list[int], float]]) -> FrozenPrior:
    prior = FrozenPrior()
    for counts, mem in functions:
        policy = AdaptivePolicy(mem)
        busy = [m for m, n in enumerate(counts) if n]
        for before, after in itertools.pairwise(busy):
            IdlePrior.moved(prior, policy.bins, policy.samples, min(after - before - 1, prior.range_bins))
            policy.observe_idle((after - before - 1) * 60.0)
    return prior


def run_adaptive(functions: list[tuple[list[int], float]]) -> tuple[float, float, int]:
    """Each half of the functions replayed with the prior of the other half; the halves' sums."""
    halves = functions[0::2], functions[1::2]
    inv = sum(sum(c) for c, _ in functions)
    cold = 0
    idle = 0.0
    for test, train in (halves, halves[::-1]):
        prior = learned_prior(train)
        _, gb_min, n = run(test, lambda mem, prior=prior: AdaptivePolicy(mem, prior=prior, fallback_keepalive=600))
        cold += n
        idle += gb_min
    return 100.0 * cold / max(inv, 1), idle, cold


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
        ("fixed 10 min", lambda mem: FixedPolicy(600)),
        ("fixed 20 min", lambda mem: FixedPolicy(1200)),
        ("hybrid", lambda mem: HybridPolicy()),
    ]
    results = {name: run(fns, make) for name, make in rows}
    results["adaptive"] = run_adaptive(fns)
    base_cold, base_mem, _ = results["fixed 10 min"]
    print(f"{'policy':<14}{'cold starts':>14}{'cold %':>10}{'idle GB·min':>14}{'vs fixed 10: cold':>20}{'memory':>10}")
    for name, (pct, mem, cold) in results.items():
        print(f"{name:<14}{cold:>14,}{pct:>9.3f}%{mem:>14,.0f}{pct / base_cold:>19.2f}x{mem / base_mem:>9.2f}x")
    print()
    for name in ("hybrid", "adaptive"):
        pct, mem, _ = results[name]
        fewer, more = 100 * (1 - pct / base_cold), 100 * (mem / base_mem - 1)
        print(f"{name} vs fixed 10 min: {fewer:.1f} % fewer cold starts, {more:+.1f} % idle memory")
    pct, mem, _ = results["adaptive"]
    met = pct <= 0.45 * base_cold and mem <= base_mem
    print(f"target: >= 55 % fewer cold starts than fixed 10 min at no more idle memory (adaptive): "
          f"{'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
