"""Noisy neighbours: a quick victim function's p99 while an attacker function misbehaves, against the victim's
p99 alone, in the same run and on the same node.

Attacks (4 looping callers of the attacker each, `--callers`):
  logs    prints 1,000 lines of 16 KB per call (also: the data dir's growth and the node's peak RSS)

For each attack the table shows the victim's p99 alone and under the attack, their ratio, and whether it is
within the target (≤ 5× the baseline). The machine may be shared with other work: compare the ratios, not
the absolute figures.

    .venv/bin/python bench/neighbours.py                    # every attack, 15 s each
    .venv/bin/python bench/neighbours.py --attack logs --seconds 30
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HELLO_NATIVE, PolyfnServer, fmt, print_header, run_wrk, table, wrk_path

TARGET = 5.0  # victim p99 under an attack / alone

ATTACKS = {
    "logs": "def handler(event, context):\n    line = 'x' * 16384\n    for _ in range(1000):\n        print(line)\n"
            "    return 'done'\n",
}


def dir_bytes(path: Path) -> int:
    """Bytes the files under `path` take on disk."""
    total = 0
    for p in path.rglob("*"):
        try:
            st = p.lstat()
        except OSError:
            continue
        if p.is_file():
            total += st.st_blocks * 512
    return total


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Peak:
    """The largest RSS of a process, sampled every 0.2 s while running."""

    def __init__(self, pid: int):
        self.pid, self.kb, self._stop = pid, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.kb = max(self.kb, rss_kb(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.kb


def attack(server: PolyfnServer, name: str, seconds: int, callers: int, victim_conns: int) -> dict[str, float]:
    """The victim's p99 while `callers` loop on the attacker; plus the data dir's growth and the peak RSS."""
    assert server.proc is not None and server.tmp is not None
    data = Path(server.tmp.name) / "data"
    flood = subprocess.Popen([wrk_path(), "-t1", f"-c{callers}", f"-d{seconds + 3}s", "--timeout=60s",
                              server.url(f"/fn/attack-{name}")], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)  # the attacker's instances start and the flood reaches its pace
        size0, t0, peak = dir_bytes(data), time.monotonic(), Peak(server.proc.pid)
        under = run_wrk(server.url("/fn/victim"), victim_conns, seconds)
        growth = (dir_bytes(data) - size0) / (time.monotonic() - t0)
        rss = peak.stop()
    finally:
        flood.kill()
        flood.wait()
    return {"p99": under.p99_ms, "rps": under.rps, "errors": under.non_2xx + under.socket_errors,
            "growth_mb_s": growth / 1e6, "rss_mb": rss / 1024, "data_mb": dir_bytes(data) / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--attack", action="append", choices=sorted(ATTACKS), help="default: every attack")
    ap.add_argument("--seconds", type=int, default=15, help="measured seconds per phase")
    ap.add_argument("--callers", type=int, default=4, help="looping callers of the attacker")
    ap.add_argument("--victim-connections", type=int, default=2)
    args = ap.parse_args()
    attacks = args.attack or sorted(ATTACKS)
    print_header(f"noisy neighbours: victim p99 alone vs under {', '.join(attacks)} "
                 f"({args.callers} looping callers, {args.seconds} s per phase)")
    rows = []
    with PolyfnServer() as server:
        server.deploy("victim", {"handler.py": HELLO_NATIVE})
        for name in attacks:
            server.deploy(f"attack-{name}", {"handler.py": ATTACKS[name]}, timeout=30)
        run_wrk(server.url("/fn/victim"), args.victim_connections, 2)  # warm
        for name in attacks:
            base = run_wrk(server.url("/fn/victim"), args.victim_connections, args.seconds)
            got = attack(server, name, args.seconds, args.callers, args.victim_connections)
            ratio = got["p99"] / base.p99_ms if base.p99_ms else float("nan")
            rows.append([name, fmt(base.p99_ms), fmt(got["p99"]), f"{fmt(ratio, 1)}×",
                         "met" if ratio <= TARGET else "NOT met", fmt(base.rps, 0), fmt(got["rps"], 0),
                         str(int(got["errors"])), fmt(got["growth_mb_s"]), fmt(got["data_mb"], 0),
                         fmt(got["rss_mb"], 0)])
    print(table(["attack", "victim p99 alone ms", "under attack ms", "ratio", f"≤ {TARGET:g}×", "victim req/s alone",
                 "under attack", "victim errors", "data dir MB/s", "data dir MB", "node peak RSS MB"], rows))
    print(f"\nisolation: {server.isolation}")
    print("same-run ratios; the machine may be shared with other work, which moves absolute figures")


if __name__ == "__main__":
    main()
