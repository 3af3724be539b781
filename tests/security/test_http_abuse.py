"""Hostile HTTP against a real node: huge and countless headers, slow headers and bodies, bodies past the
limit on the API, and connection floods. Each must be refused cheaply while other clients are served."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..e2e.conftest import Server, error_code, start_server

ENV = {"POLYFN_HTTP_HEADER_TIMEOUT": "1", "POLYFN_HTTP_BODY_TIMEOUT": "1", "POLYFN_HTTP_MAX_CONNECTIONS": "30000"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(Path(tmp_path_factory.mktemp("polyfn-http")), env=ENV)
    s.deploy("bystander", {"handler.py": "def handler(event, context):\n    return 'still here'\n"})
    yield s
    s.stop()


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send `data` on a new connection; what came back until the server closed it."""
    return exchange(port, data, timeout)[0]


def exchange(port: int, data: bytes, timeout: float = 10) -> tuple[bytes, str]:
    """(what came back, how the connection ended): "closed" by the server (EOF or a reset), or "gave up"
    when our own `timeout` ran out first — so a test can tell the server's timeout from the client's."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            return out, "gave up"
        except OSError:
            pass
    return out, "closed"


def test_huge_and_countless_headers_are_431_and_others_are_served(node: Server) -> None:
    got: list[bytes] = []

    def huge() -> None:  # one 64 MiB header, sent as fast as the server takes it
        with socket.create_connection(("127.0.0.1", node.port), timeout=10) as s:
            with contextlib.suppress(OSError):
                s.sendall(b"GET /fn/bystander HTTP/1.1\r\nHost: x\r\nX-Huge: ")
                for _ in range(1024):
                    s.sendall(b"a" * 65536)
            with contextlib.suppress(OSError):
                got.append(s.recv(65536))

    t = threading.Thread(target=huge)
    t.start()
    t0 = time.monotonic()
    while t.is_alive() and time.monotonic() - t0 < 5:  # meanwhile, others are answered
        assert node.http.get("/fn/bystander").text == "still here"
    t.join(20)
    assert got == [] or got[0].startswith(b"HTTP/1.1 431"), got  # (a reset may hide the 431 from the sender)
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(200_000))
    assert raw(node.port, b"GET /fn/bystander HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n").startswith(b"HTTP/1.1 431")
    r = node.http.get("/fn/bystander", headers={f"X-H{i}": "v" for i in range(150)})
    assert r.status_code == 431 and error_code(r) == "headers_too_large"
    assert node.http.get("/fn/bystander").text == "still here"  # the warm instance was never touched
    assert node.proc.poll() is None


def test_slow_headers_and_bodies_are_timed_out(node: Server) -> None:
    out, end = exchange(node.port, b"POST /fn/bystander HTTP/1.1\r\nHost: x\r\n", timeout=60)  # then nothing
    assert out.startswith(b"HTTP/1.1 408") and end == "closed", (out, end)
    out = raw(node.port, b"POST /fn/bystander HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc", timeout=15)
    assert out.startswith(b"HTTP/1.1 408") and b"request_timeout" in out, out
    assert exchange(node.port, b"", timeout=60) == (b"", "closed")  # a connection that says nothing is closed


def test_api_bodies_past_the_limit_are_refused_as_they_arrive(node: Server) -> None:
    big = 8 * 1024 * 1024  # the payload limit is 6 MB
    r = node.api.post("/v1/functions/bystander/invoke", content=b"x" * big, headers={"content-type": "text/plain"})
    assert r.status_code == 413 and error_code(r) == "payload_too_large", r.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(big // 65536):
            yield b"x" * 65536

    r = node.api.post("/function/bystander", content=chunks())
    assert r.status_code == 413, r.text
    # a declared length past the limit is refused at once, before a byte of the body is sent
    head = (f"POST /v1/functions/bystander/invoke HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {node.key}\r\n"
            "Content-Length: 104857600\r\n\r\n").encode()
    assert raw(node.port, head, timeout=5).startswith(b"HTTP/1.1 413")
    assert node.http.get("/fn/bystander").text == "still here"


def test_the_open_files_limit_is_raised_at_start(tmp_path: Path) -> None:
    """Started with the usual soft limit of 1,024 open files, the node raises it to fit its connections
    (up to the hard limit)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        s = start_server(tmp_path / "data")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        limits = Path(f"/proc/{s.proc.pid}/limits").read_text()
        raised = int(next(ln for ln in limits.splitlines() if ln.startswith("Max open files")).split()[3])
        assert raised >= min(hard, 10_000 + 4096) > 1024, limits
    finally:
        s.stop()


def test_many_idle_connections_do_not_lock_others_out(node: Server) -> None:
    """1,100 idle connections took every descriptor of a 1,024 limit; now they are held (or closed after the
    header timeout) while others are served."""
    socks = []
    try:
        for _ in range(1100):
            socks.append(socket.create_connection(("127.0.0.1", node.port), timeout=5))
        r = httpx.get(f"{node.url}/fn/bystander", timeout=10)
        assert r.text == "still here"
    finally:
        for s in socks:
            s.close()


def test_malformed_requests_are_logged_as_json(node: Server) -> None:
    """The node's log is one JSON object per line, uvicorn's own warnings included (a request it cannot
    parse, an upgrade it does not support: before, plain text in the middle of the JSON log)."""
    import json

    raw(node.port, b"GARBAGE\x00\x01 / HTTP/9\r\n\r\n")
    raw(node.port, b"GET /fn/bystander HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", timeout=3)
    time.sleep(0.5)
    lines = [ln for ln in node.log.read_text().splitlines() if ln.strip()]
    banner = [ln for ln in lines if ln.startswith(("polyfn ", "  "))]  # the start banner, on stdout
    records = [json.loads(ln) for ln in lines if ln not in banner]  # every other line parses
    text = " ".join(r["msg"] for r in records)
    assert "invalid HTTP request" in text and "upgrade" in text.lower(), text[-2000:]
