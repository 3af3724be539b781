"""How long `polyfn serve --examples` (what `make run` starts) takes to answer /healthz, and the CPU the server
process spent until then (wall time on a busy machine is mostly waiting for a core; the CPU shows the work).

    .venv/bin/python bench/startup.py                 # 5 starts on a fresh data dir each, 5 on a reused one
    .venv/bin/python bench/startup.py --runs 3

Target (issue 18): `make run` answers /healthz in ≤ 3 s on a warm pip cache — printed as met / NOT met from
the median wall time of the fresh-data-dir starts (a newcomer's first `make run`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import free_port, machine_busy, print_header, table

TARGET_S = 3.0


def one_start(data_dir: str) -> tuple[float, float]:
    """(seconds until /healthz answered 200, CPU seconds of the server process by then)."""
    port = free_port()
    cmd = [sys.executable, "-m", "polyfn", "serve", "--port", str(port), "--data-dir", data_dir,
           "--storage-port", str(free_port()), "--examples"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"polyfn serve exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.01)
        wall = time.perf_counter() - t0
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="starts of each kind")
    args = ap.parse_args()
    print_header("polyfn serve --examples: time to /healthz")
    busy = machine_busy()
    rows = []
    fresh: list[tuple[float, float]] = []
    reused: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="polyfn-startup-") as tmp:
        kept = os.path.join(tmp, "kept")
        one_start(kept)  # unmeasured: creates the reused data dir (migrations, examples)
        for i in range(args.runs):
            fresh.append(one_start(os.path.join(tmp, f"fresh{i}")))
            reused.append(one_start(kept))
    for label, runs in (("fresh data dir (migrations run)", fresh), ("reused data dir", reused)):
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        rows.append([label, f"{statistics.median(walls):.2f} ({min(walls):.2f}–{max(walls):.2f})",
                     f"{statistics.median(cpus):.2f} ({min(cpus):.2f}–{max(cpus):.2f})"])
    print(table(["start", "wall s to /healthz: median (min–max)", "server CPU s by then"], rows))
    med = statistics.median(w for w, _ in fresh)
    print(f"\n/healthz within {TARGET_S:g} s of `polyfn serve --examples` (fresh data dir, median {med:.2f} s): "
          f"{'met' if med <= TARGET_S else 'NOT met'}; machine busy {busy:.0%} before the run"
          + (" (wall times here are mostly waiting for a core)" if busy > 0.2 else ""))


if __name__ == "__main__":
    main()
