"""Scaled-down live replay of the Azure Functions 2019 sample against a real node, every keep-alive policy
(`fixed`, `hybrid`, `adaptive`) checked against a simulation of the same slice of the trace.

N functions (default 20) of the trace, a window of M trace minutes (default 100, from minute `--start`), each
deployed three times (once per policy) on one node, replayed at once with one trace minute = `--minute` real
seconds (default 3 s: the 100 minutes take 5 min). The node's keep-alive policies run on a clock that many times
faster than real time (`POLYFN_KEEPALIVE_TIME_SCALE` = 60 / minute): their idle-time histograms, pre-warm times
and keep-alives are in trace time, as in the simulator, and the reaper ticks once a policy second.

The model is the simulator's (`bench/keepalive.py`): a busy minute occupies its instance for the whole minute and
its first invocation is cold unless the policy kept or pre-warmed an instance for that minute. So each busy
minute m of a function is one call, sent at m + δ, that holds its instance until m + 1 − ε (the handler sleeps):
the idle time the live pool measures between busy minutes m and m' is (m' − m − 1) + δ + ε trace minutes, in the
same one-minute bin as the simulator's whole idle minutes. δ + ε is larger than the reaper's granularity (a policy
second, plus a pre-warmed instance's start) and smaller than the step the policy's bounds can fall on — whole
minutes for `fixed` and `adaptive` (δ + ε = 0.5), tenths of a minute for `hybrid`'s margins (0.06) — so the live
decision and the simulated one fall the same way. Live cold starts are counted from `x-polyfn-cold`.

The simulation steps through the minutes with all functions at once, because the `adaptive` functions share
their namespace's prior (`IdlePrior`), which they feed as they run: every started function's window is asked each
minute, as the live reaper asks it each tick, so a window is fixed right after each busy minute's idle time is
seen, and a function with no idle time of its own yet fixes its prior-only window as soon as the prior has one. (Live, a tick can fall between two
functions' first calls of the same minute, so `adaptive` may differ from the simulation by a window computed on
a prior one idle time short; `fixed` and `hybrid` have no such race.)

    .venv/bin/python bench/replay.py            # 20 functions × 100 trace minutes × 3 policies, ~5.5 min
    .venv/bin/python bench/replay.py --quick    # 8 functions × 40 trace minutes, ~2.5 min
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from _common import Http, PolyfnServer, print_header, table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from keepalive import DEFAULT_TRACE, load  # noqa: E402

from polyfn.scheduler.keepalive import IdlePrior, make_policy  # noqa: E402

POLICIES = ("fixed", "hybrid", "adaptive")
KEEPALIVE = 600.0  # the fixed window and the others' fallback, in trace seconds
MEMORY = 64  # MB per function (the adaptive exchange rate weighs it)
# Trace minutes after a busy minute's start its call comes (δ), and before the minute's end it ends (ε). `fixed` and
# `adaptive` windows are whole minutes, so δ + ε may be half a minute: room for the reaper's tick and a pre-warmed
# instance's start. `hybrid`'s margins put its bounds on tenths of a minute: δ + ε must stay below 0.1.
SLACK = {"fixed": 0.25, "adaptive": 0.25, "hybrid": 0.03}

SLEEPER = '''import time
def handler(event, context):
    time.sleep(max(0.0, float(event.get("until", 0)) - time.time()))  # (a cold start's time is absorbed)
    return "ok"
'''


def pick(trace: Path, n: int, start: int, minutes: int) -> list[list[int]]:
    """`n` functions whose window has between 3 and 60 % busy minutes: where keep-alive decisions matter."""
    out = []
    for counts, _mem in load(trace, 1000):
        w = counts[start:start + minutes]
        busy = sum(1 for c in w if c)
        if 3 <= busy <= 0.6 * minutes:
            out.append(w)
        if len(out) >= n:
            break
    return out


def simulate(fns: list[list[int]], policy: str) -> list[int]:
    """Cold starts per function: the simulator's rule (`bench/keepalive.simulate`) stepped through the minutes
    with every function at once, the `adaptive` ones sharing one prior as the node's namespace does."""
    prior = IdlePrior()
    policies = [make_policy(policy, KEEPALIVE, MEMORY, prior) for _ in fns]
    cold = [0] * len(fns)
    last: list[int | None] = [None] * len(fns)
    for minute in range(len(fns[0]) if fns else 0):
        busy = [i for i, c in enumerate(fns) if c[minute]]
        for i in busy:
            if last[i] is None:
                cold[i] += 1
                continue
            gap = minute - last[i] - 1  # whole idle minutes
            w = policies[i].window()
            start, end = w.prewarm / 60.0, (w.prewarm + w.keepalive) / 60.0
            if not (start <= gap < end or (gap == 0 and start == 0 and end > 0)):
                cold[i] += 1
            policies[i].observe_idle(gap * 60.0)
        for i in busy:
            last[i] = minute
        for i in range(len(fns)):  # the live reaper asks every started function's window each tick: a function
            if last[i] is not None:  # with no idle time yet fixes its prior-only window when the prior first has one
                policies[i].window()
    return cold


