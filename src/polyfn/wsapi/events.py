"""The pure half of the WebSocket API: connection ids, route selection, API Gateway's WebSocket events, and what a
handler's answer means for the client. No I/O, no clock: times are passed in.

Decisions (docs/streaming.md, "WebSockets"):
* a route's answer goes back to the client only for the routes in the function's `ws_responses` (API Gateway's
  "two-way" routes, which have a route response; default `$default` only, so AWS's samples whose custom routes
  return `{"statusCode": 200, "body": "Data sent."}` behave as they do there): the `body` of a dict answer
  (`isBase64Encoded` → binary), a plain string as it is, any other value as JSON; `None` or no `body`: nothing;
* an invocation that fails (the handler raised, timed out, crashed) sends the client API Gateway's own frame,
  `{"message": "Internal server error", "connectionId": …, "requestId": …}`, whatever the route;
* a message whose route key is not a route, with no `$default` route, gets API Gateway's
  `{"message": "Forbidden", …}`;
* `$connect`: a `statusCode` outside 2xx refuses the connection with that status (its `body` as the response);
  a failed invocation refuses it with 500 (a platform error: its own status, 502/504/429);
  anything else (no answer, no statusCode) accepts it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

ROUTE_CONNECT = "$connect"
ROUTE_DISCONNECT = "$disconnect"
ROUTE_DEFAULT = "$default"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def node_tag(node_id: str) -> bytes:
    """The 3 bytes of a connection id that name the node holding it (a cluster forwards by them)."""
    return hashlib.sha256(node_id.encode()).digest()[:3]


def connection_id(tag: bytes, random: bytes) -> str:
    """An API Gateway-looking connection id (16 characters, ending in `=`): the node's tag, then 8 random bytes,
    in URL-safe base64 (it travels in a URL path: `/@connections/{id}`)."""
    return base64.urlsafe_b64encode(tag + random).decode()


def tag_of(conn_id: str) -> bytes | None:
    """The node tag inside a connection id; None for an id this node never made."""
    try:
        raw = base64.urlsafe_b64decode(conn_id.encode())
    except (ValueError, TypeError):
        return None
    return raw[:3] if len(raw) == 11 else None


def select_route(expression: str, body: str | bytes, routes: list[str]) -> str | None:
    """The route key of a message: the value the route selection expression (`$request.body.a.b`) finds in the
    message's JSON when it is one of `routes`, else `$default` when that is a route, else None (no route)."""
    value: Any = None
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        value = None
    for field in expression.split(".")[2:]:
        value = value.get(field) if isinstance(value, dict) else None
    if isinstance(value, bool):
        value = None
    if isinstance(value, int | float):
        value = json.dumps(value)
    if isinstance(value, str) and value in routes and not value.startswith("$"):
        return value
    return ROUTE_DEFAULT if ROUTE_DEFAULT in routes else None


def request_time(now: float) -> str:
    """API Gateway's `requestTime`: `09/Feb/2024:12:00:00 +0000`."""
    t = time.gmtime(now)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def iso_time(when: float) -> str:
    """ISO 8601 (UTC, milliseconds) as the management API's GetConnection answers times."""
    t = time.gmtime(when)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(when * 1000) % 1000:03d}Z"


def request_context(conn: Any, route_key: str, event_type: str, now: float, request_id: str) -> dict[str, Any]:
    """`requestContext` of every event. `conn` has: id, domain, stage, api_id, connected_at, source_ip,
    user_agent, authorizer (a dict or None)."""
    ctx: dict[str, Any] = {
        "routeKey": route_key, "eventType": event_type, "extendedRequestId": request_id,
        "requestTime": request_time(now), "messageDirection": "IN", "stage": conn.stage,
        "connectedAt": int(conn.connected_at * 1000), "requestTimeEpoch": int(now * 1000),
        "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
        "requestId": request_id, "domainName": conn.domain, "connectionId": conn.id, "apiId": conn.api_id,
    }
    if conn.authorizer is not None:
        ctx["authorizer"] = conn.authorizer
    return ctx


