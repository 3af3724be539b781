"""End-to-end fixtures: a real `polyfn serve` process on a free port, and the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from . import nodefork

REPO = Path(__file__).resolve().parents[2]


# Ports handed to servers the tests start. bind(port 0) then close is racy: the kernel may hand the
# same ephemeral port to the next caller (another xdist worker, or this one a moment later) before our
# server binds it; CI once saw `serve --port P --storage-port P`. So each worker takes ports from its own
# block below the ephemeral range (32768-60999), which the kernel never hands out by itself, in turn.
# Several checkouts may run their suites on one machine at once, each with the same worker names: each
# run starts at a random place in its block, so two runs rarely reach for the same port, and a server is
# only taken for ours once our process answers (see start_server).
_PORT_BLOCK = 1000
_PORT_BASE = 20000
_next_port = int.from_bytes(os.urandom(2), "big") % _PORT_BLOCK


def free_port() -> int:
    """A port no other test of this run is given, and nobody listens on right now."""
    global _next_port
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    block = _PORT_BASE + (int(worker) if worker.isdigit() else 0) % 12 * _PORT_BLOCK
    for _ in range(_PORT_BLOCK):
        port = block + _next_port
        _next_port = (_next_port + 1) % _PORT_BLOCK
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {block}-{block + _PORT_BLOCK - 1}")


class Server:
    """A running `polyfn serve` and helpers to talk to it (HTTP and CLI)."""

    def __init__(self, data_dir: Path, port: int, proc: subprocess.Popen[bytes] | nodefork.ForkedProcess,
                 log: Path):
        self.data_dir = data_dir
        self.port = port
        self.proc = proc
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self.key = (data_dir / "admin.key").read_text().strip()
        self.http = httpx.Client(base_url=self.url, timeout=60)
        self.api = httpx.Client(base_url=self.url, timeout=120, headers={"authorization": f"Bearer {self.key}"})

    def cli(self, *args: str, input: str | None = None, check: bool = False, env: dict[str, str] | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run the real `polyfn` CLI against this server (it finds URL and key from the data dir)."""
        e = {**os.environ, "POLYFN_DATA_DIR": str(self.data_dir), "NO_COLOR": "1", "COLUMNS": "200"}
        e.pop("POLYFN_URL", None)
        e.pop("POLYFN_API_KEY", None)
        if env:
            e.update(env)
        if nodefork.enabled():  # forked from the fork server, which has polyfn imported (nodefork.py)
            r = nodefork.run(list(args), e, REPO, input, timeout)
        else:
            r = subprocess.run([sys.executable, "-m", "polyfn", *args], capture_output=True, text=True, input=input,
                               env=e, timeout=timeout, cwd=REPO)
        if check and r.returncode != 0:
            raise AssertionError(f"polyfn {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def deploy(self, name: str, files: dict[str, str], **spec: Any) -> dict[str, Any]:
        r = self.api.post("/v1/functions", json={"name": name, "files": files, **spec})
        assert r.status_code in (200, 201), r.text
        return r.json()

    def activation(self, activation_id: str, within: float = 10) -> dict[str, Any]:
        """The activation, waiting up to `within` s for its record: a streamed response's record is made when
        the stream ends on the node, which may be just after the client has read the last chunk."""
        deadline = time.monotonic() + within
        while True:
            r = self.api.get(f"/v1/activations/{activation_id}")
            if r.status_code != 404 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.status_code == 200, r.text
        return r.json()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()
        self.api.close()
        return self.proc.returncode


# Tests whose functions write state files that the test reads from the host: they run without the mount and
# uid layers of the sandbox (private /tmp, per-function uid). The sandbox has its own tests (tests/security).
HOST_FS = {"POLYFN_SANDBOX_DISABLE": "mount,uid"}


def _answers(proc: subprocess.Popen[bytes] | nodefork.ForkedProcess, port: int) -> bool:
    """Whether the process listening on `port` is `proc` (not another run's server that took the port
    first while ours failed to bind): one of its sockets is the listening one."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                    inodes.add(fields[9])
    fd_dir = Path(f"/proc/{proc.pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes:
                    return True
    return False


PYTHON_M_POLYFN = (sys.executable, "-m", "polyfn")


def start_server(data_dir: Path, *extra: str, env: dict[str, str] | None = None, host_fs: bool = False,
                 program: tuple[str, ...] = PYTHON_M_POLYFN, cwd: Path = REPO,
                 ready_within: float = 60, fork: bool = True) -> Server:
    """`program`: how to run polyfn (an installed wheel's `polyfn` script, say); `cwd`: where it runs;
    `ready_within`: seconds to answer (`--examples` builds the Go example before the port opens). `python -m polyfn`
    is forked from the node fork server (nodefork.py: polyfn already imported) unless `fork` is false."""
    if host_fs:
        env = {**HOST_FS, **(env or {})}
    port = free_port()
    if "--storage-port" not in extra:  # never the shared default 9000: tests run in parallel
        extra = (*extra, "--storage-port", str(free_port()))
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "server.log"
    e = {**os.environ, "POLYFN_LOG_LEVEL": "INFO", **(env or {})}
    args = ["serve", "--port", str(port), "--data-dir", str(data_dir), *extra]
    proc: subprocess.Popen[bytes] | nodefork.ForkedProcess
    if fork and program == PYTHON_M_POLYFN and nodefork.enabled():
        proc = nodefork.spawn(args, e, cwd, log)
    else:
        with open(log, "ab") as logf:
            proc = subprocess.Popen([*program, *args], stdout=logf, stderr=subprocess.STDOUT, env=e, cwd=cwd,
                                    start_new_session=True)
    deadline = time.monotonic() + ready_within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"polyfn serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            # server.json (how the CLI finds the node) is written just after the port answers
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200 and \
                    _answers(proc, port) and (data_dir / "server.json").exists():
                return Server(data_dir, port, proc, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"polyfn serve did not answer within {ready_within:.0f} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per test module (fast); tests use distinct function names. A module that sets
    `HOST_FS = True` gets a server whose functions can write to the host's /tmp (see HOST_FS above)."""
    s = start_server(tmp_path_factory.mktemp("polyfn"), host_fs=getattr(request.module, "HOST_FS", False) is True)
    yield s
    s.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, for tests that stop or kill it."""
    s = start_server(tmp_path / "data")
    yield s
    s.stop(signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
    return True


def wait_until(cond: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


@contextlib.contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """A real S3-compatible server for tests (moto's server mode) on a free port, its output in `log`; yields its
    URL and stops it on exit."""
    port = free_port()
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/moto-api/", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        assert wait_until(up, timeout=30), log.read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def error_code(r: httpx.Response) -> str:
    try:
        return json.loads(r.content)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return f"<no error code: {r.status_code} {r.text[:200]}>"


# -- PostgreSQL: a fresh database per test, for the nodes of a cluster -----------------------------------------

PG_ADMIN_DSN = os.environ.get("POLYFN_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _pg(*statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        for s in statements:
            await conn.execute(s)
    finally:
        await conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database (dropped after the test). Skips when PostgreSQL is
    unreachable, fails under CI=true."""
    import asyncio
    import secrets

    name = f"polyfn_e2e_{secrets.token_hex(4)}"
    try:
        asyncio.run(_pg(f"CREATE DATABASE {name}"))
    except Exception as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {e}")
        pytest.skip(f"PostgreSQL unavailable at {PG_ADMIN_DSN}: {e}")
    yield "postgresql+asyncpg://" + PG_ADMIN_DSN.split("://", 1)[1].rsplit("/", 1)[0] + "/" + name
    asyncio.run(_pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


# -- NATS JetStream: a stream of the test's own on the machine's NATS, for the cluster's async queue ----------

NATS_URL = os.environ.get("POLYFN_TEST_NATS_URL", "nats://127.0.0.1:4222")


def delete_stream(url: str, stream: str) -> None:
    import asyncio

    import nats

    async def go() -> None:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            for name in (stream, f"{stream}_TOPICS"):  # the jobs and the topic messages (queue/jetstream.py)
                with contextlib.suppress(Exception):
                    await nc.jetstream().delete_stream(name)
        finally:
            await nc.close()

    asyncio.run(go())


def jetstream_queue_env(url: str = NATS_URL, ack_wait: float = 30.0) -> dict[str, str]:
    """Settings for nodes whose async queue is a new JetStream stream on `url` (delete it with
    `delete_stream`). Skips when NATS is unreachable, fails under CI=true."""
    import secrets
    from urllib.parse import urlsplit

    u = urlsplit(url)
    try:
        socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), timeout=1).close()
    except OSError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"NATS is not reachable at {url}: {e} (CI=true: services must be available)")
        pytest.skip(f"NATS is not reachable at {url}: {e}")
    return {"POLYFN_QUEUE_URL": url, "POLYFN_QUEUE_STREAM": f"TEST_{secrets.token_hex(4).upper()}",
            "POLYFN_QUEUE_ACK_WAIT": str(ack_wait)}


@pytest.fixture
def jetstream_queue() -> Iterator[dict[str, str]]:
    """Settings for a JetStream async queue of the test's own (the stream is deleted afterwards)."""
    env = jetstream_queue_env(ack_wait=2.0)
    yield env
    delete_stream(env["POLYFN_QUEUE_URL"], env["POLYFN_QUEUE_STREAM"])


@pytest.fixture(scope="module", params=["queue-file", "jetstream"])
def server_on_each_queue(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A module's shared server, once with the node's queue file and once with the cluster's JetStream queue
    (a module that wants its tests run on both defines `server` as this). Honours `HOST_FS` like `server`."""
    env = jetstream_queue_env() if request.param == "jetstream" else {}
    s = start_server(tmp_path_factory.mktemp("polyfn"), host_fs=getattr(request.module, "HOST_FS", False) is True,
                     env=env)
    yield s
    s.stop()
    if env:
        delete_stream(env["POLYFN_QUEUE_URL"], env["POLYFN_QUEUE_STREAM"])
