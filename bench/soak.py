"""Soak: a node at full warm load for a long run (default 10 minutes), its resources sampled every 20 s.

One polyfn node (full sandbox, metrics on, every invocation recorded), one warm hello function, and
`wrk -t1 -c32` against `/fn/hello` for the whole run. Every `--every` seconds the script samples the
server process: RSS, open file descriptors, threads; and the node: the function's instances and every
process under the server (zygotes, instances and their helpers), and the invocations counted so far
(`/metrics`), so each slice's throughput shows too. It prints the curve, then the verdict (issue 24,
target 8): after the warm-up (`--warmup`, default 60 s) the server's RSS stays within 10 % of its value
at the end of the warm-up, and fds, threads, instances and processes do not grow (the highest value of
the run's second half is no higher than the first half's).

    .venv/bin/python bench/soak.py                       # 10 minutes
    .venv/bin/python bench/soak.py --duration 120        # a shorter run while iterating
    .venv/bin/python bench/soak.py --duration 120 --tracemalloc   # + what grew, per slice (slow)

`--tracemalloc` starts the server under tracemalloc (5 frames) and, at each sample, has it write a
snapshot (SIGUSR1, handled by a small wrapper, nothing in polyfn itself): the script prints the 8
allocation sites that grew most between the end of the warm-up and the end of the run, and the object
types whose counts grew. Throughput is then far lower; the RSS figures of such a run are not the
verdict's.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HELLO_NATIVE, Http, PolyfnServer, descendants, fmt, print_header, table, wrk_path

#: the server under tracemalloc: SIGUSR1 writes a snapshot and the gc's type counts to $SOAK_DUMP.N
WRAPPER = """
import collections, gc, os, pickle, runpy, signal, sys, tracemalloc
tracemalloc.start(5)
n = [0]
def dump(*_):
    n[0] += 1
    base = os.environ["SOAK_DUMP"] + f".{n[0]}"
    tracemalloc.take_snapshot().dump(base + ".snap")
    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    with open(base + ".types", "wb") as f:
        pickle.dump(dict(counts), f)
