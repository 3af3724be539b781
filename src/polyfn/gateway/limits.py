"""What one HTTP connection may cost the node: header size and count, time to send headers and body,
and how many connections are open at once (the idle keep-alive time is uvicorn's `timeout_keep_alive`) (with the file descriptor limit raised to
match at start).

Without them a slowloris or slow-body connection was held for ever, 1,100 idle connections took every file
descriptor of a default 1,024 limit, and 16 MiB of headers (or one 64 MiB header, accumulated piece by piece)
were accepted and stalled every other client. The values follow production servers: nginx answers 431/400
past `large_client_header_buffers` (4 × 8 KB) and times out slow headers and bodies (60 s each); Kestrel
wants request bodies at a minimum average rate after a grace period (240 B/s, 5 s). All are settings
(`POLYFN_HTTP_*`, docs/operations.md, "HTTP limits"); the protocol enforcing them is `gateway/http.py`.
"""

from __future__ import annotations

import json
import logging
import resource
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("polyfn.gateway")

#: file descriptors the node needs besides its HTTP connections (instances' sockets, the database, brokers)
FD_HEADROOM = 4096


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 32 * 1024  # request line and headers of one request
    max_headers: int = 100
    header_timeout: float = 10.0  # from a request's first byte (or the connection's start) to its last header
    body_timeout: float = 60.0  # the body's grace period, ...
    body_min_rate: float = 1024.0  # ... then at least this many bytes a second on average
    max_connections: int = 10_000  # open at once; further ones are answered 503 and closed

    @classmethod
    def from_settings(cls, s: Any) -> HttpLimits:
        return cls(max_header_bytes=s.http_max_header_bytes, max_headers=s.http_max_headers,
                   header_timeout=s.http_header_timeout, body_timeout=s.http_body_timeout,
                   body_min_rate=s.http_body_min_rate, max_connections=s.http_max_connections)


class HeadersTooLarge(Exception):
    """Raised from the parser's callbacks: the request's headers are over a limit (answered 431)."""


def error_response(status: int, reason: str, code: str, message: str, extra: bytes = b"",
                   close: bool = True) -> bytes:
    """A whole HTTP/1.1 response in polyfn's error shape, closing the connection unless `close` is false (the
    protocol sends it itself: no ASGI cycle exists for a request refused while it is being read)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nx-polyfn-error: {code}\r\n"
            f"content-length: {len(body)}\r\n")
    if close:
        head += "connection: close\r\n"
    return head.encode() + extra + b"\r\n" + body


def raise_fd_limit(max_connections: int) -> tuple[int, int]:
    """Raise the soft limit on open files so `max_connections` fit with FD_HEADROOM (up to the hard limit, and
    the hard limit too when the node may: CAP_SYS_RESOURCE). Returns (before, after); `connections_for(after)`
    is how many connections then fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + FD_HEADROOM
    if soft >= want:
        return soft, soft
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return soft, want
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < max_connections + FD_HEADROOM:
        log.warning("open files are limited to %d (the hard limit): %d connections at most, not "
                    "POLYFN_HTTP_MAX_CONNECTIONS=%d; raise the hard limit (LimitNOFILE= in systemd, ulimit -Hn)",
                    want, connections_for(want, max_connections), max_connections)
    return soft, want


def connections_for(fd_limit: int, max_connections: int) -> int:
    """Connections that fit under `fd_limit` with FD_HEADROOM: beyond them a client is answered 503, instead
    of the server failing to accept (EMFILE) and every client waiting."""
    return max(16, min(max_connections, fd_limit - FD_HEADROOM))


class BodyTooLarge(Exception):
    """A request body past its limit, raised from `receive` (the API answers 413 `payload_too_large`)."""

    def __init__(self, limit: int):
        super().__init__(f"the request body is over {limit} bytes")
        self.limit = limit


#: paths that invoke a function (anonymous on some APIs): their bodies are payloads
_INVOKE_PREFIXES = ("/function/", "/async-function/", "/api/v1/web/")
_INVOKE_PARTS = ("/invoke", "/invocations")


def body_limit(path: str, max_payload: int, max_code_size: int) -> int:
    """The most a request to the API (not `/fn/`, which the gateway bounds itself) may send: an invocation's
    payload limit (plus 1 MiB for an envelope), else a deploy's (code, base64-encoded, plus 1 MiB)."""
    if path.startswith(_INVOKE_PREFIXES) or any(p in path for p in _INVOKE_PARTS) or path.startswith("/console"):
        return max_payload + (1 << 20)
    return max_code_size * 4 // 3 + (1 << 20)


async def limit_body(app: Any, scope: dict[str, Any], receive: Any, send: Any, limit: int) -> None:
    """Call the ASGI `app` with a `receive` that counts the body and raises BodyTooLarge past `limit` (so the
    body is refused as it arrives, never buffered whole); a declared Content-Length past it is refused
    before the app runs."""
    for k, v in scope["headers"]:
        if k == b"content-length":
            if v.isdigit() and int(v) > limit:
                await _send_413(send, limit)
                return
            break
    seen = 0

    async def counted() -> Any:
        nonlocal seen
        msg = await receive()
        body = msg.get("body")
        if body:
            seen += len(body)
            if seen > limit:
                raise BodyTooLarge(limit)
        return msg

    await app(scope, counted, send)


async def _send_413(send: Any, limit: int) -> None:
    body = json.dumps({"error": {"code": "payload_too_large",
                                 "message": f"the request body is over {limit} bytes"}}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"x-polyfn-error", b"payload_too_large"),
        (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
