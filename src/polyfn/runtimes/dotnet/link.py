"""The `http` proxy's end of the pipes to the C# host (`Link.cs`): no HTTP server in between.

A frame is a JSON header and a body, each after its length (4 bytes, big-endian), on two pipes the host
finds in `$POLYFN_HOST_FDS` ("IN,OUT"). Proxy → host: `{"job": {...}}` (a pre-started host's function),
then requests `{"id", "method", "path", "query", "headers", "trigger"}` with the body. Host → proxy:
`{"ready": true}` or `{"error": "..."}` once, then per request `{"id", "status", "headers", "logs"?, "error"?}`
with the response body. Measured against HTTP on `$PORT` (HttpListener) behind the same proxy: the pipes cut a
new revision's first call and the warm hop (docs/performance.md, bench/dotnet.py).
"""

from __future__ import annotations

import json
import os
import select
import struct
import threading
import time
from typing import Any

LEN = struct.Struct(">I")
MAX_PART = 64 * 1024 * 1024  # a header or body larger than this from the host: the link is broken


class LinkClosed(Exception):
    """The host closed its pipe (it exited) before answering."""


class HostLink:
    def __init__(self) -> None:
        self.to_host_r, self.to_host_w = os.pipe()
        self.from_host_r, self.from_host_w = os.pipe()
        self.send_lock = threading.Lock()
        self.waiting: dict[int, list[Any]] = {}  # id → [event, (header, body) | None]
        self.lock = threading.Lock()
        self.closed = False
        self.direct: threading.Lock | None = None  # concurrency 1: `call` sends and reads itself

    def child_fds(self) -> tuple[int, int]:
        """The host's ends (passed to it; close them here once it started: `started`)."""
        return self.to_host_r, self.from_host_w

    def env(self) -> dict[str, str]:
        return {"POLYFN_HOST_FDS": f"{self.to_host_r},{self.from_host_w}"}

    def started(self) -> None:
        os.close(self.to_host_r)
        os.close(self.from_host_w)

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        head = json.dumps(header, separators=(",", ":")).encode()
        data = LEN.pack(len(head)) + head + LEN.pack(len(body)) + body
        with self.send_lock:
            view = memoryview(data)
            while view:
                n = os.write(self.to_host_w, view)
                view = view[n:]

    def _exact(self, n: int, deadline: float | None) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.from_host_r], [], [], left)[0]:
                    raise TimeoutError("the C# host did not answer in time")
            chunk = os.read(self.from_host_r, min(n - len(buf), 1 << 20))
            if not chunk:
                raise LinkClosed("the C# host closed its pipe")
            buf += chunk
        return bytes(buf)

    def read(self, timeout: float | None = None) -> tuple[dict[str, Any], bytes]:
        """The next frame from the host (raises LinkClosed, TimeoutError, ValueError)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        parts = []
        for _ in range(2):
            (n,) = LEN.unpack(self._exact(4, deadline))
            if n > MAX_PART:
                raise ValueError(f"the C# host sent a frame of {n} bytes")
            parts.append(self._exact(n, deadline))
        header = json.loads(parts[0])
        if not isinstance(header, dict):
            raise ValueError("the C# host sent a frame that is not an object")
        return header, parts[1]

    def serve_replies(self, concurrency: int) -> None:
        """Start handing the host's responses to the requests waiting for them (`call`): with one request in
        flight at a time, the caller reads its own response (no thread in between)."""
        if concurrency <= 1:
            self.direct = threading.Lock()
            return
        threading.Thread(target=self._replies, daemon=True, name="host-replies").start()

    def _replies(self) -> None:
        try:
            while True:
                header, body = self.read()
                with self.lock:
                    slot = self.waiting.pop(int(header.get("id", -1)), None)
                if slot is not None:
                    slot[1] = (header, body)
                    slot[0].set()
        except (LinkClosed, OSError, ValueError):
            pass
        with self.lock:
            self.closed = True
            slots, self.waiting = list(self.waiting.values()), {}
        for slot in slots:
            slot[0].set()

    def call(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        """Send one request and wait for its response (raises LinkClosed when the host went)."""
        if self.direct is not None:
            with self.direct:
                try:
                    self.send(header, body)
                    reply = self.read()
                except (OSError, ValueError) as e:
                    raise LinkClosed(f"the C# host's pipe broke: {e}") from None
            if reply[0].get("id") != header["id"]:
                raise LinkClosed(f"the C# host answered request {reply[0].get('id')} for {header['id']}")
            return reply
        slot: list[Any] = [threading.Event(), None]
        with self.lock:
            if self.closed:
                raise LinkClosed("the C# host closed its pipe")
            self.waiting[int(header["id"])] = slot
        try:
            self.send(header, body)
        except OSError as e:
            with self.lock:
                self.waiting.pop(int(header["id"]), None)
            raise LinkClosed(f"the C# host's pipe broke: {e}") from None
        slot[0].wait()
        if slot[1] is None:
            raise LinkClosed("the C# host closed its pipe")
        return slot[1]
