"""Scaled-down live replay of the Azure Functions 2019 sample against a real node, checked against the
keep-alive simulator (`bench/keepalive.py`) on the same slice of the trace.

N functions (default 20) of the trace, a window of M trace minutes (default 100, from minute `--start`),
replayed with one trace minute = `--minute` real seconds (default 2.5 s: the 100 minutes take ~4 min). The
live node runs the `fixed` keep-alive policy with the keep-alive scaled the same way: 10 trace minutes →
`10.25 × minute` seconds (the extra quarter minute absorbs the reaper's 1 s tick, so that an instance used at
the start of minute m is still there at m + 10 and gone at m + 11, as in the simulator's minute model).

Per busy minute each function gets up to `--cap` invocations, sent one after another at the minute's
start (one client per function: never concurrent, so one instance suffices, as in the simulator). Live
cold starts are counted from the `x-polyfn-cold` response header; the simulator counts, per function, the
first invocation of every busy minute that its policy window did not cover (`bench/keepalive.simulate`
with `FixedPolicy(600)`).

The node's policy runs on the real monotonic clock (it has no injectable clock), hence the real-time,
time-scaled replay.

    .venv/bin/python bench/replay.py            # 20 functions × 100 trace minutes, ~4.5 min
    .venv/bin/python bench/replay.py --quick    # 8 functions × 40 trace minutes, ~2 min
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from _common import HELLO_NATIVE, Http, PolyfnServer, print_header, table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from keepalive import DEFAULT_TRACE, load, simulate  # noqa: E402

from polyfn.scheduler.keepalive import FixedPolicy  # noqa: E402


def pick(trace: Path, n: int, start: int, minutes: int) -> list[list[int]]:
    """`n` functions whose window has between 3 and 60 % busy minutes and at least one idle gap of
    10+ minutes or several shorter ones: where keep-alive decisions matter."""
    out = []
    for counts, _mem in load(trace, 1000):
        w = counts[start:start + minutes]
        busy = sum(1 for c in w if c)
        if 3 <= busy <= 0.6 * minutes:
            out.append(w)
        if len(out) >= n:
            break
    return out


def replay_one(port: int, name: str, counts: list[int], t0: float, minute: float, cap: int,
               result: dict[str, list[int]], errors: list[str]) -> None:
    cold = warm = 0
    for m, n in enumerate(counts):
        if not n:
            continue
        delay = t0 + m * minute - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        client = Http(port)  # a new connection per busy minute: the server closes idle ones after 5 s
        for _ in range(min(n, cap)):
            try:
                status, headers, body = client.request("GET", f"/fn/{name}")
            except OSError as e:
                errors.append(f"{name} minute {m}: {e}")
                continue
            if status != 200:
                errors.append(f"{name} minute {m}: {status} {body[:200]!r}")
                continue
            if headers.get("x-polyfn-cold") == "true":
                cold += 1
            else:
                warm += 1
        client.close()
    result[name] = [cold, warm]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--functions", type=int, default=20)
    ap.add_argument("--start", type=int, default=600, help="first trace minute of the window")
    ap.add_argument("--minutes", type=int, default=100, help="trace minutes replayed")
    ap.add_argument("--minute", type=float, default=2.5, help="real seconds per trace minute")
    ap.add_argument("--cap", type=int, default=3, help="invocations sent per busy minute (at most)")
    ap.add_argument("--quick", action="store_true", help="8 functions × 40 trace minutes")
    args = ap.parse_args()
    if args.quick:
        args.functions, args.minutes = 8, 40
    fns = pick(args.trace, args.functions, args.start, args.minutes)
    keepalive = 10.25 * args.minute
    sim = [simulate(c, 128.0, FixedPolicy(600))[1] for c in fns]
    print_header(f"live replay: {len(fns)} functions × {args.minutes} trace minutes at {args.minute:g} s/minute")
    result: dict[str, list[int]] = {}
    errors: list[str] = []
    with PolyfnServer() as server:
        for i, _ in enumerate(fns):
            server.deploy(f"az{i}", {"handler.py": HELLO_NATIVE}, keepalive=keepalive, keepalive_policy="fixed",
                          memory=64)
        t0 = time.monotonic() + 1.0
        threads = [threading.Thread(target=replay_one, args=(server.port, f"az{i}", c, t0, args.minute, args.cap,
                                                             result, errors)) for i, c in enumerate(fns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
    rows = []
    for i, c in enumerate(fns):
        live_cold, live_warm = result.get(f"az{i}", [0, 0])
        rows.append([f"az{i}", str(sum(1 for x in c if x)), str(sim[i]), str(live_cold), str(live_warm),
                     "" if live_cold == sim[i] else f"{live_cold - sim[i]:+d}"])
    total_sim, total_live = sum(sim), sum(result.get(f"az{i}", [0, 0])[0] for i in range(len(fns)))
    rows.append(["**total**", str(sum(sum(1 for x in c if x) for c in fns)), f"**{total_sim}**", f"**{total_live}**",
                 str(sum(r[1] for r in result.values())), f"{total_live - total_sim:+d}"])
    print(f"keep-alive: fixed, {keepalive:g} s (= 10 trace minutes + a quarter); replay took {elapsed:.0f} s\n")
    print(table(["function", "busy minutes", "simulator cold", "live cold", "live warm", "diff"], rows))
    agree = sum(1 for i in range(len(fns)) if result.get(f"az{i}", [0])[0] == sim[i])
    print(f"\nfunctions whose live cold-start count equals the simulator's: {agree}/{len(fns)}; "
          f"total live {total_live} vs simulated {total_sim}")
    if errors:
        print(f"\n{len(errors)} errors, first: {errors[0]}")


if __name__ == "__main__":
    main()
