"""What the root filesystem and the default network (`egress`) cost: cold start and warm throughput, with the
two layers on and off (`POLYFN_SANDBOX_DISABLE=root,egress`), two servers in the same run, interleaved.

Built for a shared 2-core machine, where another process's burst moves a single figure by ±30 %:

* **interleaved**: "on" and "off" alternate sample by sample in ABBA order (on, off, off, on, …), so drift
  and bursts hit both; the samples are grouped in rounds and each round gives one on/off ratio (median of
  its "on" samples ÷ median of its "off" samples). The verdict uses the **median of the round ratios**; the
  **spread** (lowest–highest round ratio) shows how much noise there was. A spread wider than the target
  says the run cannot decide it: re-run on a quiet machine.
* **CPU time per call, not only wall time**: the CPU the node's whole process tree spent (server, zygotes,
  instances, reaped children included: utime + stime + cutime + cstime from /proc), per cold start and per
  warm request. Contention stretches wall time much more than CPU time, so the CPU rows show what a layer
  really costs when the wall rows are noisy.

Rows:
  * cold start from a function zygote (no instance → first response; the module already imported in the
    zygote, which built the root and the veth once): the cold path most calls take — **target**;
  * warm throughput, `wrk -t1 -c32` on `GET /fn/hot` (an idle instance per connection slot) — **target**;
  * first cold start of a new revision (redeploy → first response, forked from the runtime zygote): the root
    filesystem's per-function part is built on this path (information, not a target).

    .venv/bin/python bench/rootfs_egress.py            # 6 rounds × 10 cold samples, 6 wrk rounds of 3 s
    .venv/bin/python bench/rootfs_egress.py --quick    # 3 rounds × 6, 3 wrk rounds of 2 s

Target (issue 27): on/off within 5 % for the zygote cold start and the warm throughput; printed as met /
NOT met, for wall time and for CPU time per call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from _common import HELLO_NATIVE, Http, PolyfnServer, descendants, machine_busy, print_header, run_wrk, table
from coldstart import kill_instances, polyfn_sample, wait_zygote, zygote_sample

#: "off" is the node as it was before these layers: the host's root and the host network (`network: host`)
CONFIGS = {"on": {"POLYFN_SANDBOX_DISABLE": ""}, "off": {"POLYFN_SANDBOX_DISABLE": "root,egress"}}
NETWORK = {"on": "egress", "off": "host"}
TARGET = 0.05
_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds of `root`'s process tree: every live descendant's own time and that of the children it
    reaped (so instances that exited still count, through the zygote that waited for them). In clock
    ticks (10 ms): coarse per sample, fine over a round."""
    total = 0
    for pid in descendants(root):
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / _TICK


class CpuMeter:
    """The CPU a server and everything it starts spends. Where cgroup v1's `cpuacct` is its own hierarchy
    (polyfn never moves instances in it), the server starts in a cpuacct cgroup of its own: nanosecond
    counts of every process it ever started, exited ones included. Else its process tree from /proc."""

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self, tag: str):
        self.dir: Path | None = None
        self.pid = 0
        if os.geteuid() == 0 and (self.ROOT / "cpuacct.usage").exists() and \
                not (self.ROOT / "cpu.shares").exists():  # not co-mounted with cpu (which polyfn uses)
            d = self.ROOT / f"polyfn-bench-{os.getpid()}-{tag}"
            try:
                d.mkdir(exist_ok=True)
                self.dir = d
            except OSError:
                pass

    @property
    def how(self) -> str:
        return "cgroup v1 cpuacct (ns)" if self.dir else "/proc process tree (10 ms ticks)"

    def join(self) -> None:
        """preexec of the server: enter the cgroup before exec, so all it forks is counted."""
        if self.dir is not None:
            (self.dir / "cgroup.procs").write_text(str(os.getpid()))

    def seconds(self) -> float:
        if self.dir is not None:
            return int((self.dir / "cpuacct.usage").read_text()) / 1e9
        return tree_cpu(self.pid)

    def close(self) -> None:
        if self.dir is None:
            return
        for _ in range(50):  # the server's last processes may take a moment to be gone
            try:
                self.dir.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def order(i: int) -> tuple[str, str]:
    """ABBA: on, off | off, on | on, off …"""
    return ("on", "off") if i % 2 == 0 else ("off", "on")