def replay_one(port: int, name: str, counts: list[int], t0: float, minute: float, slack: float,
               result: dict[str, list[int]], errors: list[str]) -> None:
    """One call per busy minute, from m + δ to m + 1 − ε (δ = ε = `slack`)."""
    cold = warm = 0
    for m, n in enumerate(counts):
        if not n:
            continue
        at = t0 + (m + slack) * minute
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        until = t0 + (m + 1 - slack) * minute
        client = Http(port)  # a new connection per call: the node closes one idle for 5 s
        try:
            # the handler sleeps until `until` by the wall clock (the answer's way back is a few ms)
            wall = time.time() + (until - time.monotonic()) - 0.005
            status, headers, text = client.request("POST", f"/fn/{name}", {"until": wall})
        except OSError as e:
            errors.append(f"{name} minute {m}: {e}")
            continue
        finally:
            client.close()
        if status != 200:
            errors.append(f"{name} minute {m}: {status} {text[:200]!r}")
        elif headers.get("x-polyfn-cold") == "true":
            cold += 1
        else:
            warm += 1
        if time.monotonic() > until + 0.5 * slack * minute:
            errors.append(f"{name} minute {m}: the call ended {time.monotonic() - until:.3f} s past its minute")
    result[name] = [cold, warm]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--functions", type=int, default=20)
    ap.add_argument("--start", type=int, default=600, help="first trace minute of the window")
    ap.add_argument("--minutes", type=int, default=100, help="trace minutes replayed")
    ap.add_argument("--minute", type=float, default=3.0, help="real seconds per trace minute")
    ap.add_argument("--policies", default=",".join(POLICIES), help="comma-separated: fixed,hybrid,adaptive")
    ap.add_argument("--quick", action="store_true", help="8 functions × 40 trace minutes")
    args = ap.parse_args()
    if args.quick:
        args.functions, args.minutes = 8, 40
    policies = [p for p in args.policies.split(",") if p]
    fns = pick(args.trace, args.functions, args.start, args.minutes)
    scale = 60.0 / args.minute
    sims = {p: simulate(fns, p) for p in policies}
    print_header(f"live replay: {len(fns)} functions × {args.minutes} trace minutes × {len(policies)} policies "
                 f"at {args.minute:g} s/minute")
    result: dict[str, list[int]] = {}
    errors: list[str] = []
    env = {"POLYFN_KEEPALIVE_TIME_SCALE": f"{scale:g}", "POLYFN_LOG_LEVEL": "WARNING"}
    with PolyfnServer(env=env) as server:
        for p in policies:
            for i, _ in enumerate(fns):
                server.deploy(f"{p}{i}", {"handler.py": SLEEPER}, keepalive=KEEPALIVE, keepalive_policy=p,
                              memory=MEMORY, timeout=max(30, int(3 * args.minute)))
        t0 = time.monotonic() + 2.0
        threads = [threading.Thread(target=replay_one, args=(server.port, f"{p}{i}", c, t0, args.minute, SLACK[p],
                                                             result, errors))
                   for p in policies for i, c in enumerate(fns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
    busy = [sum(1 for x in c if x) for c in fns]
    rows = []
    totals = []
    for p in policies:
        live = [result.get(f"{p}{i}", [0, 0])[0] for i in range(len(fns))]
        agree = sum(1 for i in range(len(fns)) if live[i] == sims[p][i])
        diffs = ", ".join(f"{p}{i} {live[i] - sims[p][i]:+d}" for i in range(len(fns)) if live[i] != sims[p][i])
        rows.append([p, str(sum(busy)), str(sum(sims[p])), str(sum(live)), f"{agree}/{len(fns)}", diffs or "-"])
        totals.append((p, sum(live), sum(sims[p]), agree))
    print(f"keep-alive clock × {scale:g} (a trace minute = {args.minute:g} s); fixed window and fallback "
          f"{KEEPALIVE:g} s of trace time; replay took {elapsed:.0f} s\n")
    print(table(["policy", "busy minutes", "simulated cold", "live cold", "functions equal", "differences"], rows))
    for p, live_n, sim_n, agree in totals:
        exact = agree == len(fns)
        print(f"{p}: live {live_n} vs simulated {sim_n} cold starts; "
              f"{'every function equal' if exact else f'{len(fns) - agree} function(s) differ'}")
    if errors:
        print(f"\n{len(errors)} errors, first: {errors[0]}")


if __name__ == "__main__":
    main()
