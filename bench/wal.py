"""The node's SQLite WAL under steady workflow load: executions of a 10-state Pass chain one after the other, each
awaited, on a fresh `polyfn.db` (the store, the workflow service on the store's write lock, as in a node). Prints
the wall and process CPU per execution and the `-wal` file's size at the end; target: the WAL at most 32 MB
(it grew without end while the workflow checkpoint ran beside the loop's commits: 124 MB after 2,000).

`--vs SRC`: the same measurement with SRC's code (PYTHONPATH) and this tree's, alternately, `--rounds` times each
(the machine is shared: compare within one run). In-process, no port, no server: what it measures is the store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATES = 10
TARGET_MB = 32.0
SRC = Path(__file__).resolve().parents[1] / "src"


async def measure(executions: int, data: Path) -> dict[str, float]:
    from polyfn.store import Store
    from polyfn.workflows.service import WorkflowService
    from polyfn.workflows.tasks import TaskOutcome

    chain = {f"s{i}": {"Type": "Pass", "Next": f"s{i + 1}"} for i in range(STATES - 1)}
    chain[f"s{STATES - 1}"] = {"Type": "Pass", "End": True}

    async def invoke(function: str, payload: bytes, activation_id: str) -> TaskOutcome:
        return TaskOutcome(False, error="NoTasks")

    store = await Store.open(f"sqlite+aiosqlite:///{data / 'polyfn.db'}")
    svc = WorkflowService(store.engine, invoke, owner="bench", write_lock=getattr(store, "_write_lock", None))
    await svc.start()
    try:
        await svc.create_machine("chain", json.dumps({"StartAt": "s0", "States": chain}))
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(executions):
            ex = await svc.start_execution("chain", f"run-{i}", "{}")
            done = await svc.engine.wait(ex.id, 60)
            assert done is not None and done.status == "SUCCEEDED", done
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        wal = (data / "polyfn.db-wal").stat().st_size
    finally:
        await svc.stop(1)
        await store.close()
    return {"wall_ms": wall / executions * 1e3, "cpu_ms": cpu / executions * 1e3, "wal_mb": wal / 1e6}


def one(executions: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="polyfn-wal-"))
    try:
        print(json.dumps(asyncio.run(measure(executions, data))))
    finally:
        shutil.rmtree(data)


def run(src: Path, executions: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, __file__, "--one", "--executions", str(executions)], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--executions", type=int, default=2000, help="executions, one after the other")
    ap.add_argument("--vs", type=Path, help="another tree's src: its code and this tree's, alternately")
    ap.add_argument("--rounds", type=int, default=3, help="with --vs: measurements of each")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args.executions)
        return
    trees = [("other", args.vs), ("this", SRC)] if args.vs else [("this", SRC)]
    worst = 0.0
    for _ in range(args.rounds if args.vs else 1):
        for name, src in trees:
            r = run(src, args.executions)
            load = os.getloadavg()[0]
            print(f"{name}: {args.executions} executions of {STATES} states: wall {r['wall_ms']:.3f} ms, "
                  f"CPU {r['cpu_ms']:.3f} ms per execution; WAL {r['wal_mb']:.1f} MB (load {load:.1f})")
            if name == "this":
                worst = max(worst, r["wal_mb"])
    print(f"WAL at most {TARGET_MB:.0f} MB: {'met' if worst <= TARGET_MB else 'NOT met'} ({worst:.1f} MB)")


if __name__ == "__main__":
    main()
