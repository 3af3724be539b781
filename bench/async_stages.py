"""Where an async job's server CPU goes, stage by stage: accepting alone, draining alone, both at once, against a
synchronous call of the same function.

One `polyfn serve` (the node's SQLite queue, or with `--queue-url` a JetStream stream of the run's own), the function of
bench/async.py (`hello`: 4 instances, concurrency 1) and a second one, `held`, whose single instance sleeps through the
run: its jobs are accepted and then wait (one runs, its prefetch is held, the rest stay queued), so `wrk` on it
measures accepting with no dispatching. Each round, with `wrk -c C -d D`:

* **sync**: `POST /fn/hello` synchronously (the peer);
* **e2e**: `POST /fn/hello` with `X-Polyfn-Async: true` until every accepted job ran (as bench/async.py's saturated
  run), and within it **drain**: from wrk's end until the queue is empty (dispatching a backlog alone);
* **accept**: `POST /fn/held` async (accepting alone).

Per stage: the rate, and CPU ms per request or job of the server process, its main (event-loop) thread, each other
thread of its that used ≥ 2 µs a job (named when `py-spy` can name them: the queue file's, the activation writer's)
and the function's instances, from /proc.

    .venv/bin/python bench/async_stages.py
    .venv/bin/python bench/async_stages.py --queue-url nats://127.0.0.1:4222 -r 2 -d 5
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as common
from _common import Http, PolyfnServer

HELD = "import time\n\ndef handler(event, context):\n    time.sleep(600)\n    return 'late'\n"


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of `pid`, by thread id."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Python's names of the server's threads (thread id → name) from a second of `py-spy record`, if installed."""
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        return {}
    raw = f"/tmp/polyfn-bench-stages-{os.getpid()}.txt"
    subprocess.run([spy, "record", "-p", str(pid), "-d", "1", "-r", "20", "--idle", "--threads", "-f", "raw",
                    "-o", raw], capture_output=True, timeout=30)
    try:
        text = open(raw).read()
        os.unlink(raw)
    except OSError:
        return {}
    return {int(t): n.split(" ")[0] for t, n in re.findall(r"thread \((\d+)\): ([^;]+);", text)}


class Meter:
    def __init__(self, srv: PolyfnServer):
        assert srv.proc is not None
        self.pid = srv.proc.pid
        self.names = thread_names(self.pid)

    def snap(self) -> tuple[float, float, dict[int, float]]:
        return common.cpu_seconds(self.pid), common.tree_cpu_seconds(self.pid), thread_cpu(self.pid)

    def per(self, a: Any, b: Any, n: int) -> str:
        server = b[0] - a[0]
        cells = [f"server {server / n * 1000:.3f}", f"main {(b[2][self.pid] - a[2].get(self.pid, 0)) / n * 1000:.3f}"]
        for tid, sec in sorted(b[2].items()):
            d = (sec - a[2].get(tid, 0)) / n * 1000
            if tid != self.pid and d >= 0.002:
                cells.append(f"{self.names.get(tid, f'thread {tid}')} {d:.3f}")
        cells.append(f"instances {((b[1] - a[1]) - server) / n * 1000:.3f}")
        return ", ".join(cells)


def queued(srv: PolyfnServer) -> int:
    api = Http(srv.port, srv.key)  # (a fresh connection: the server closes idle keep-alive ones)
    try:
        q = api.json("GET", "/v1/queue")
    finally:
        api.close()
    return q["pending"] + q["running"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, default, what in (("-c", 64, "wrk connections"), ("-d", 5, "seconds of wrk per stage"),
                                ("-r", 2, "rounds")):
        ap.add_argument(flag, type=int, default=default, help=f"{what} (default {default})")
    ap.add_argument("--queue-url", default="", help="nats://…: the cluster's queue (a JetStream stream of the run's own)")
    args = ap.parse_args()
    common.wrk_path()
    env = {}
    if args.queue_url:
        env = {"POLYFN_QUEUE_URL": args.queue_url, "POLYFN_QUEUE_STREAM": f"STAGES_{secrets.token_hex(4).upper()}"}
    common.print_header(f"polyfn async jobs stage by stage ({'NATS JetStream' if env else 'SQLite queue'})")
    try:
        with common.temp_dir("polyfn-bench-stages-") as tmp, PolyfnServer(log_level="WARNING", env=env) as srv:
            sync_lua, async_lua = tmp / "sync.lua", tmp / "async.lua"
            sync_lua.write_text("wrk.method = 'POST'\nwrk.body = '{\"x\": 1}'\n")
            async_lua.write_text(sync_lua.read_text() + "wrk.headers['X-Polyfn-Async'] = 'true'\n")
            srv.deploy("hello", {"handler.py": common.HELLO_NATIVE}, concurrency=1, max_instances=4, min_instances=2)
            srv.deploy("held", {"handler.py": HELD}, concurrency=1, max_instances=1, min_instances=1, timeout=900)
            hello, held = srv.url("/fn/hello"), srv.url("/fn/held")
            common.run_wrk(hello, args.c, 2, script=str(sync_lua))  # warm-up
            common.run_wrk(hello, args.c, 2, script=str(async_lua))
            while queued(srv):
                time.sleep(0.05)
            m = Meter(srv)
            for r in range(args.r):
                print(f"round {r + 1}, load average {os.getloadavg()[0]:.1f}", flush=True)
                common.wait_idle(m.pid)
                a = m.snap()
                res = common.run_wrk(hello, args.c, args.d, script=str(sync_lua))
                common.wait_idle(m.pid)
                print(f"  sync    {res.rps:8,.0f}/s   {m.per(a, m.snap(), res.requests)}", flush=True)

                base = queued(srv)  # (held's jobs: they stay)
                common.wait_idle(m.pid)
                a, t0 = m.snap(), time.perf_counter()
                res = common.run_wrk(hello, args.c, args.d, script=str(async_lua))
                mid, t1 = m.snap(), time.perf_counter()
                left = queued(srv) - base
                while queued(srv) > base:
                    time.sleep(0.01)
                t2 = time.perf_counter()
                common.wait_idle(m.pid)
                b = m.snap()
                print(f"  e2e     {res.requests / (t2 - t0):8,.0f}/s   {m.per(a, b, res.requests)} "
                      f"(accepted {res.rps:,.0f}/s)", flush=True)
                if left > 200:
                    print(f"  drain   {left / (t2 - t1):8,.0f}/s   {m.per(mid, b, left)} ({left} left)", flush=True)

                common.wait_idle(m.pid)
                a = m.snap()
                res = common.run_wrk(held, args.c, args.d, script=str(async_lua))
                common.wait_idle(m.pid)
                print(f"  accept  {res.rps:8,.0f}/s   {m.per(a, m.snap(), res.requests)}"
                      f"{f' ({res.non_2xx} non-2xx)' if res.non_2xx else ''}", flush=True)
            srv.proc.kill()  # type: ignore[union-attr]  # (held's instance sleeps: no graceful stop to wait for)
    finally:
        if env:
            spec = importlib.util.spec_from_file_location("bench_async", Path(__file__).with_name("async.py"))
            assert spec is not None and spec.loader is not None
            bench_async = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(bench_async)
            bench_async.delete_stream(args.queue_url, env["POLYFN_QUEUE_STREAM"])


if __name__ == "__main__":
    main()