class Series:
    """One measure for both configurations, sample values kept per round."""

    def __init__(self, name: str, unit: str, higher_is_better: bool = False, target: bool = False):
        self.name, self.unit, self.higher, self.target = name, unit, higher_is_better, target
        self.rounds: list[dict[str, list[float]]] = []

    def new_round(self) -> None:
        self.rounds.append({"on": [], "off": []})

    def add(self, config: str, value: float) -> None:
        self.rounds[-1][config].append(value)

    def values(self, config: str) -> list[float]:
        return [v for r in self.rounds for v in r[config]]

    def ratios(self) -> list[float]:
        return [statistics.median(r["on"]) / statistics.median(r["off"]) for r in self.rounds
                if r["on"] and r["off"] and statistics.median(r["off"]) > 0]

    def row(self) -> list[str]:
        def summary(config: str) -> str:
            v = sorted(self.values(config))
            if not v:
                return "n/a"
            q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0], v[0], v[0]]
            return f"{statistics.median(v):,.{_digits(v)}f} ({q[0]:,.{_digits(v)}f}–{q[2]:,.{_digits(v)}f})"

        ratios = self.ratios()
        if not ratios:
            return [self.name, summary("on"), summary("off"), "n/a", "n/a", "n/a"]
        mid = statistics.median(ratios)
        spread = f"{min(ratios):.3f}–{max(ratios):.3f}"
        verdict = ""
        if self.target:
            ok = mid >= 1 - TARGET if self.higher else mid <= 1 + TARGET
            verdict = "met" if ok else "NOT met"
            if max(ratios) - min(ratios) > 2 * TARGET:
                verdict += " (noisy: rounds span more than ±5 %)"
        return [f"{self.name} ({self.unit})", summary("on"), summary("off"), f"{mid:.3f}", spread, verdict or "info"]


def _digits(v: list[float]) -> int:
    return 0 if statistics.median(v) >= 100 else 2


def cold_request(client: Http, name: str) -> float:
    """ms of one request that must be a cold start (the bench killed the function's instances)."""
    t0 = time.perf_counter()
    status, headers, body = client.request("GET", f"/fn/{name}")
    ms = (time.perf_counter() - t0) * 1000
    if status != 200 or body != b"Hello World!" or headers.get("x-polyfn-cold") != "true":
        raise RuntimeError(f"{name}: {status} cold={headers.get('x-polyfn-cold')} {body[:300]!r}")
    return ms


