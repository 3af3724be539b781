"""Helpers of the streaming tests (test_streaming*.py)."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from .conftest import Server, wait_until


def leave_after(server: Server, path: str, marker: bytes) -> str:
    """GET `path` on a raw socket, read until `marker` has come, then close the connection (a client that goes
    mid-stream): the activation id from the response's head."""
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        got = b""
        while marker not in got:
            more = s.recv(65536)
            assert more, got
            got += more
    head = got.split(b"\r\n\r\n", 1)[0].decode()
    return next(ln.split(":", 1)[1].strip() for ln in head.split("\r\n") if ln.lower().startswith("x-polyfn-activation-id"))


def recorded(server: Server, aid: str) -> dict[str, Any] | None:
    """The activation once it is recorded (a stream's is recorded when it ends), else None."""
    r = server.api.get(f"/v1/activations/{aid}")
    return r.json() if r.status_code == 200 else None


def assert_broken_off(server: Server, path: str, error_type: str) -> None:
    """A function failing after its first chunk: the client sees the response cut off (no final chunk), and the
    activation records the error."""
    with server.http.stream("GET", path) as r:
        with pytest.raises(httpx.RemoteProtocolError):
            r.read()
    aid = r.headers["x-polyfn-activation-id"]
    assert wait_until(lambda: recorded(server, aid) is not None)
    act = server.activation(aid)
    assert act["status"] == "error" and act["error"]["errorType"] == error_type, act


def assert_told_when_the_client_goes(server: Server, path: str, told: str) -> None:
    """The client leaves after `tick 3`: the activation ends `client_disconnected` and the function logged `told`
    (what it was told: its stream closed, its generator returned …)."""
    aid = leave_after(server, path, b"tick 3\n")
    assert wait_until(lambda: recorded(server, aid) is not None, timeout=20)
    act = server.activation(aid)
    assert act["status"] == "disconnected" and act["stream"]["end"] == "client_disconnected", act
    assert any(told in ln[2] for ln in act["logs"]), act["logs"]
