"""Streamed responses (issue #22): chunk latency, a 1 GiB stream's throughput and the server's memory while it
flows, and buffered throughput before/after this change in the same run. Prints met / NOT met per target.

    .venv/bin/python bench/streaming.py                 # everything (~2 min)
    .venv/bin/python bench/streaming.py --quick         # fewer samples, 256 MiB, one wrk round each
    .venv/bin/python bench/streaming.py --baseline REF  # the buffered comparison against git REF (default: 8e13bbf,
                                                        # main just before streamed responses were merged)

Targets:
- chunk latency p50 <= 1 ms on loopback, Python and Node: the function yields/writes its monotonic clock
  (CLOCK_MONOTONIC is one clock for every process of the machine), the client (a raw socket, reading the
  chunked body as it comes) subtracts it from its own clock on arrival. One chunk every 2 ms.
- a 1 GiB streamed response (256 KiB pieces of the same bytes, Python): the server process's RSS grows by
  <= 50 MB (sampled every 20 ms; the instance's own memory is the function's) and curl receives >= 500 MB/s.
- h2c passed through (`--h2c`, no target: a same-run ratio): Node's `http2.createServer()` as the program, reached
  through the node (`/fn/NAME`, prior knowledge) and directly (the same program as a host process on its own port):
  `h2load` requests/s on one connection with 16 streams in flight and on 4 connections, the node's own CPU per
  request, and the download rate of a 256 MiB response. Needs `h2load` (Debian
  `nghttp2-client`); skipped when it is missing.
- buffered throughput does not regress: `wrk -c32` on a hello function, this checkout against REF's source
  (extracted with `git archive` into a temp dir and run with PYTHONPATH), alternating, `--rounds` each;
  met when this checkout's median is >= 95 % of REF's (the noise of a shared 2-core machine is ~5 %).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HELLO_NATIVE,
    REPO,
    PolyfnServer,
    cpu_seconds,
    free_port,
    percentile,
    print_header,
    run_wrk,
    table,
    tree_cpu_seconds,
)

BEFORE_STREAMING = "8e13bbf"  # main just before streamed responses (issue #22) were merged

TICKS_PY = '''import time

def handler(event, context):
    n = int(event.get("n", 500))
    def ticks():
        for _ in range(n):
            time.sleep(0.002)
            yield f"{time.monotonic_ns()}\\n"
    return ticks(), 200, {"content-type": "text/plain"}
'''

TICKS_NODE = '''exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
  const n = Number((event.queryStringParameters || {}).n || 500);
  for (let i = 0; i < n; i++) {
    await new Promise((r) => setTimeout(r, 2));
    responseStream.write(`${process.hrtime.bigint()}\\n`);
  }
  responseStream.end();
});
'''

BIG_PY = '''def handler(event, context):
    total = int(event.get("mib", 1024)) << 20
    piece = b"x" * (int(event.get("kib", 256)) << 10)
    def chunks():
        for _ in range(total // len(piece)):
            yield piece
    return chunks()
'''


def read_ticks(port: int, path: str) -> list[float]:
    """GET a chunked body of `<monotonic ns>\\n` lines on a raw socket; each line's delay in ms on arrival."""
    delays: list[float] = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n".encode())
        buf = b""
        head_done = False
        while True:
            data = s.recv(65536)
            now = time.monotonic_ns()
            if not data:
                break
            buf += data
            if not head_done:
                if b"\r\n\r\n" not in buf:
                    continue
                buf = buf.split(b"\r\n\r\n", 1)[1]
                head_done = True
            # chunked framing: SIZE\r\nDATA\r\n; the data lines are what we want
            while b"\r\n" in buf:
                size_line, rest = buf.split(b"\r\n", 1)
                size = int(size_line, 16)
                if size == 0:
                    return delays
                if len(rest) < size + 2:
                    break
                for line in rest[:size].split(b"\n"):
                    if line:
                        delays.append((now - int(line)) / 1e6)
                buf = rest[size + 2:]
    return delays


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def big_stream(srv: PolyfnServer, mib: int) -> tuple[float, float, int, float]:
    """(MB/s, RSS growth MB, bytes, the server process's CPU ms per GiB) of one `mib` MiB stream read by curl."""
    assert srv.proc is not None
    pid = srv.proc.pid
    base = rss_kb(pid)
    cpu0 = cpu_seconds(pid)
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb(pid))
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_starttransfer} %{time_total}",
                          srv.url(f"/fn/big?mib={mib}")], capture_output=True, text=True, check=True).stdout
    done.set()
    t.join()
    cpu = cpu_seconds(pid) - cpu0
    size, ttfb, total = out.split()
    size_b = int(size)
    return size_b / 1e6 / (float(total) - float(ttfb)), (peak[0] - base) / 1024, size_b, cpu * 1000 / (size_b / 2**30)


