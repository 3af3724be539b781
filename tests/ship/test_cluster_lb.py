"""Three cluster nodes behind HAProxy (deploy/haproxy/haproxy.cfg) keep serving through a rolling restart.

The nodes share the machine's PostgreSQL, NATS JetStream and an S3 bucket (moto's server); bench/_lbcluster.py
starts them, the balancer and the services, as bench/cluster.py does for the figures. A little steady load
runs through the balancer (sync GETs, which the balancer retries on another node; async POSTs) while each
node in turn gets SIGTERM, drains, exits, starts again and answers /healthz. Every sync request is answered
200, and every async job accepted (202) runs once, its activation record in PostgreSQL.

Needs haproxy (`make haproxy`), PostgreSQL and NATS: skipped without them, a failure under CI=true.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from _lbcluster import LbCluster, haproxy_path  # noqa: E402

JOB = "import time\ndef handler(event, context):\n    time.sleep(0.1)\n    return 'done'\n"
HELLO = "def handler(event, context):\n    return 'hello'\n"


def _needs() -> None:
    missing = []
    if haproxy_path() is None:
        missing.append("haproxy (make haproxy)")
    for name, port in (("PostgreSQL", 5432), ("NATS", 4222)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            missing.append(f"{name} on 127.0.0.1:{port}")
    if not shutil.which("moto_server", path=str(Path(sys.executable).parent)):
        missing.append("moto_server (pip install 'moto[server]')")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: the cluster test needs {', '.join(missing)}")
        pytest.skip(f"needs {', '.join(missing)}")


class Load(threading.Thread):
    """One client through the balancer: a sync GET, then an async POST, about 20 a second in all."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.sync: list[tuple[int, str]] = []  # (status, error) of every sync request
        self.accepted: list[str] = []  # activation ids of the async jobs answered 202
        self.async_failed: list[str] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop.is_set():
            for kind in ("sync", "async"):
                try:
                    if kind == "sync":
                        conn.request("GET", "/fn/hello")
                    else:
                        conn.request("POST", "/fn/job", body=b"{}", headers={"X-Polyfn-Async": "true"})
                    r = conn.getresponse()
                    body = r.read()
                    if kind == "sync":
                        self.sync.append((r.status, "" if r.status == 200 else body[:200].decode(errors="replace")))
                    elif r.status == 202:
                        self.accepted.append(r.headers["x-polyfn-activation-id"])
                    else:
                        self.async_failed.append(f"{r.status} {body[:200]!r}")
                except (OSError, http.client.HTTPException) as e:
                    (self.sync.append((0, repr(e))) if kind == "sync" else self.async_failed.append(repr(e)))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                time.sleep(0.05)


def test_a_rolling_restart_behind_haproxy_loses_no_request_and_no_job(tmp_path: Path) -> None:
    _needs()
    with LbCluster(tmp_path, env={"POLYFN_SYNC_INTERVAL": "0.5"}) as c:
        c.deploy("hello", {"handler.py": HELLO})
        c.deploy("job", {"handler.py": JOB})
        for n in c.nodes:  # every node serves both (the cluster sync) before the load starts
            deadline = time.monotonic() + 30
            while c.api(n, "GET", "/fn/hello")[0] != 200:
                assert time.monotonic() < deadline, c.log_tail(n)
                time.sleep(0.1)
        load = Load(c.lb_port)
        load.start()
        try:
            time.sleep(1)
            for node in c.nodes:
                c.terminate(node)  # SIGTERM: the node drains, then exits
                c.start(node)  # … and comes back (ready: /healthz answers)
                time.sleep(0.5)
        finally:
            load.stop.set()
            load.join(60)
        failed = [s for s in load.sync if s[0] != 200]
        assert len(load.sync) > 50 and not failed, (len(load.sync), failed[:5])
        assert len(load.accepted) > 50, (len(load.accepted), load.async_failed[:5])
        ids = set(load.accepted)
        deadline = time.monotonic() + 60
        while True:
            rows = c.query("SELECT id, status FROM activations WHERE function = 'job'")
            done = {r["id"]: r["status"] for r in rows if r["id"] in ids}
            if len(done) == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert set(done) == ids, f"{len(ids - set(done))} accepted jobs never ran: {sorted(ids - set(done))[:5]}"
        assert set(done.values()) == {"success"}, done


def test_the_load_balancer_block_of_the_operations_docs_runs() -> None:
    """docs/operations.md "A load balancer": its block checks the shipped configuration, as written."""
    import re
    import subprocess

    if haproxy_path() is None:
        _needs()
    text = (REPO / "docs" / "operations.md").read_text().split("\n### A load balancer\n", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```$", text, re.S | re.M)
    assert blocks
    for block in blocks:
        r = subprocess.run(["bash", "-e", "-c", block], cwd=REPO, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PATH": f"/usr/sbin:/sbin:{os.environ.get('PATH', '')}"})
        assert r.returncode == 0 and "Configuration file is valid" in r.stdout + r.stderr, r.stdout + r.stderr