def connect_event(conn: Any, headers: list[tuple[str, str]], query: list[tuple[str, str]], now: float,
                  request_id: str) -> dict[str, Any]:
    """The `$connect` event: the handshake's headers and query string, as API Gateway passes them."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for k, v in headers:
        name = _header_case(k)
        single[name] = v
        multi.setdefault(name, []).append(v)
    q: dict[str, str] = {}
    mq: dict[str, list[str]] = {}
    for k, v in query:
        q[k] = v
        mq.setdefault(k, []).append(v)
    event: dict[str, Any] = {"headers": single, "multiValueHeaders": multi}
    if q:
        event["queryStringParameters"] = q
        event["multiValueQueryStringParameters"] = mq
    event["requestContext"] = request_context(conn, ROUTE_CONNECT, "CONNECT", now, request_id)
    event["isBase64Encoded"] = False
    return event


def message_event(conn: Any, route_key: str, data: str | bytes, now: float, request_id: str) -> dict[str, Any]:
    """A message's event: its text as `body`, or a binary message base64-encoded with `isBase64Encoded`."""
    ctx = request_context(conn, route_key, "MESSAGE", now, request_id)
    ctx["messageId"] = request_id[:16]
    if isinstance(data, bytes):
        return {"requestContext": ctx, "body": base64.b64encode(data).decode(), "isBase64Encoded": True}
    return {"requestContext": ctx, "body": data, "isBase64Encoded": False}


def disconnect_event(conn: Any, code: int, reason: str, now: float, request_id: str) -> dict[str, Any]:
    ctx = request_context(conn, ROUTE_DISCONNECT, "DISCONNECT", now, request_id)
    ctx["disconnectStatusCode"] = code
    ctx["disconnectReason"] = reason
    return {"headers": {}, "multiValueHeaders": {}, "requestContext": ctx, "isBase64Encoded": False}


def gateway_error(message: str, conn_id: str, request_id: str) -> str:
    """API Gateway's own frame to the client: `Internal server error`, `Forbidden`."""
    return json.dumps({"message": message, "connectionId": conn_id, "requestId": request_id})


def answer_value(status: int, body: bytes) -> tuple[bool, Any]:
    """(ok, value) of an invocation's outcome: ok when the function answered (2xx), with its JSON value (or the
    raw bytes when the answer is not JSON)."""
    if not 200 <= status < 300:
        return False, None
    if not body:
        return True, None
    try:
        return True, json.loads(body)
    except ValueError:
        return True, body


def reply(value: Any) -> str | bytes | None:
    """What goes back to the client for a two-way route's answer `value` (see the module docstring)."""
    if value is None:
        return None
    if isinstance(value, dict) and ("statusCode" in value or "body" in value):
        body = value.get("body")
        if body is None:
            return None
        if value.get("isBase64Encoded") and isinstance(body, str):
            try:
                return base64.b64decode(body)
            except ValueError:
                return body
        return body if isinstance(body, str) else json.dumps(body)
    if isinstance(value, bytes):
        return value
    return value if isinstance(value, str) else json.dumps(value)


def connect_answer(value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of a `$connect` handler's answer: a `statusCode` outside 2xx refuses."""
    if not isinstance(value, dict):
        return 200, [], b""
    try:
        status = int(value.get("statusCode", 200))
    except (TypeError, ValueError):
        status = 502
    if not 100 <= status <= 599:
        status = 502
    headers = value.get("headers") or {}
    pairs = [(str(k), str(v)) for k, v in headers.items()] if isinstance(headers, dict) else []
    body = value.get("body")
    raw = b"" if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
    return status, pairs, raw


def _header_case(name: str) -> str:
    """`sec-websocket-key` → `Sec-WebSocket-Key`, as API Gateway spells the headers it passes on."""
    special = {"websocket": "WebSocket"}
    return "-".join(special.get(p, p.capitalize()) for p in name.split("-"))
