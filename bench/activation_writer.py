"""The activation writer's CPU per record: SQLite on the real schema, batches as a busy node makes them, A/B.

A warm call's record is stored by the activation writer, a thread of the server's own (store/activations.py):
its CPU per record is taken from the same 2 cores as the event loop, and while it binds a statement's values it
holds the GIL the loop needs. This stores batches of hello records (one function on one instance, no logs: what
`bench/ceiling.py`'s `async c32` row makes, ~3,000 per 0.2 s flush) into a migrated database and prints the
writer thread's CPU and the event loop's (building the statements) per record. With `--base SRC` another source
tree is measured too, in alternating child processes (each tree imported in its own).

    .venv/bin/python bench/activation_writer.py                                # this tree, 5 rounds
    .venv/bin/python bench/activation_writer.py --base /tmp/base/src --rounds 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


async def measure(data: str, batch: int, batches: int, warm: int) -> tuple[float, float]:
    """(writer thread µs, event loop µs) per record, over `batches` batches after `warm` unmeasured ones."""
    from polyfn.invoker import new_activation_id
    from polyfn.model import Activation
    from polyfn.store import Store

    store = await Store.open(f"sqlite+aiosqlite:///{data}/polyfn.db")

    def records() -> list[Activation]:
        out = []
        for _ in range(batch):
            t = time.time()
            aid = new_activation_id()
            out.append(Activation(id=aid, function="ha", revision=1, trigger="http", start=t, end=t + 0.0005,
                                  duration_ms=0.5, wait_ms=0.01, run_ms=0.02, result="Hello World!",
                                  instance="ha@1#a1b2c3", trace_id=aid, memory_mb=128, resp_bytes=12,
                                  max_memory_mb=12.5))
        return out

    thread = store._sqlite_writer()._thread  # (the writer's own thread: its CPU clock is read on it)
    writer = loop = 0.0
    for i in range(warm + batches):
        acts = records()
        c0, w0 = time.thread_time(), thread.submit(time.thread_time).result()
        await store.add_activations(acts)
        c1, w1 = time.thread_time(), thread.submit(time.thread_time).result()
        if i >= warm:
            writer += w1 - w0
            loop += c1 - c0
    await store.close()
    n = batch * batches
    return writer / n * 1e6, loop / n * 1e6


def child(args: argparse.Namespace) -> None:
    data = tempfile.mkdtemp(prefix="polyfn-bench-writer-")
    try:
        w, lp = asyncio.run(measure(data, args.batch, args.batches, args.warm))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    print(f"{w:.3f} {lp:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--base", metavar="SRC", help="also measure this source tree (e.g. main's src)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (one child process each)")
    ap.add_argument("--batch", type=int, default=3000, help="records per batch")
    ap.add_argument("--batches", type=int, default=20, help="measured batches per round")
    ap.add_argument("--warm", type=int, default=10, help="batches stored first, not measured")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    trees = {"this tree": str(SRC)}
    if args.base:
        trees = {"base": str(Path(args.base).resolve()), **trees}
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in trees}
    for r in range(args.rounds):
        for name in list(trees) if r % 2 == 0 else list(reversed(trees)):
            env = {**os.environ, "PYTHONPATH": trees[name]}
            out = subprocess.run([sys.executable, __file__, "--child", "--batch", str(args.batch), "--batches",
                                  str(args.batches), "--warm", str(args.warm)], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            got[name].append((float(out[-2]), float(out[-1])))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.rounds} rounds of {args.batches} × {args.batch} records")
    for name, runs in got.items():
        w = [r[0] for r in runs]
        print(f"{name} ({trees[name]}): writer thread µs/record median {statistics.median(w):.2f} (min {min(w):.2f}), "
              f"event loop µs/record median {statistics.median(r[1] for r in runs):.2f}")
    if args.base:
        b, n = (statistics.median(r[0] for r in got[k]) for k in ("base", "this tree"))
        print(f"writer thread this tree / base = {n / b:.2f}")


if __name__ == "__main__":
    main()
