"""The management API's own CPU for one `post_to_connection` (issue #22): SigV4 check, routing, the push, the answer,
in-process (no sockets: the ASGI `send`s are no-ops), so what the HTTP layer and the kernel cost is left out and
the figure is steady enough to compare two versions (bench/ws_fanout.py's end-to-end CPU a post swings ±20 % between
runs on a shared machine). Requests are signed once by botocore's SigV4Auth (service execute-api), as boto3 signs.

    .venv/bin/python bench/ws_post_cpu.py                                   # this tree
    for src in /tmp/before/src src src; do PYTHONPATH=$src .venv/bin/python bench/ws_post_cpu.py; done   # A/B
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_busy, print_header

SECRET = "bench-secret"


class Ring:
    """The key ring's two calls the management API makes, with one admin key."""

    record = SimpleNamespace(id="polyfn-admin", scope="admin", owner=None, function=None)

    async def ensure(self, key_id: str) -> None:
        return None

    def signing_credentials(self, key_id: str) -> tuple[str, Any] | None:
        return (SECRET, self.record) if key_id == "polyfn-admin" else None


def main() -> int:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    import polyfn
    from polyfn.wsapi.connections import Connection, Connections
    from polyfn.wsapi.management import ManagementApi

    print_header("post_to_connection: the management API's CPU a post, in-process")
    print(f"  polyfn from {Path(polyfn.__file__).parent}; machine busy before: {machine_busy():.0%} of all CPUs")
    conns = Connections("bench-node", 131072)
    signer = SigV4Auth(Credentials("polyfn-admin", SECRET), "execute-api", "us-east-1")
    answers: list[dict[str, Any]] = []

    async def nothing(msg: dict[str, Any]) -> None:
        return None

    async def answer(msg: dict[str, Any]) -> None:
        answers.append(msg)

    scopes = []
    for i in range(100):  # 100 connections, each post signed as boto3 signs it
        cid = conns.new_id()
        conns.add(Connection(cid, "wsbench", "127.0.0.1", "ws/wsbench", time.time(), "127.0.0.1", "bench", 600, 7200,
                             nothing))
        path = f"/ws/wsbench/@connections/{cid}"
        req = AWSRequest("POST", f"http://127.0.0.1:8080{path}", data=str(i).encode())
        signer.add_auth(req)
        headers = [(b"host", b"127.0.0.1:8080"), *((k.lower().encode(), v.encode()) for k, v in req.headers.items())]
        scopes.append(({"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
                        "headers": headers}, str(i).encode()))
    api = ManagementApi(conns, Ring())

    async def run(n: int) -> None:
        for k in range(n):
            scope, body = scopes[k % len(scopes)]

            async def receive(body: bytes = body) -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            await api(scope, receive, answer)
            if len(answers) > 64:
                del answers[:-2]

    async def measure(n: int) -> float:
        await run(500)
        assert answers[-2]["status"] == 200, answers[-2:]
        t0 = time.process_time()
        await run(n)
        return (time.process_time() - t0) / n * 1e6

    figures = sorted(asyncio.run(measure(20_000)) for _ in range(5))
    print(f"  {figures[2]:.1f} µs a post (median of 5 × 20,000; min {figures[0]:.1f}, max {figures[-1]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
