"""The C# host behind the `http` proxy over its pipes (runtimes/dotnet/link.py, Host.cs's Link), with no
sandbox: the proxy's `serve` mode, which starts the host with its function at once (a node without
pre-started hosts). Real processes: the proxy, Mono, the deploy-time build of tests/e2e/dotnet/Api.cs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyfn.config import Settings
from polyfn.deploy import build_dotnet
from polyfn.deploy.isolate import BuildSandbox
from polyfn.protocol import HEADER, Invoke, Ready, Result, encode, from_instance_decoder
from polyfn.runtimes import dotnet

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(dotnet.toolchain() is None and os.environ.get("CI") != "true",
                                reason="no Mono (apt-get install mono-mcs mono-runtime libnewtonsoft-json-cil-dev)")


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    dest = data / "build" / "api"
    code = (REPO / "tests/e2e/dotnet/Api.cs").read_bytes()
    builds = BuildSandbox(Settings(data_dir=data))  # (no node sandbox: the build runs as this process)
    asyncio.run(build_dotnet.build({"Api.cs": code}, dest, data, "Api", lambda _m: None, builds))
    return dest


class Instance:
    def __init__(self, build: Path, code_dir: Path):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        spec = {"function": "api", "revision": 1, "handler": "Api", "code_dir": str(code_dir),
                "build_dir": str(build), "runtime": "dotnet", "env": {"GREETING": "hi"}, "concurrency": 2,
                "private_network": False, "ready_timeout": 60}
        env = {**os.environ, "POLYFN_SPEC": json.dumps(spec), "POLYFN_FD": str(theirs.fileno()),
               "PYTHONPATH": str(REPO / "src")}
        self.proc = subprocess.Popen([sys.executable, "-m", "polyfn.runtimes.http.proxy"], env=env,
                                     pass_fds=[theirs.fileno()])
        theirs.close()
        self.reader = self.sock.makefile("rb")

    def read(self) -> object:
        (size,) = HEADER.unpack(self.reader.read(4))
        return from_instance_decoder.decode(self.reader.read(size))

    def invoke(self, inv_id: int, query: str, method: str = "GET", body: bytes = b"") -> None:
        self.sock.sendall(encode(Invoke(inv_id, f"act{inv_id}", "http", time.time() + 30, method, "/api/Api", query,
                                        [("Host", "fn.example.com"), ("X-Test", "T")], body)))

    def close(self) -> None:
        self.sock.close()
        self.reader.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def instance(build: Path, tmp_path: Path) -> Iterator[Instance]:
    inst = Instance(build, tmp_path)
    yield inst
    inst.close()


def test_requests_results_logs_and_errors_over_the_pipes(instance: Instance) -> None:
    ready = instance.read()
    assert isinstance(ready, Ready) and "on pipes" in ready.info, ready
    instance.invoke(1, "kind=json&name=Bo")
    instance.invoke(2, "kind=throw&name=x")  # concurrency 2: both in flight
    instance.invoke(3, "", "POST", b'{"name": "Body"}')
    results = {r.id: r for r in (instance.read() for _ in range(3))}
    assert all(isinstance(r, Result) for r in results.values())
    ok, err, post = results[1], results[2], results[3]
    assert ok.status == 200 and json.loads(ok.body) == {"greeting": "Hello, Bo", "method": "GET", "agent": "T",
                                                        "host": "fn.example.com"}  # the caller's Host, as sent
    assert ("Content-Type", "application/json; charset=utf-8") in ok.headers
    lines = [(s, line) for _, s, line in ok.logs]
    assert ("stdout", "[Information] C# HTTP trigger function processed a request.") in lines
    assert ("stderr", "[Warning] kind json for Bo") in lines
    assert err.status == 500 and err.error is not None
    assert err.error["errorType"] == "System.InvalidOperationException" and err.error["errorMessage"] == "no such thing: x"
    assert post.status == 200 and post.body == b"Hello, Body"


def test_the_hosts_death_ends_the_instance_with_its_status(instance: Instance) -> None:
    assert isinstance(instance.read(), Ready)
    host = int(Path(f"/proc/{instance.proc.pid}/task/{instance.proc.pid}/children").read_text().split()[0])
    os.kill(host, signal.SIGKILL)
    assert instance.proc.wait(10) == 128 + signal.SIGKILL  # as a shell reports it: the pool sees how it ended
