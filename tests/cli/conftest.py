"""Fixtures for CLI tests: a tiny real HTTP server playing the polyfn API, and an isolated runner.

The fake server speaks real HTTP on a free port, records every request and answers with canned
responses, so the tests exercise the CLI, the SDK client and httpx exactly as they run for users,
without needing the real server (which is tested end to end elsewhere).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner, Result

from polyfn.cli.main import app


@dataclass
class Recorded:
    """One request the fake server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Canned:
    """A canned answer; `chunks` are written one by one (flushed), then the connection is closed."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] | None = None


class FakeApi:
    """Routes `(METHOD, path)` to canned answers; unknown routes get the API's 404 envelope."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Canned] = {}
        self.requests: list[Recorded] = []
        self.url = ""

    def route(
        self,
        method: str,
        path: str,
        *,
        status: int = 200,
        json_body: Any = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        chunks: list[bytes] | None = None,
    ) -> None:
        all_headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        self.routes[(method, path)] = Canned(status=status, body=body, headers=all_headers, chunks=chunks)

    def error(self, method: str, path: str, status: int, code: str, message: str) -> None:
        """Answer like the platform does: the error envelope plus the `X-Polyfn-Error` marker."""
        self.route(
            method,
            path,
            status=status,
            json_body={"error": {"code": code, "message": message}},
            headers={"X-Polyfn-Error": code},
        )

    def only(self, method: str, path: str) -> Recorded:
        """The single request made to a route (fails the test if there were none or several)."""
        matching = [r for r in self.requests if r.method == method and r.path == path]
        assert len(matching) == 1, f"expected one {method} {path}, got {self.requests}"
        return matching[0]


def _handler_for(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            api.requests.append(
                Recorded(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
            )
            canned = api.routes.get((self.command, parts.path))
            if canned is None:
                canned = Canned(
                    status=404,
                    body=json.dumps(
                        {"error": {"code": "not_found", "message": f"no route {parts.path}"}}
                    ).encode(),
                    headers={"Content-Type": "application/json", "X-Polyfn-Error": "not_found"},
                )
            self.send_response(canned.status)
            for name, value in canned.headers.items():
                self.send_header(name, value)
            if canned.chunks is None:
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)
                return
            self.send_header("Connection", "close")
            self.end_headers()
            for chunk in canned.chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
            self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    return Handler


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data dir the CLI uses by default; no POLYFN_* from the developer's shell leaks in."""
    for name in list(os.environ):
        if name.startswith("POLYFN_"):
            monkeypatch.delenv(name)
    # pytest-xdist workers export COLUMNS=80; tables are tested as they look when piped.
    monkeypatch.delenv("COLUMNS", raising=False)
    directory = tmp_path / "data"
    directory.mkdir()
    monkeypatch.setenv("POLYFN_DATA_DIR", str(directory))
    return directory


Run = Callable[..., Result]


@pytest.fixture
def run(api: FakeApi, data_dir: Path) -> Run:
    """Run `polyfn --url <fake> --api-key test-key ARGS...` (pass `connect=False` to omit both)."""
    runner = CliRunner()

    def invoke(
        *args: str, connect: bool = True, input: bytes | str | None = None, env: dict | None = None
    ) -> Result:
        prefix = ["--url", api.url, "--api-key", "test-key"] if connect else []
        return runner.invoke(app, [*prefix, *args], input=input, env=env)

    return invoke
