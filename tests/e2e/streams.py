"""Helpers of the streaming tests (test_streaming*.py)."""

from __future__ import annotations

import socket
from typing import Any

from .conftest import Server


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
