"""The C# host behind the `http` runtime's proxy (runtimes/dotnet): one invocation over its two pipes
(`forward`, frames of runtimes/dotnet/link.py instead of an HTTP hop), its readiness (`host_ready`), and for a
pre-started blank the spawn agent's gate and the host's account of its hand-over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from typing import Any

from polyfn.protocol import Invoke, Result
from polyfn.runtimes import dotnet
from polyfn.runtimes.dotnet.link import HostLink, LinkClosed
from polyfn.runtimes.http.program import HOP


def forward(proxy: Any, inv: Invoke, link: HostLink) -> Result:
    """One invocation to the C# host over its pipes (`proxy`: the instance's `Proxy`: its logs, its child)."""
    t0 = time.perf_counter()
    proxy.logs.begin(inv.id)
    body, trigger = inv.body, inv.kind == "cloudevent"
    headers = [[k, v] for k, v in inv.headers if k.lower() not in HOP and k.lower() != "content-length"]
    if trigger:  # Azure's trigger shapes for the C# host
        body = dotnet.trigger_body(inv.body)
        headers = [kv for kv in headers if kv[0].lower() != "content-type"] + [["Content-Type", "application/json"]]
    elif inv.kind != "http" and inv.content_type and not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(["Content-Type", inv.content_type])
    request = {"id": inv.id, "method": inv.method or "POST", "path": inv.path or "/", "query": inv.query,
               "headers": headers, "trigger": trigger}
    try:
        head, out = link.call(request, body)
    except LinkClosed as e:
        if proxy.child is not None:
            try:
                proxy.exit_like(proxy.child.wait(0.5))  # the host died under this request
            except subprocess.TimeoutExpired:
                pass
        err = {"errorType": "Runtime.UpstreamError", "errorMessage": f"the C# host failed to answer: {e}",
               "stackTrace": []}
        return Result(inv.id, 502, [("content-type", "application/json")], json.dumps(err).encode(), err,
                      proxy.logs.end(inv.id), (time.perf_counter() - t0) * 1000)
    now, line_max = time.time(), proxy.logs.line_max
    own = [(now, str(item[0]), str(item[1])[:line_max]) for item in head.get("logs") or ()
           if isinstance(item, list) and len(item) == 2 and item[0] in ("stdout", "stderr")]
    error = head.get("error") if isinstance(head.get("error"), dict) else None
    return Result(inv.id, int(head.get("status", 200)), [(str(k), str(v)) for k, v in head.get("headers") or ()],
                  out, error, proxy.logs.end(inv.id) + own, (time.perf_counter() - t0) * 1000)

def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("the server closed the connection")
        buf += chunk
    return buf


def read_gate() -> dict[str, Any]:
    """The spawn agent's word once the function's mounts are up (polyfn.sandbox.spawn, agent mode)."""
    fd = int(os.environ.pop("POLYFN_GATE_FD"))
    with os.fdopen(fd, "rb") as f:
        line = f.readline()
    try:
        gate = json.loads(line)
    except ValueError:
        gate = None
    return gate if isinstance(gate, dict) else {
        "ok": False, "error": "sandbox: the spawn agent ended before setting up the sandbox"}


def host_ready(link: HostLink, deadline: float) -> tuple[str, dict[str, Any]]:
    """Wait for the C# host's first frame: ("", its header) when it is ready, else (why not, {})."""
    try:
        header, _ = link.read(max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        return "it did not get ready in time", {}
    except (LinkClosed, OSError, ValueError) as e:
        return (f"it exited ({e})" if isinstance(e, LinkClosed) else f"it broke the link ({e})"), {}
    if header.get("ready") is not True:
        return f"it did not start the function: {header.get('error', header)}", {}
    return "", header


def phases(ms: Any) -> str:
    """The C# host's own account of its hand-over ({"job": 0.1, "uid": 2.0, …} in ms) as text."""
    if not isinstance(ms, dict):
        return "?"
    return ", ".join(f"{k} {float(v):.1f}" for k, v in ms.items() if isinstance(v, int | float))
