"""Run the real Node.js bootstrap on a socketpair and talk frames to it, as the server does."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from polyfn.instances.launcher import NODE_DIR
from polyfn.protocol import HEADER, InitError, Invoke, Ready, Result, encode, from_instance_decoder

needs_node = pytest.mark.skipif(shutil.which("node") is None and os.environ.get("CI") != "true",
                                reason="Node.js is not installed")


class NodeInstance:
    def __init__(self, code_dir: Path, flavor: str, handler: str, concurrency: int = 1, env: dict[str, str] | None = None,
                 timeout: float = 30.0, blank: bool = False):
        self.sock, theirs = socket.socketpair()
        spec = {"instance_id": "t-1", "function": "fn", "revision": 3, "flavor": flavor, "handler": handler,
                "code_dir": str(code_dir), "deps_dir": "", "concurrency": concurrency, "memory_mb": 128,
                "timeout": timeout, "env": env or {}, "log_line_max": 200, "log_lines_max": 50,
                "api_url": "http://127.0.0.1:9"}
        argv = ["node", str(NODE_DIR / "bootstrap.js")] + ([] if blank else [json.dumps(spec)])
        self.proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(),),
                                     env={**os.environ, "POLYFN_FD": str(theirs.fileno())}, stderr=subprocess.PIPE)
        theirs.close()
        self.sock.settimeout(20)
        if blank:  # a pre-started process: its spec is the first frame
            raw = json.dumps(spec).encode()
            self.sock.sendall(len(raw).to_bytes(4, "big") + raw)
        self.seq = 0
        self.first = self.read()

    def read(self) -> Any:
        head = self._exact(4)
        (size,) = HEADER.unpack(head)
        return from_instance_decoder.decode(self._exact(size))

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("instance closed the connection")
            buf += chunk
        return buf

    def send(self, kind: str = "http", method: str = "POST", path: str = "/", query: str = "",
             headers: list[tuple[str, str]] | None = None, body: bytes = b"", content_type: str = "",
             deadline: float | None = None, identity: dict[str, Any] | None = None) -> int:
        self.seq += 1
        inv = Invoke(self.seq, f"act{self.seq}", kind, deadline or time.time() + 30, method, path, query,
                     headers or ([("content-type", content_type)] if content_type else []), body, content_type, "",
                     identity)
        self.sock.sendall(encode(inv))
        return self.seq

    def invoke(self, **kw: Any) -> Result:
        n = self.send(**kw)
        res = self.read()
        assert isinstance(res, Result) and res.id == n, res
        return res

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(tmp_path: Path, files: dict[str, str], flavor: str, handler: str, **kw: Any) -> NodeInstance:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return NodeInstance(tmp_path, flavor, handler, **kw)


def ready(inst: NodeInstance) -> Ready:
    assert isinstance(inst.first, Ready), inst.first
    return inst.first


def init_error(inst: NodeInstance) -> dict[str, Any]:
    assert isinstance(inst.first, InitError), inst.first
    return inst.first.error