signal.signal(signal.SIGUSR1, dump)
sys.argv = ["polyfn", *sys.argv[1:]]
runpy.run_module("polyfn", run_name="__main__")
"""


def proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "Threads"):
                out[k] = int(v.split()[0])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        pass
    return out


def invocations(api: Http) -> int:
    status, _, body = api.request("GET", "/metrics")
    if status != 200:
        return -1
    return sum(int(float(m)) for m in re.findall(rb'^polyfn_invocations_total\{[^}]*function="hello"[^}]*\} (\S+)',
                                                  body, re.MULTILINE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--duration", type=int, default=600, help="seconds of load")
    ap.add_argument("--every", type=int, default=20, help="seconds between samples")
    ap.add_argument("--warmup", type=int, default=60, help="seconds before the RSS baseline")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--tracemalloc", action="store_true", help="say what grew (slow; see the module doc)")
    args = ap.parse_args()
    print_header(f"soak: {args.duration} s of wrk -t1 -c{args.connections} on a warm function, "
                 f"sampled every {args.every} s")
    dump_dir = tempfile.TemporaryDirectory(prefix="polyfn-soak-")
    env: dict[str, str] = {}
    wrapper = Path(dump_dir.name) / "traced.py"
    if args.tracemalloc:
        wrapper.write_text(WRAPPER)
        env["SOAK_DUMP"] = str(Path(dump_dir.name) / "dump")
    server = PolyfnServer(env=env)
    if args.tracemalloc:
        server.python_argv = [sys.executable, str(wrapper)]  # read by PolyfnServer (see _common)
        server.start_timeout = 300.0  # imports under tracemalloc are slow
    with server:
        assert server.api is not None and server.proc is not None
        pid = server.proc.pid
        server.deploy("hello", {"handler.py": HELLO_NATIVE})
        for _ in range(3):
            server.api.request("GET", "/fn/hello")
        print(f"polyfn: instance isolation: {server.isolation}\n")
        wrk = subprocess.Popen([wrk_path(), "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--timeout=10s",
                                server.url("/fn/hello")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(wrk.stdout.read() if wrk.stdout else ""), daemon=True)
        reader.start()
        t0 = time.monotonic()
        samples: list[dict[str, float]] = []
        api = Http(server.port, server.key)  # a connection per sample: an idle one is closed after 5 s
        last_n, last_t = invocations(api), t0
        api.close()
        while True:
            time.sleep(max(0.0, t0 + (len(samples) + 1) * args.every - time.monotonic()))
            now = time.monotonic()
            st = proc_status(pid)
            api = Http(server.port, server.key)
            inst = api.json("GET", "/v1/functions/hello/instances").get("instances", [])
            n = invocations(api)
            api.close()
            samples.append({"t": now - t0, "rss": st.get("VmRSS", 0) / 1024, "fds": st.get("fds", 0),
                            "threads": st.get("Threads", 0), "instances": len(inst),
                            "procs": len(descendants(pid)) - 1, "rps": (n - last_n) / (now - last_t),
                            "load": float(Path("/proc/loadavg").read_text().split()[0])})
            last_n, last_t = n, now
            if args.tracemalloc:
                os.kill(pid, signal.SIGUSR1)
                wait_for(Path(f"{env['SOAK_DUMP']}.{len(samples)}.types"))
            if now - t0 >= args.duration - 1 or wrk.poll() is not None:
                break
        wrk.wait(timeout=60)
        reader.join(timeout=10)
    rows = [[f"{s['t']:.0f}", fmt(s["rss"], 1), f"{s['fds']:.0f}", f"{s['threads']:.0f}", f"{s['instances']:.0f}",
             f"{s['procs']:.0f}", fmt(s["rps"], 0), f"{s['load']:.1f}"] for s in samples]
    print(table(["t (s)", "server RSS (MB)", "fds", "threads", "instances", "processes", "req/s (slice)", "load"],
                rows))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out[0] if out else "")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out[0] if out else "")
    print(f"\nwrk: {m.group(1) if m else '?'} req/s over the run, {errors.group(1) if errors else 0} non-2xx")
    verdict(samples, args.warmup)
    if args.tracemalloc:
        grew(Path(dump_dir.name) / "dump", samples, args)
    dump_dir.cleanup()


def wait_for(path: Path, timeout: float = 120.0) -> None:
    """Until the server has written `path` (its snapshot is written first): a dump takes seconds."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def verdict(samples: list[dict[str, float]], warmup: int) -> None:
    after = [s for s in samples if s["t"] > warmup + 1]
    warm = [s for s in samples if s["t"] <= warmup + 1]
    if not warm or len(after) < 2:
        print("too short to judge: run longer than the warm-up plus two samples")
        return
    base = warm[-1]["rss"]
    peak = max(s["rss"] for s in after)
    ok_rss = peak <= base * 1.10
    print(f"server RSS after the warm-up: {base:.1f} MB at {warm[-1]['t']:.0f} s, at most {peak:.1f} MB after "
          f"({(peak / base - 1) * 100:+.1f} %), {after[-1]['rss']:.1f} MB at the end — within 10 %: "
          f"{'met' if ok_rss else 'NOT met'}")
    half = len(after) // 2
    ok_all = ok_rss
    for key in ("fds", "threads", "instances", "procs"):
        first, second = max(s[key] for s in after[:half]), max(s[key] for s in after[half:])
        ok = second <= first
        ok_all = ok_all and ok
        print(f"{key}: highest {first:.0f} in the first half after the warm-up, {second:.0f} in the second — "
              f"{'no growth' if ok else 'GREW'}")
    print(f"soak (RSS within 10 %, no growth in fds, threads, instances): {'met' if ok_all else 'NOT met'}")


def grew(dump: Path, samples: list[dict[str, float]], args: argparse.Namespace) -> None:
    import pickle
    import tracemalloc

    first = next((i + 1 for i, s in enumerate(samples) if s["t"] > args.warmup), 1)
    last = len(samples)
    a, b = Path(f"{dump}.{first}.snap"), Path(f"{dump}.{last}.snap")
    if not (a.exists() and b.exists()) or first == last:
        print("tracemalloc: no snapshots to compare")
        return
    diff = tracemalloc.Snapshot.load(str(b)).compare_to(tracemalloc.Snapshot.load(str(a)), "traceback")
    print(f"\ntracemalloc: what grew between sample {first} and sample {last}")
    for stat in diff[:8]:
        print(f"  {stat.size_diff / 1024:+,.0f} kB ({stat.count_diff:+,} blocks)")
        for line in stat.traceback.format()[-10:]:
            print("    " + line)
    ta = pickle.loads(Path(f"{dump}.{first}.types").read_bytes())
    tb = pickle.loads(Path(f"{dump}.{last}.types").read_bytes())
    growth = sorted(((tb[k] - ta.get(k, 0), k) for k in tb), reverse=True)[:12]
    print("gc-tracked objects that grew: " + ", ".join(f"{k} {d:+,}" for d, k in growth if d > 0))


if __name__ == "__main__":
    main()