H2C_NODE = """const http2 = require('http2');
const big = Buffer.alloc(1 << 20, 120);
http2.createServer().on('stream', (stream, headers) => {
  const mib = Number(new URL(headers[':path'], 'http://x').searchParams.get('mib') || 0);
  stream.respond({':status': 200});
  if (!mib) { stream.end('hi'); return; }
  let left = mib;
  const more = () => {
    while (left > 0) { left--; if (!stream.write(big)) { stream.once('drain', more); return; } }
    stream.end();
  };
  more();
}).listen(Number(process.env.PORT));
"""


def h2load(url: str, requests: int, conns: int, streams: int = 16) -> float:
    """Requests/s of `h2load` (prior knowledge on http://), checking that every request succeeded."""
    r = subprocess.run(["h2load", "-n", str(requests), "-c", str(conns), "-m", str(streams), url],
                       capture_output=True, text=True, timeout=300)
    done = next((ln for ln in r.stdout.splitlines() if ln.startswith("requests:")), "")
    assert f"{requests} succeeded" in done and "2xx" in r.stdout, r.stdout + r.stderr
    return float(next(ln for ln in r.stdout.splitlines() if ln.startswith("finished in")).split(",")[1].split()[0])


def download_rate(url: str) -> tuple[float, int]:
    """MB/s and bytes of one response's body, with `h2load` (curl 7.88 reports some h2c downloads short)."""
    r = subprocess.run(["h2load", "-n", "1", "-c", "1", url], capture_output=True, text=True, timeout=300)
    lines = r.stdout.splitlines()
    seconds = next(ln for ln in lines if ln.startswith("finished in")).split()[2].rstrip(",")
    data = next(ln for ln in lines if ln.startswith("traffic:")).rsplit("(", 1)[1].split(")")[0]
    elapsed = float(seconds[:-2]) / 1000 if seconds.endswith("ms") else float(seconds[:-1])
    return int(data) / elapsed / 1e6, int(data)


def h2c_rows(srv: PolyfnServer, quick: bool) -> list[list[str]]:
    """h2c through the node against the same program reached directly, in the same run (see the module's doc)."""
    import shutil

    if shutil.which("h2load") is None:
        return [["h2c pass-through", "skipped", "", "h2load missing (apt-get install nghttp2-client)"]]
    srv.deploy("h2c-bench", {"server.js": H2C_NODE}, runtime="http", handler="node server.js", h2c=True,
               concurrency=8, stream_max_duration=3600)
    with tempfile.TemporaryDirectory(prefix="polyfn-bench-h2c-") as tmp:
        Path(tmp, "server.js").write_text(H2C_NODE)
        port = free_port()
        direct = subprocess.Popen(["node", "server.js"], cwd=tmp, env={**os.environ, "PORT": str(port)})
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            via, own = srv.url("/fn/h2c-bench/"), f"http://127.0.0.1:{port}/"
            n = 5000 if quick else 20000
            rows = []
            for conns in (1, 4):
                h2load(via, 500, conns)  # warm (instances started, JIT)
                h2load(own, 500, conns)
                assert srv.proc is not None
                c0 = cpu_seconds(srv.proc.pid)
                a = h2load(via, n, conns)
                cpu = (cpu_seconds(srv.proc.pid) - c0) * 1e6 / n
                b = h2load(own, n, conns)
                rows.append([f"h2c req/s, h2load -c{conns} -m16 (node's own CPU {cpu:.0f} µs/request)",
                             f"{a:.0f} vs {b:.0f} direct ({a / b:.0%})", "", "same-run ratio"])
            mib = 64 if quick else 256
            a, size_a = download_rate(via + f"?mib={mib}")
            b, size_b = download_rate(own + f"?mib={mib}")
            assert size_a == size_b == mib << 20, (size_a, size_b)
            rows.append([f"h2c {mib} MiB download (h2load -n1)", f"{a:.0f} vs {b:.0f} MB/s direct "
                         f"({a / b:.0%})", "", "same-run ratio"])
            return rows
        finally:
            direct.kill()
            direct.wait()


