"""A polyfn cluster behind HAProxy on this machine, for bench/cluster.py and tests/ship/test_cluster_lb.py.

Three (or N) `polyfn serve --cluster` nodes share the machine's PostgreSQL (a database of the run's own), NATS
JetStream (a stream of the run's own) and an S3 bucket (moto's server, in memory), behind HAProxy from Debian
configured by `deploy/haproxy/haproxy.cfg` (health checks on /healthz, retries of idempotent requests on
another node); its log (one line per request: server, status, retries, timings, the client's `X-Bench-Id`)
is `haproxy.log` in the run's directory.

Only the standard library, boto3 (moto's bucket) and asyncpg (the database) beyond polyfn's own venv.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import free_port

REPO = Path(__file__).resolve().parents[1]
HAPROXY_CFG = REPO / "deploy" / "haproxy" / "haproxy.cfg"
PG_ADMIN_DSN = os.environ.get("POLYFN_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("POLYFN_TEST_NATS_URL", "nats://127.0.0.1:4222")

def get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def request(port: int, method: str, path: str, body: Any = None, key: str = "",
            timeout: float = 60) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def wait_for(check: Any, timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return True
        time.sleep(every)
    return False


def haproxy_path() -> str | None:
    return shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy") or None


def haproxy_config(port: int, servers: list[tuple[str, int]], log: bool = True) -> str:
    """deploy/haproxy/haproxy.cfg with this run's ports: the frontend's `bind` and one `server` line per
    node at the end of its last section, the backend (the shipped file's own `server` lines are examples)."""
    out = []
    for line in HAPROXY_CFG.read_text().splitlines():
        s = line.strip()
        if s.startswith(("server ", "#")):
            continue
        if s.startswith("bind "):
            line = f"    bind 127.0.0.1:{port}"
        if s.startswith("log ") and not log:
            continue
        out.append(line)
    out += [f"    server {name} 127.0.0.1:{p} check" for name, p in servers]  # the backend is the last section
    return "\n".join(out) + "\n"


def process_load() -> str:
    """The machine's load average (1 min) and how many CPUs: said with every figure."""
    return f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"


@dataclass
class Node:
    name: str
    port: int
    storage_port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LbCluster:
    """PostgreSQL database + JetStream stream + moto bucket + N nodes + HAProxy; a context manager."""

    def __init__(self, root: Path, nodes: int = 3, env: dict[str, str] | None = None, keep: bool = False):
        self.root = root
        self.keep = keep  # leave the database and the stream for a look afterwards
        self.n = nodes
        self.extra_env = env or {}
        self.db = f"polyfn_lb_{secrets.token_hex(4)}"
        self.stream = f"LB_{secrets.token_hex(4).upper()}"
        self.nodes: list[Node] = []
        self.s3_proc: subprocess.Popen[bytes] | None = None
        self.lb_proc: subprocess.Popen[bytes] | None = None
        self.lb_port = 0
        self.key = ""
        self.env: dict[str, str] = {}

    # -- shared services ------------------------------------------------------------------------------

    def _pg(self, sql: str, db: str = "") -> Any:
        import asyncpg

        async def go() -> Any:
            dsn = PG_ADMIN_DSN if not db else PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + db
            conn = await asyncpg.connect(dsn)
            try:
                return await conn.fetch(sql)
            finally:
                await conn.close()

        return asyncio.run(go())

    def query(self, sql: str) -> list[Any]:
        """Rows of `sql` on the cluster's database (the bench reads activation records from the source)."""
        return self._pg(sql, self.db)

    def _start_s3(self) -> dict[str, str]:
        import boto3

        port = free_port()
        log = (self.root / "s3.log").open("wb")
        self.s3_proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-p", str(port)],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        endpoint = f"http://127.0.0.1:{port}"
        if not wait_for(lambda: get(port, "/")[0] < 500, 30):
            raise RuntimeError(f"moto_server did not start: {(self.root / 's3.log').read_text()[-2000:]}")
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="lb", aws_secret_access_key="lb",
                          region_name="us-east-1")
        s3.create_bucket(Bucket="code")
        return {"POLYFN_ARTIFACTS_URL": "s3://code/artifacts", "POLYFN_ARTIFACTS_ENDPOINT": endpoint,
                "POLYFN_ARTIFACTS_ACCESS_KEY_ID": "lb", "POLYFN_ARTIFACTS_SECRET_ACCESS_KEY": "lb",
                "POLYFN_ARTIFACTS_REGION": "us-east-1"}

    def __enter__(self) -> LbCluster:
        if haproxy_path() is None:
            raise RuntimeError("haproxy is not installed (make haproxy, or apt-get install haproxy)")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._pg(f"CREATE DATABASE {self.db}")
            self.env = {"POLYFN_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.db}",
                        "POLYFN_QUEUE_URL": NATS_URL, "POLYFN_QUEUE_STREAM": self.stream,
                        "POLYFN_QUEUE_ACK_WAIT": "5", "POLYFN_SYNC_INTERVAL": "1",
                        "POLYFN_CRON_LEADER_INTERVAL": "0.5", "POLYFN_DRAIN_TIMEOUT": "20",
                        "POLYFN_LOG_LEVEL": "INFO", **self._start_s3(), **self.extra_env}
            for i in range(self.n):
                self.nodes.append(Node(f"n{i + 1}", free_port(), free_port(), self.root / f"n{i + 1}"))
            # one admin key and one node key for the whole cluster, made before any node starts, so the
            # nodes start together (the first to take the migration lock makes the schema)
            import base64

            self.key = "pfk_" + secrets.token_urlsafe(32)
            node_key = base64.urlsafe_b64encode(os.urandom(32)) + b"\n"  # a Fernet key (auth/secrets.py)
            for node in self.nodes:
                node.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                for name, data in (("admin.key", self.key.encode() + b"\n"), ("node.key", node_key)):
                    fd = os.open(node.data_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                self.start(node, wait=False)
            for node in self.nodes:
                self.wait_ready(node)
            self._start_lb()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        procs = [n.proc for n in self.nodes if n.proc is not None] + [p for p in (self.lb_proc, self.s3_proc) if p]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        if self.keep:
            print(f"kept: database {self.db}, stream {self.stream}, logs in {self.root}")
            return
        with contextlib.suppress(Exception):
            self._pg(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        with contextlib.suppress(Exception):
            self._delete_stream()

    def _delete_stream(self) -> None:
        import nats

        async def go() -> None:
            nc = await nats.connect(NATS_URL)
            try:
                js = nc.jetstream()
                for name in (self.stream, f"{self.stream}_TOPICS"):
                    with contextlib.suppress(Exception):
                        await js.delete_stream(name)
            finally:
                await nc.close()

        asyncio.run(go())

    def stream_state(self, function: str, job_id: str) -> str:
        """Where job `job_id` is in the stream (diagnostics for a job that did not run)."""
        import nats

        async def go() -> str:
            nc = await nats.connect(NATS_URL)
            try:
                js = nc.jetstream()
                try:
                    m = await js.get_last_msg(self.stream, f"{self.stream}.{function}.{job_id}")
                    where = f"in the stream (seq {m.seq})"
                except Exception as e:
                    where = f"not in the stream ({type(e).__name__})"
                ci = await js.consumer_info(self.stream, f"fn-{function}")
                return (f"{where}; consumer: {ci.num_pending} pending, {ci.num_ack_pending} held, "
                        f"{ci.num_redelivered} redelivered, delivered seq {ci.delivered.stream_seq}, "
                        f"ack floor {ci.ack_floor.stream_seq}")
            finally:
                await nc.close()

        return asyncio.run(go())

    # -- nodes ------------------------------------------------------------------------------------------

    def start(self, node: Node, wait: bool = True) -> None:
        node.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = (node.data_dir / "server.log").open("ab")
        node.proc = subprocess.Popen(
            [sys.executable, "-m", "polyfn", "serve", "--cluster", "--port", str(node.port),
             "--storage-port", str(node.storage_port), "--data-dir", str(node.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, start_new_session=True)
        if wait:
            self.wait_ready(node)

    def wait_ready(self, node: Node, timeout: float = 90) -> None:
        def ready() -> bool:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(f"node {node.name} exited with {node.proc.returncode}:\n{self.log_tail(node)}")
            return get(node.port, "/healthz", timeout=2)[0] == 200

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"node {node.name} not ready within {timeout:.0f} s:\n{self.log_tail(node)}")

    def terminate(self, node: Node, timeout: float = 60) -> float:
        """SIGTERM (a graceful drain); seconds until the process exited."""
        assert node.proc is not None
        t0 = time.monotonic()
        os.kill(node.proc.pid, signal.SIGTERM)
        node.proc.wait(timeout)
        return time.monotonic() - t0

    def kill(self, node: Node) -> None:
        """kill -9 of the node (its instances die with it: parent-death signal)."""
        assert node.proc is not None
        os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait(10)

    def log_tail(self, node: Node, n: int = 40) -> str:
        try:
            return "\n".join((node.data_dir / "server.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- the balancer -----------------------------------------------------------------------------------

    def _start_lb(self) -> None:
        self.lb_port = free_port()
        cfg = self.root / "haproxy.cfg"
        cfg.write_text(haproxy_config(self.lb_port, [(n.name, n.port) for n in self.nodes]))
        self.lb_log = self.root / "haproxy.log"
        out = self.lb_log.open("wb")
        check = subprocess.run([haproxy_path() or "haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused the configuration:\n{check.stdout}{check.stderr}")
        self.lb_proc = subprocess.Popen([haproxy_path() or "haproxy", "-db", "-f", str(cfg)], stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_for(lambda: get(self.lb_port, "/healthz")[0] == 200, 20):
            raise RuntimeError(f"haproxy did not answer: {self.lb_log.read_text()[-2000:]}")

    def deploy(self, name: str, files: dict[str, str], **spec: Any) -> dict[str, Any]:
        """PUT /v1/functions/NAME through the balancer."""
        status, body = request(self.lb_port, "PUT", f"/v1/functions/{name}", {"files": files, **spec}, self.key)
        if status >= 300:
            raise RuntimeError(f"deploy {name}: {status} {body[:500]!r}")
        return json.loads(body)

    def api(self, node: Node | None, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, data = request(node.port if node else self.lb_port, method, path, body, self.key)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data

    def cron_states(self) -> dict[str, str]:
        """Each live node's view of the one cron trigger of `tick`: scheduled (the leader) or standby."""
        out = {}
        for n in self.nodes:
            if not n.alive:
                continue
            with contextlib.suppress(Exception):
                _, body = self.api(n, "GET", "/v1/functions/tick/triggers")
                trig = body["triggers"]
                out[n.name] = trig[0]["health"]["state"] if trig else ""
        return out
