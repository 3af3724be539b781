"""The API Gateway management API for WebSocket connections, as boto3's `apigatewaymanagementapi` speaks it.

`boto3.client("apigatewaymanagementapi", endpoint_url="http://NODE/ws/FUNCTION")` (the event's
`https://{domainName}/{stage}` on a TLS node; a function's boto3 finds the node without it:
AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI) → `POST|GET|DELETE [/ws/FUNCTION]/@connections/{id}`: PostToConnection,
GetConnection, DeleteConnection. Requests are SigV4-signed (service `execute-api`) with a polyfn key of scope
`invoke` for the connection's function — a function's own instance key is one. Errors in the service's shape
(`x-amzn-ErrorType`, `{"message": …}`): GoneException 410 (not connected), PayloadTooLargeException 413 (over
POLYFN_WS_MAX_MESSAGE, API Gateway's 128 KB), ForbiddenException 403 (signature or key scope). A plain HTTP request to
`/ws/FUNCTION` itself (no upgrade) is 426 `upgrade_required`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

from polyfn.auth import sigv4
from polyfn.invoker import platform_error
from polyfn.wsapi.connections import Connections, Denied, Gone, TooLarge
from polyfn.wsapi.endpoint import PREFIX

MARK = "/@connections/"
_OPS = {"POST": "post", "GET": "get", "DELETE": "delete"}


class ManagementApi:
    def __init__(self, connections: Connections, keys: Any, clock: Callable[[], float] = time.time):
        self.connections = connections
        self.keys = keys
        self.clock = clock

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        at = path.find(MARK)
        prefix, cid = (path[:at], path[at + len(MARK):]) if at >= 0 else (path, "")
        if at < 0 or (prefix and not (prefix.startswith(PREFIX) and "/" not in prefix[len(PREFIX):])) or (
                not cid or "/" in cid):
            out = platform_error(426, "upgrade_required", "this is a WebSocket API: connect with a WebSocket client "
                                 "(ws://NODE/ws/FUNCTION); the management API is [/ws/FUNCTION]/@connections/ID") \
                if at < 0 and path.count("/") == 2 else platform_error(404, "not_found", f"no route {path}")
            await _answer(send, out.status, out.headers, out.body)
            return
        op = _OPS.get(scope["method"])
        limit = self.connections.max_message
        body, over = await _read(receive, limit)
        if op is None:
            await _error(send, 404, "NotFoundException", f"{scope['method']} is not an operation of {MARK}ID")
            return
        if over:
            await _error(send, 413, "PayloadTooLargeException",
                         f"the message is over {limit} bytes, the limit (POLYFN_WS_MAX_MESSAGE; API Gateway's 128 KB)")
            return
        key = await self._verify(scope, body)
        if isinstance(key, str):
            await _error(send, 403, "ForbiddenException", key)
            return
        try:
            info = await self.connections.operate(op, cid, body, key)
        except Gone:
            await _error(send, 410, "GoneException", "")
            return
        except TooLarge as e:
            await _error(send, 413, "PayloadTooLargeException", str(e))
            return
        except Denied as e:
            await _error(send, 403, "ForbiddenException", str(e))
            return
        if info is not None:
            await _answer(send, 200, [(b"content-type", b"application/json")], json.dumps(info).encode())
        else:
            await _answer(send, 204 if op == "delete" else 200, [], b"")

    async def _verify(self, scope: dict[str, Any], body: bytes) -> Any:
        """The caller's key record, or the refusal's message."""
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:  # (ASGI header names are lower-case already)
            name = k.decode("latin-1")
            value = v.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        ring = self.keys
        claimed = sigv4.claimed_key_id(headers.get("authorization", ""))
        if claimed:
            await ring.ensure(claimed)
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
        query = scope["query_string"]
        try:
            ok = sigv4.verify(scope["method"], raw_path, sigv4.parse_query(query.decode("latin-1")) if query else [],
                              headers, ring.signing_credentials, self.clock(), "execute-api",
                              hashlib.sha256(body).hexdigest())
        except sigv4.SigV4Error as e:
            return e.message
        return ok.key


async def _read(receive: Any, limit: int) -> tuple[bytes, bool]:
    """The request's body, and whether it was over `limit` (then the rest is read and dropped)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return b"", False
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        if not msg.get("more_body"):
            return (b"".join(chunks), False) if size <= limit else (b"", True)


def request_id() -> bytes:
    """A random (version 4) UUID as API Gateway's request ids are: the bytes of `str(uuid.uuid4())`, at under half
    its cost (one of the cheap cuts of a post's CPU, bench/ws_post_cpu.py)."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}".encode()


async def _error(send: Any, status: int, kind: str, message: str) -> None:
    await _answer(send, status, [(b"content-type", b"application/json"), (b"x-amzn-errortype", kind.encode())],
                  json.dumps({"message": message}).encode())


async def _answer(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"x-amzn-requestid", request_id()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