def baseline_src(ref: str, into: Path) -> Path:
    """REF's `src/` extracted into `into` (git archive: the repository itself is not touched)."""
    tar_path = into / "base.tar"
    with tar_path.open("wb") as f:
        subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"], stdout=f, check=True)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples, a 256 MiB stream, one wrk round")
    ap.add_argument("--baseline", default=BEFORE_STREAMING,
                    help="git ref whose buffered throughput this is compared with (default: main before streaming)")
    ap.add_argument("--rounds", type=int, default=3, help="wrk rounds per server (buffered comparison)")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--skip-buffered", action="store_true", help="skip the buffered before/after comparison")
    ap.add_argument("--h2c", action="store_true", help="only the h2c pass-through against a direct connection")
    args = ap.parse_args()
    ticks = 200 if args.quick else 1000
    mib = 256 if args.quick else 1024
    rounds = 1 if args.quick else args.rounds
    print_header("streamed responses")
    results: list[list[str]] = []

    if args.h2c:
        with PolyfnServer(log_level="WARNING") as srv:
            results = h2c_rows(srv, args.quick)
        print(table(["measure", "value", "target", "verdict"], results))
        print(f"(load average while measuring: {os.getloadavg()[0]:.1f})")
        return
    with PolyfnServer(log_level="WARNING") as srv:
        srv.deploy("ticks", {"handler.py": TICKS_PY})
        srv.deploy("ticks-node", {"index.js": TICKS_NODE}, runtime="node", flavor="aws", handler="index.handler")
        srv.deploy("big", {"handler.py": BIG_PY}, timeout=300)
        for name, label in (("ticks", "Python generator"), ("ticks-node", "Node streamifyResponse")):
            read_ticks(srv.port, f"/fn/{name}?n=20")  # warm: the cold start is not a chunk's latency
            delays = read_ticks(srv.port, f"/fn/{name}?n={ticks}")
            p50, p99 = percentile(delays, 50), percentile(delays, 99)
            results.append([f"chunk latency, {label} (p50; p99 {p99:.3f} ms; {len(delays)} chunks)",
                            f"{p50:.3f} ms", "<= 1 ms", verdict(p50 <= 1.0 and len(delays) == ticks)])
        big_stream(srv, 16)  # warm
        rate, growth, size, cpu = big_stream(srv, mib)
        results.append([f"{mib} MiB stream: throughput (curl; the server process used {cpu:.0f} ms of CPU per GiB)",
                        f"{rate:.0f} MB/s", ">= 500 MB/s", verdict(rate >= 500 and size == mib << 20)])
        results.append([f"{mib} MiB stream: server RSS growth", f"{growth:.1f} MB", "<= 50 MB", verdict(growth <= 50)])
        results += h2c_rows(srv, args.quick)

    if not args.skip_buffered:
        with tempfile.TemporaryDirectory(prefix="polyfn-bench-base-") as tmp:
            src = baseline_src(args.baseline, Path(tmp))
            now: list[float] = []
            before: list[float] = []
            cpu_now: list[float] = []
            cpu_before: list[float] = []
            with PolyfnServer(log_level="WARNING") as cur, PolyfnServer(
                    log_level="WARNING", env={"PYTHONPATH": str(src)}) as base:
                for s in (cur, base):
                    s.deploy("hello", {"handler.py": HELLO_NATIVE})
                    run_wrk(s.url("/fn/hello"), 32, 1)  # warm
                for _ in range(rounds):
                    for s, rps, cpus in ((cur, now, cpu_now), (base, before, cpu_before)):
                        assert s.proc is not None
                        c0 = tree_cpu_seconds(s.proc.pid)
                        res = run_wrk(s.url("/fn/hello"), 32, args.duration)
                        rps.append(res.rps)
                        cpus.append((tree_cpu_seconds(s.proc.pid) - c0) * 1e6 / max(res.requests, 1))
            a, b = statistics.median(now), statistics.median(before)
            ca, cb = statistics.median(cpu_now), statistics.median(cpu_before)
            results.append([f"buffered /fn/hello req/s: this checkout vs {args.baseline} (wrk -c32, {rounds} rounds, "
                            f"{min(now):.0f}-{max(now):.0f} vs {min(before):.0f}-{max(before):.0f})",
                            f"{a:.0f} vs {b:.0f} ({a / b:.1%})", ">= 95 %", verdict(a >= 0.95 * b)])
            results.append([f"buffered /fn/hello: CPU µs per request of each server's process tree (median of {rounds})",
                            f"{ca:.0f} vs {cb:.0f} ({ca / cb:.1%})", "<= 105 %", verdict(ca <= 1.05 * cb)])

    print(table(["measure", "value", "target", "verdict"], results))
    print(f"(load average while measuring: {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
