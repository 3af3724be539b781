"""`ws://NODE/ws/FUNCTION`: a function's WebSocket API, as API Gateway runs one (ASGI `websocket` scope).

Handshake: an unknown function → 404 before the upgrade (an HTTP answer, `function_not_found`); `auth: key` → 401
without an invoke key (`?code=`, `x-functions-key`, or `Authorization: Bearer`); `auth: app` → 401 without an
app user's token (`?app=ENV&token=…` or `Authorization: Bearer` with `?app=ENV`); then the `$connect` route (when
it is one of the function's `ws_routes`), whose answer may refuse the connection (events.py). Each message is
routed by the function's `ws_route_selection` and invoked in order of arrival (one at a time per connection);
`$disconnect` runs once the connection has gone. Every invocation is a `Call` of kind `event` with trigger
`websocket` whose body is the API Gateway WebSocket event, so every flavor's handler gets `(event, context)`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from polyfn.auth.function_keys import refusal
from polyfn.auth.keys import allows
from polyfn.call import Call
from polyfn.invoker import Invoker, Outcome, platform_error, safe_headers
from polyfn.wsapi import events
from polyfn.wsapi.connections import Connection, Connections

log = logging.getLogger("polyfn.websockets")

PREFIX = "/ws/"
_JSON = "application/json"


class WebSocketEndpoint:
    """`verify_app(env, token)`: the app platform's check of an end user's token (identity dict, or None when it
    does not verify); None when the node has no app service."""

    def __init__(self, invoker: Invoker, connections: Connections, keys: Any, idle: float, max_duration: float,
                 verify_app: Callable[[str, str], Any] | None = None, clock: Callable[[], float] = time.time):
        self.invoker = invoker
        self.connections = connections
        self.keys = keys
        self.idle = idle
        self.max_duration = max_duration
        self.verify_app = verify_app
        self.clock = clock

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        conn = await self._open(scope, receive, send)
        if conn is not None:  # (what `_open` read is gone with its frame: the connection keeps only `conn`)
            await self._serve(conn, receive)

    async def _open(self, scope: dict[str, Any], receive: Any, send: Any) -> Connection | None:
        """The handshake: the function, the caller's key or token, the `$connect` route; the open connection, or
        None when it was refused (answered with an HTTP response instead of the upgrade)."""
        name = scope["path"][len(PREFIX):]
        if (await receive())["type"] != "websocket.connect":
            return None
        active = self.invoker.registry.get(name) if name and "/" not in name else None
        if active is None:
            await refuse_handshake(send, platform_error(404, "function_not_found", f"function {name!r} does not exist: "
                                               "a WebSocket API is ws://NODE/ws/FUNCTION"))
            return None
        spec = active.revision.spec
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        scope["headers"] = []  # (read once: nothing reads the handshake's headers again, ~1 KB a connection)
        query = scope["query_string"].decode("latin-1")
        authorizer, refused = await self._authorise(spec, name, query, headers)
        if refused is not None:
            await refuse_handshake(send, refused)
            return None
        now = self.clock()
        client = scope.get("client") or ("", 0)
        host = next((v for k, v in headers if k == "host"), "")
        conn = Connection(self.connections.new_id(), name, host, "ws/" + name, now, client[0],
                          next((v for k, v in headers if k == "user-agent"), ""),
                          spec.ws_idle_timeout or self.idle, spec.ws_max_duration or self.max_duration, send)
        if authorizer is not None:
            conn.authorizer, conn.identity = authorizer
        subprotocol = None
        if events.ROUTE_CONNECT in spec.ws_routes:
            rid = _request_id()
            out = await self._invoke(conn, events.connect_event(conn, headers, parse_qsl(query), now, rid))
            ok, value = events.answer_value(out.status, out.body)
            if not ok:
                if out.error is None:  # the handler failed: API Gateway's 500
                    out = Outcome(500, [(b"content-type", b"application/json")],
                                  events.gateway_error("Internal server error", conn.id, rid).encode())
                await refuse_handshake(send, out)
                return None
            status, answer_headers, body = events.connect_answer(value)
            if not 200 <= status < 300:
                await refuse_handshake(send, Outcome(status, safe_headers(answer_headers), body))
                return None
            subprotocol = next((v for k, v in answer_headers if k.lower() == "sec-websocket-protocol"), None)
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if subprotocol:
            accept["subprotocol"] = subprotocol
        await send(accept)
        self.connections.add(conn)
        return conn

    async def _serve(self, conn: Connection, receive: Any) -> None:
        """The open connection's messages, one at a time, until it goes; then `$disconnect`."""
        code, reason = 1005, ""
        try:
            while True:
                msg = await receive()
                kind = msg["type"]
                if kind == "websocket.receive":
                    await self._message(conn, msg)
                elif kind == "websocket.disconnect":
                    code, reason = msg.get("code", 1005), msg.get("reason") or ""
                    break
        finally:
            self.connections.remove(conn)
            live = self.invoker.registry.get(conn.function)
            if live is not None and events.ROUTE_DISCONNECT in live.revision.spec.ws_routes:
                await self._invoke(conn, events.disconnect_event(conn, code, reason, self.clock(), _request_id()))

    async def _message(self, conn: Connection, msg: dict[str, Any]) -> None:
        data = msg.get("text")
        if data is None:
            data = msg.get("bytes") or b""
        self.connections.touch(conn)
        active = self.invoker.registry.get(conn.function)
        spec = active.revision.spec if active is not None else None
        rid = _request_id()
        route = events.select_route(spec.ws_route_selection, data, spec.ws_routes) if spec is not None else None
        if route is None:
            await _send(conn, events.gateway_error("Forbidden", conn.id, rid))
            return
        out = await self._invoke(conn, events.message_event(conn, route, data, self.clock(), rid))
        ok, value = events.answer_value(out.status, out.body)
        if not ok:
            if out.error is not None:
                log.info("WebSocket %s route %s of %s: %s", conn.id, route, conn.function, out.error.get("message"))
            await _send(conn, events.gateway_error("Internal server error", conn.id, rid))
            return
        assert spec is not None
        if route in spec.ws_responses or "*" in spec.ws_responses:
            answer = events.reply(value)
            if answer is not None:
                self.connections.touch(conn)
                await _send(conn, answer)

    async def _invoke(self, conn: Connection, event: dict[str, Any]) -> Outcome:
        return await self.invoker.call(Call(conn.function, "event", "websocket", body=json.dumps(event).encode(),
                                            content_type=_JSON, identity=conn.identity))

    async def _authorise(self, spec: Any, name: str, query: str, headers: list[tuple[str, str]]
                         ) -> tuple[tuple[dict[str, Any], dict[str, Any] | None] | None, Outcome | None]:
        """((the events' `requestContext.authorizer`, the call's identity) or None, the refusal or None)."""
        if spec.auth == "key":
            refused = refusal(spec, name, query, headers, self.keys)
            key = None
            if refused is not None:
                bearer = next((v for k, v in headers if k == "authorization"), "")
                key = self.keys.from_authorization(bearer) if bearer and self.keys is not None else None
                if key is None or not allows(key, "invoke", name):
                    return None, platform_error(*refused)
            else:
                token = next((v for k, v in headers if k == "x-functions-key"), "") or dict(parse_qsl(query)).get("code", "")
                key = self.keys.verify(token)
            return ({"principalId": key.id, "scope": key.scope}, None), None
        if spec.auth == "app":
            q = dict(parse_qsl(query))
            token = q.get("token", "")
            bearer = next((v for k, v in headers if k == "authorization"), "")
            if not token and bearer.lower().startswith("bearer "):
                token = bearer[7:].strip()
            ident = self.verify_app(q.get("app", ""), token) if self.verify_app is not None and token else None
            if ident is None:
                return None, platform_error(401, "app_token_required", f"function {name!r} is for an app's signed-in "
                                            "users: connect with ?app=ENV&token=ACCESS_TOKEN (or the token as "
                                            "Authorization: Bearer)")
            seen = {k: str(ident.get(k) or "") for k in ("app", "uid", "openid", "provider", "email")}
            return ({"principalId": seen["uid"] or seen["openid"], **seen}, ident), None
        return None, None


async def refuse_handshake(send: Any, out: Outcome) -> None:
    """Answer the handshake with an HTTP response instead of the upgrade (ASGI's websocket.http.response)."""
    headers = [*out.headers, (b"content-length", str(len(out.body)).encode())]
    await send({"type": "websocket.http.response.start", "status": out.status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": out.body})


async def _send(conn: Connection, data: str | bytes) -> None:
    msg = {"type": "websocket.send", "text": data} if isinstance(data, str) else {"type": "websocket.send", "bytes": data}
    try:
        await conn.send(msg)
    except Exception:  # (the client went meanwhile: its disconnect comes next)
        conn.closing = True


def _request_id() -> str:
    return base64.b64encode(os.urandom(10)).decode()
