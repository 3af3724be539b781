"""Private broker processes for trigger tests: our own nats-server / redis-server / mosquitto on free ports
(never the machine's shared services, so tests may restart them), with their data on disk so a restart keeps
messages. RabbitMQ is too heavy to start per test: the machine's 127.0.0.1:5672 is used when it answers.
A missing broker skips the test with the reason, except under CI=true where it fails."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
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

    def start(self) -> Broker:
        log = open(self.workdir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
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


def rabbitmq_url() -> str:
    if not port_open(5672):
        missing("RabbitMQ is not running on 127.0.0.1:5672")
    return "amqp://guest:guest@127.0.0.1:5672/"
