"""Shared helpers for the benchmarks: a polyfn server in a temp data dir, wrk, statistics and tables.

Only the standard library (plus the polyfn package the venv already has): the benchmarks start every
process they measure themselves, on free ports, and stop them when done.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HELLO_NATIVE = "def handler(event, context):\n    return 'Hello World!'\n"


# --- processes and ports ------------------------------------------------------------------------------


_given_ports: set[int] = set()


def free_port() -> int:
    """A port nobody listens on, never one this process handed out before: bind(0)-then-close may give the
    same port twice in a row, and a server started with it as both --port and --storage-port fails."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """Poll until `GET path` answers (any status below 500), or fail with the process's exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before answering on port {port}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            if status < 500:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port} within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it does not go."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_thread_cpu(pid: int) -> float:
    """User + system CPU seconds of the process's main thread (the event loop of a polyfn server), 0 when gone."""
    try:
        stat = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> list[int]:
    """`root` and every live descendant (server, zygotes, instances; gunicorn and its workers)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU time of `root` and every live descendant."""
    return sum(cpu_seconds(pid) for pid in descendants(root))


def wait_idle(pid: int, threshold: float = 0.05, window: float = 0.25, timeout: float = 15.0) -> None:
    """Wait until process `pid` uses less than `threshold` of a core over `window` (e.g. a server flushing
    records after a load test), so one measurement does not pay for the previous one's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(window)
        if cpu_seconds(pid) - before < threshold * window:
            return


def machine_busy(window: float = 0.5) -> float:
    """Fraction of all CPUs busy over `window` seconds (other work on the machine skews the figures)."""

    def sample() -> tuple[int, int]:
        vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = vals[3] + vals[4]
        return sum(vals), idle

    try:
        t0, i0 = sample()
        time.sleep(window)
        t1, i1 = sample()
    except OSError:
        return 0.0
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def print_header(title: str) -> None:
    m = machine_info()
    busy = machine_busy()
    print(f"# {title}")
    print(f"machine: {m['cpus']} CPUs ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}")
    if busy > 0.15:
        print(f"warning: the machine is {busy:.0%} busy before the run; figures will be noisy")
    print()


# --- a polyfn server -----------------------------------------------------------------------------------


class Http:
    """One persistent HTTP/1.1 connection (so TCP setup is paid once, not per measured request)."""

    def __init__(self, port: int, key: str = "", timeout: float = 60.0):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        hdrs = dict(self.headers)
        if headers:
            hdrs.update(headers)
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        self.conn.request(method, path, body=body, headers=hdrs)
        resp = self.conn.getresponse()
        return resp.status, resp.headers, resp.read()

    def json(self, method: str, path: str, body: Any = None) -> Any:
        status, _, data = self.request(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {data[:500]!r}")
        return json.loads(data)

    def close(self) -> None:
        self.conn.close()


class PolyfnServer:
    """`polyfn serve` on a free port with a throw-away data dir; a context manager."""

    def __init__(self, log_level: str = "INFO", env: dict[str, str] | None = None,
                 preexec: Callable[[], None] | None = None):
        self.log_level = log_level
        self.extra_env = env or {}
        self.preexec = preexec  # run in the server's process before exec (e.g. join a cgroup to meter it)
        self.port = 0
        self.key = ""
        self.tmp: tempfile.TemporaryDirectory[str] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.api: Http | None = None
        self.isolation = "?"
        self.python_argv = [sys.executable, "-m", "polyfn"]  # how the server is started (bench/soak.py wraps it)
        self.start_timeout = 30.0  # seconds until /healthz must answer

    def __enter__(self) -> PolyfnServer:
        self.tmp = tempfile.TemporaryDirectory(prefix="polyfn-bench-")
        data = Path(self.tmp.name) / "data"
        self.log_path = Path(self.tmp.name) / "server.log"
        self.port = free_port()
        env = {**os.environ, "POLYFN_LOG_LEVEL": self.log_level, **self.extra_env}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*self.python_argv, "serve", "--port", str(self.port), "--data-dir", str(data),
                 "--storage-port", str(free_port())],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=self.preexec,
            )
        try:
            wait_http(self.port, "/healthz", self.proc, self.start_timeout)
        except RuntimeError as e:
            self.__exit__(None, None, None)
            raise RuntimeError(f"polyfn did not start: {e}\n{self.log_tail()}") from None
        self.key = (data / "admin.key").read_text().strip()
        self.api = Http(self.port, self.key)
        m = re.search(r'"msg": "instance isolation: ([^"]*)"', self.log_path.read_text())
        self.isolation = m.group(1) if m else "?"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.api is not None:
            self.api.close()
        if self.proc is not None:
            stop_process(self.proc)
        if self.tmp is not None:
            self.tmp.cleanup()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def deploy(self, name: str, files: dict[str, str], **spec: Any) -> dict[str, Any]:
        assert self.api is not None
        return self.api.json("PUT", f"/v1/functions/{name}", {"files": files, **spec})

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


# --- wrk ---------------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    raw: str
    cpu_us_per_req: float = float("nan")  # CPU of the measured server's process tree per request


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> WrkResult:
    def find(pattern: str) -> re.Match[str]:
        m = re.search(pattern, out, re.MULTILINE)
        if not m:
            raise ValueError(f"cannot parse wrk output ({pattern!r} missing):\n{out}")
        return m

    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.MULTILINE)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        rps=float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        requests=int(find(r"^\s+(\d+) requests in").group(1)),
        p50_ms=pct.get("50", float("nan")),
        p90_ms=pct.get("90", float("nan")),
        p99_ms=pct.get("99", float("nan")),
        max_ms=_ms(find(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)").group(1)),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
        raw=out,
    )


def wrk_path() -> str:
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    return path


def run_wrk(url: str, connections: int, duration: int, threads: int = 1, script: str | None = None,
            timeout_s: int = 10, cpus: set[int] | None = None) -> WrkResult:
    """`wrk -t1 -cN -dDs --latency URL`; one wrk thread, since the machine has only 2 cores; `cpus`: the CPUs
    wrk may run on (None: any)."""
    cmd = [wrk_path(), f"-t{threads}", f"-c{connections}", f"-d{duration}s", f"--timeout={timeout_s}s",
           "--latency"]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    if cpus:
        cmd = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    return parse_wrk(out)


# --- statistics and tables ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of `values`."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def fmt(v: float, digits: int = 2) -> str:
    return "n/a" if v != v else f"{v:,.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, columns padded so it also reads well in a terminal."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield Path(d)
