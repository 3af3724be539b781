"""Private broker processes for trigger tests: our own nats-server / redis-server / mosquitto on free ports
(never the machine's shared services, so tests may restart them), with their data on disk so a restart keeps
messages. RabbitMQ is too heavy to start per test: the machine's 127.0.0.1:5672 is used when it answers.
A missing broker skips the test with the reason, except under CI=true where it fails."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from .conftest import free_port


def missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: brokers must be available)")
    pytest.skip(reason)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Broker:
    def __init__(self, name: str, argv: list[str], port: int, workdir: Path):
        self.name, self.argv, self.port, self.workdir = name, argv, port, workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_timeout = 20.0

    def start(self) -> Broker:
        log = open(self.workdir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                     start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: {(self.workdir / f'{self.name}.log').read_text()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def nats_broker(workdir: Path, port: int | None = None) -> Broker:
    exe = shutil.which("nats-server")
    if exe is None:
        missing("nats-server is not installed (Debian package nats-server)")
    port = port or free_port()
    (workdir / "js").mkdir(parents=True, exist_ok=True)
    return Broker("nats", [exe, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(workdir / "js")], port, workdir)


def redis_broker(workdir: Path, port: int | None = None) -> Broker:
    exe = shutil.which("redis-server")
    if exe is None:
        missing("redis-server is not installed (Debian package redis-server)")
    port = port or free_port()
    return Broker("redis", [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                            "--appendfsync", "always", "--dir", str(workdir)], port, workdir)


def mqtt_broker(workdir: Path, port: int | None = None) -> Broker:
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if exe is None:
        missing("mosquitto is not installed (Debian package mosquitto)")
    port = port or free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\npersistence true\n"
                    f"persistence_location {workdir}/\nmax_queued_messages 10000\n")
    return Broker("mosquitto", [exe, "-c", str(conf)], port, workdir)


class RabbitBroker(Broker):
    """rabbitmq-server drops privileges and runs the Erlang VM in its own session: stop it by its pid file."""

    def stop(self) -> None:
        pidfile = self.workdir / "rabbit.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().strip()), 15)
            except (ValueError, ProcessLookupError):
                pass
        super().stop()
        deadline = time.monotonic() + 20
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def rabbitmq_broker() -> Broker:
    """A private RabbitMQ node (about 7 s to start) on free ports, its files in a fresh directory under /tmp
    (the rabbitmq user must be able to reach it: pytest's tmp dirs are private to root)."""
    exe = shutil.which("rabbitmq-server") or ("/usr/sbin/rabbitmq-server"
                                              if os.path.exists("/usr/sbin/rabbitmq-server") else None)
    if exe is None:
        missing("rabbitmq-server is not installed (Debian package rabbitmq-server)")
    workdir = Path(tempfile.mkdtemp(prefix="polyfn-rabbitmq-"))
    port, dist = free_port(), free_port()
    for d in ("mnesia", "log"):
        (workdir / d).mkdir(parents=True, exist_ok=True)
    (workdir / "enabled_plugins").write_text("[].\n")
    for p in [workdir, *workdir.rglob("*")]:
        os.chmod(p, 0o777)  # the server runs as the rabbitmq user
    env = {"RABBITMQ_NODE_PORT": str(port), "RABBITMQ_DIST_PORT": str(dist),
           "RABBITMQ_NODENAME": f"polyfn{port}@localhost", "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
           "RABBITMQ_LOG_BASE": str(workdir / "log"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
           "RABBITMQ_FEATURE_FLAGS_FILE": str(workdir / "feature_flags"), "RABBITMQ_CONFIG_FILE": str(workdir / "none"),
           "RABBITMQ_PID_FILE": str(workdir / "rabbit.pid")}
    argv = ["env", *[f"{k}={v}" for k, v in env.items()], exe]
    b = RabbitBroker("rabbitmq", argv, port, workdir)
    b.start_timeout = 90.0
    return b