def measured(meter: CpuMeter, sample: Callable[[], float], settle: float) -> tuple[float, float]:
    """(wall ms of `sample`, CPU ms of the node from just before it to `settle` s after)."""
    c0 = meter.seconds()
    ms = sample()
    time.sleep(settle)  # the work after the response (the activation's record, the next pre-forked blank)
    return ms, (meter.seconds() - c0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6, help="rounds of cold samples (one on/off ratio each)")
    ap.add_argument("--samples", type=int, default=10, help="cold samples per configuration per round")
    ap.add_argument("--first-samples", type=int, default=10, help="new-revision cold starts per configuration")
    ap.add_argument("--wrk-rounds", type=int, default=6, help="wrk rounds per configuration")
    ap.add_argument("--duration", type=int, default=3, help="seconds per wrk round")
    ap.add_argument("--settle", type=float, default=0.1, help="seconds after a cold response before reading CPU")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.samples, args.first_samples, args.wrk_rounds, args.duration = 3, 6, 4, 3, 2
    print_header("root filesystem + egress network: on vs off (POLYFN_SANDBOX_DISABLE=root,egress, network host)")
    busy_before = machine_busy()
    meters = {k: CpuMeter(k) for k in CONFIGS}
    servers = {k: PolyfnServer(env=env, preexec=meters[k].join).__enter__() for k, env in CONFIGS.items()}
    for k, s in servers.items():
        assert s.proc is not None
        meters[k].pid = s.proc.pid
    clients: dict[str, Http] = {}
    zyg_wall = Series("cold start from the function zygote, wall", "ms", target=True)
    zyg_cpu = Series("cold start from the function zygote, CPU of the node", "ms", target=True)
    first_wall = Series("first cold start of a new revision, wall", "ms")
    tput = Series("warm throughput, wrk -c32", "req/s", higher_is_better=True, target=True)
    tput_cpu = Series("warm request, CPU of the node", "µs/request", target=True)
    info = ""
    try:
        for k, s in servers.items():
            print(f"{k:>3}: {s.isolation}")
            clients[k] = Http(s.port)
            net = NETWORK[k]
            s.deploy("zhello", {"handler.py": HELLO_NATIVE}, network=net)
            s.deploy("hot", {"handler.py": HELLO_NATIVE}, max_instances=4, concurrency=8, network=net)
            orig = s.deploy
            s.deploy = lambda name, files, _o=orig, _n=net, **kw: _o(name, files, network=_n, **kw)  # type: ignore[method-assign]
            status, _, _ = clients[k].request("GET", "/fn/zhello")
            assert status == 200, s.log_tail()
            wait_zygote(s, "zhello")
            zygote_sample(s, clients[k], "zhello", b"Hello World!")  # unmeasured warm-up
        # 1. cold starts from the function zygote (no redeploys meanwhile: their zygote builds and drains
        #    would load the machine during this phase)
        n = 0
        for _ in range(args.rounds):
            zyg_wall.new_round()
            zyg_cpu.new_round()
            for _ in range(args.samples):
                for k in order(n):
                    kill_instances(servers[k], "zhello")  # the next request is a fork of the zygote
                    time.sleep(0.02)
                    wall, cpu = measured(meters[k], lambda c=clients[k]: cold_request(c, "zhello"), args.settle)
                    zyg_wall.add(k, wall)
                    zyg_cpu.add(k, cpu)
                n += 1
        info = zygote_sample(servers["on"], clients["on"], "zhello", b"Hello World!")[2]
        # 2. a new revision's first start (information)
        first_wall.new_round()
        for i in range(-1, args.first_samples):
            for k in order(i + 1):
                cold, _, _, is_cold = polyfn_sample(servers[k], clients[k], i, args.settle)
                if i >= 0 and is_cold:
                    first_wall.add(k, cold)
        # 3. warm throughput, ABBA rounds, with the node's CPU per request
        for r in range(args.wrk_rounds):
            tput.new_round()
            tput_cpu.new_round()
            for k in order(r):
                c0 = meters[k].seconds()
                res = run_wrk(servers[k].url("/fn/hot"), 32, args.duration)
                c1 = meters[k].seconds()
                tput.add(k, res.rps)
                tput_cpu.add(k, (c1 - c0) * 1e6 / max(res.requests, 1))
                time.sleep(0.5)
        busy_after = machine_busy()
        print()
        print(table(["measure", "on: median (p25–p75)", "off: median (p25–p75)", "on/off (median of rounds)",
                     "rounds' on/off span", "target ≤ 5 %"],
                    [x.row() for x in (zyg_wall, zyg_cpu, tput, tput_cpu, first_wall)]))
        print(f"\nrounds: {args.rounds} × {args.samples} cold samples per configuration, {args.wrk_rounds} wrk rounds "
              f"of {args.duration} s; machine busy {busy_before:.0%} before, {busy_after:.0%} after (other work "
              "than this run's: wall rows are noisy above ~20 %, the CPU rows much less); CPU from "
              f"{meters['on'].how}")
        print(f"zygote instance info (on): {info[:300]}")
    finally:
        for c in clients.values():
            c.close()
        for s in servers.values():
            s.__exit__(None, None, None)
        for m in meters.values():
            m.close()


if __name__ == "__main__":
    main()
