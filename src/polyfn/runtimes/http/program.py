"""The program an `http` instance runs (the proxy's child, proxy.py): its command line, its network (a
private namespace with loopback only, as root; else the host's with a free port), its port, its death tied to
the proxy's, and its stdout/stderr lines routed to the invocation in flight."""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import shlex
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
PR_SET_PDEATHSIG = 1
DEFAULT_PORT = 8080
#: hop-by-hop headers: never relayed between the node and the program
HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer"}

_libc = ctypes.CDLL(None, use_errno=True)


def private_network() -> str | None:
    """Enter a new network namespace and bring its loopback up; None on success, else why not."""
    if _libc.unshare(CLONE_NEWNET) != 0:
        return os.strerror(ctypes.get_errno())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_or_free_port() -> int:
    """8080 (Knative's default, for programs that ignore $PORT) unless something listens there already in
    this namespace (polyfn's own port, relayed in when the node serves on 8080): then a free one."""
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", DEFAULT_PORT))
            return DEFAULT_PORT
        except OSError:
            return free_port()


class Logs:
    """Lines from the program's stdout/stderr, routed to the invocation in flight."""

    def __init__(self, line_max: int, lines_max: int):
        self.lock = threading.Lock()
        self.current: dict[int, list[tuple[float, str, str]]] = {}
        self.loose: list[tuple[float, str, str]] = []
        self.tail: deque[str] = deque(maxlen=30)  # stderr tail, for start errors
        self.line_max = line_max
        self.lines_max = lines_max

    def add(self, stream: str, line: str) -> None:
        if len(line) > self.line_max:
            line = line[: self.line_max] + f"… [truncated {len(line) - self.line_max} chars]"
        item = (time.time(), stream, line)
        with self.lock:
            if stream == "stderr":
                self.tail.append(line)
            target = next(iter(self.current.values())) if len(self.current) == 1 else self.loose
            if len(target) < self.lines_max:
                target.append(item)

    def begin(self, inv_id: int) -> None:
        with self.lock:
            self.current[inv_id] = []

    def end(self, inv_id: int) -> list[tuple[float, str, str]]:
        with self.lock:
            lines = self.current.pop(inv_id, [])
            if self.loose:
                lines = self.loose + lines
                self.loose = []
            return lines

    def pump(self, pipe: Any, stream: str) -> None:
        for raw in iter(pipe.readline, b""):
            self.add(stream, raw.decode("utf-8", "replace").rstrip("\n"))


def resolve_command(handler: str, code_dir: str, build_dir: str, env: dict[str, str]) -> list[str]:
    """The program's argv: `@go` is the deploy-time build; `$VAR`/`${VAR}` expand from its environment
    (no shell is involved); a first word naming a file in the code is made absolute."""
    if handler == "@go":
        return [os.path.join(build_dir, "server")]
    argv = [re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: env.get(m.group(1) or m.group(2), ""), a)
            for a in shlex.split(handler)]
    first = Path(code_dir) / argv[0]
    if ("/" in argv[0] or first.exists()) and first.is_file():
        argv[0] = str(first)
    elif argv[0] in ("python", "python3"):
        argv[0] = sys.executable  # the node's interpreter (the code's requirements are installed for it)
    return argv


def child_preexec() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
