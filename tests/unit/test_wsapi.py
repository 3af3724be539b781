"""The pure parts of the WebSocket API (polyfn.wsapi): route selection, events, answers, connection ids, the sweep,
and the lean protocol's queue and flag."""

from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace
from typing import Any

import pytest

from polyfn.model import FunctionSpec, SpecError, validate_spec
from polyfn.wsapi import events
from polyfn.wsapi.connections import Connection, Connections, Denied, Gone, TooLarge
from polyfn.wsapi.protocol import Flag, Inbox

ROUTES = ["$connect", "$disconnect", "$default", "send", "42"]


@pytest.mark.parametrize(("expression", "body", "routes", "want"), [
    ("$request.body.action", '{"action": "send"}', ROUTES, "send"),
    ("$request.body.action", '{"action": "other"}', ROUTES, "$default"),
    ("$request.body.action", '{"action": "$connect"}', ROUTES, "$default"),  # never a $ route from a message
    ("$request.body.action", "not json", ROUTES, "$default"),
    ("$request.body.action", '["send"]', ROUTES, "$default"),
    ("$request.body.action", '{"action": 42}', ROUTES, "42"),
    ("$request.body.action", '{"action": true}', ROUTES, "$default"),
    ("$request.body.msg.kind", '{"msg": {"kind": "send"}}', ROUTES, "send"),
    ("$request.body.msg.kind", '{"msg": "send"}', ROUTES, "$default"),
    ("$request.body.action", b'{"action": "send"}', ROUTES, "send"),
    ("$request.body.action", b"\xff\xfe", ROUTES, "$default"),
    ("$request.body.action", '{"action": "other"}', ["send"], None),  # no $default: no route
    ("$request.body.action", '{"action": "send"}', ["send"], "send"),
])
def test_route_selection(expression: str, body: Any, routes: list[str], want: str | None) -> None:
    assert events.select_route(expression, body, routes) == want


@pytest.mark.parametrize(("value", "want"), [
    (None, None),
    ({"statusCode": 200}, None),
    ({"statusCode": 200, "body": "hi"}, "hi"),
    ({"body": {"a": 1}}, '{"a": 1}'),
    ({"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}, b"\x00\x01"),
    ("plain", "plain"),
    ([1, 2], "[1, 2]"),
    ({"other": 1}, '{"other": 1}'),
    (b"raw", b"raw"),
])
def test_what_a_two_way_route_sends_back(value: Any, want: Any) -> None:
    assert events.reply(value) == want


@pytest.mark.parametrize(("value", "want"), [
    (None, (200, [], b"")),
    ("yes", (200, [], b"")),
    ({"statusCode": 200}, (200, [], b"")),
    ({"statusCode": 403, "body": "no"}, (403, [], b"no")),
    ({"statusCode": "401", "body": {"why": "token"}}, (401, [], b'{"why": "token"}')),
    ({"statusCode": 1000}, (502, [], b"")),
    ({"statusCode": "x"}, (502, [], b"")),
    ({"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "chat"}}, (200, [("Sec-WebSocket-Protocol", "chat")], b"")),
])
def test_connect_answers(value: Any, want: Any) -> None:
    assert events.connect_answer(value) == want


def test_answer_value() -> None:
    assert events.answer_value(200, b'{"a": 1}') == (True, {"a": 1})
    assert events.answer_value(200, b"") == (True, None)
    assert events.answer_value(200, b"not json") == (True, b"not json")
    assert events.answer_value(500, b'{"errorMessage": "x"}') == (False, None)


def _conn(**kw: Any) -> SimpleNamespace:
    base = dict(id="abc=", domain="node:8080", stage="ws/chat", api_id="chat", connected_at=1707480000.5,
                source_ip="127.0.0.1", user_agent="ua", authorizer=None)
    return SimpleNamespace(**{**base, **kw})


def test_events_have_api_gateways_shape() -> None:
    conn = _conn()
    e = events.connect_event(conn, [("host", "node:8080"), ("sec-websocket-key", "k")], [("a", "1"), ("a", "2")],
                             1707480001.0, "rid")
    ctx = e["requestContext"]
    assert (ctx["routeKey"], ctx["eventType"], ctx["connectionId"], ctx["domainName"], ctx["stage"]) == (
        "$connect", "CONNECT", "abc=", "node:8080", "ws/chat")
    assert ctx["connectedAt"] == 1707480000500 and ctx["requestTimeEpoch"] == 1707480001000
    assert ctx["requestTime"] == "09/Feb/2024:12:00:01 +0000"
    assert e["headers"] == {"Host": "node:8080", "Sec-WebSocket-Key": "k"}
    assert e["queryStringParameters"] == {"a": "2"} and e["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    m = events.message_event(conn, "send", "hi", 1707480002.0, "rid2")
    assert (m["body"], m["isBase64Encoded"], m["requestContext"]["eventType"]) == ("hi", False, "MESSAGE")
    b = events.message_event(conn, "$default", b"\x00", 1707480002.0, "rid3")
    assert (b["body"], b["isBase64Encoded"]) == ("AA==", True)
    d = events.disconnect_event(_conn(authorizer={"principalId": "k"}), 1001, "gone", 1707480003.0, "rid4")
    assert d["requestContext"]["disconnectStatusCode"] == 1001
    assert d["requestContext"]["authorizer"] == {"principalId": "k"}
    assert json.loads(events.gateway_error("Forbidden", "abc=", "r")) == {
        "message": "Forbidden", "connectionId": "abc=", "requestId": "r"}


def test_connection_ids_carry_the_node() -> None:
    tag = events.node_tag("node-a")
    cid = events.connection_id(tag, b"12345678")
    assert len(cid) == 16 and cid.endswith("=")
    assert events.tag_of(cid) == tag != events.node_tag("node-b")
    assert events.tag_of("nonsense!") is None and events.tag_of("YWJj") is None


class _Sink:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, msg: dict[str, Any]) -> None:
        self.sent.append(msg)


def test_the_sweep_closes_idle_and_too_long_connections() -> None:
    async def run() -> None:
        now = [1000.0]
        conns = Connections("n", 1024, clock=lambda: now[0])
        sinks = [_Sink() for _ in range(3)]
        a = Connection(conns.new_id(), "f", "h", "ws/f", 1000.0, "ip", "ua", idle=10, max_duration=100, send=sinks[0])
        b = Connection(conns.new_id(), "f", "h", "ws/f", 1000.0, "ip", "ua", idle=10, max_duration=15, send=sinks[1])
        c = Connection(conns.new_id(), "f", "h", "ws/f", 1000.0, "ip", "ua", idle=10, max_duration=100, send=sinks[2])
        for x in (a, b, c):
            conns.add(x)
        now[0] = 1009.0
        conns.touch(a)
        conns.touch(b)
        assert conns.sweep(1009.0) == []
        assert conns.sweep(1012.0) == [c]  # idle since 1000
        assert conns.sweep(1016.0) == [b]  # touched, but past its whole life
        await asyncio.sleep(0)
        assert sinks[2].sent == [{"type": "websocket.close", "code": 1001,
                                  "reason": "Going away: the connection was idle too long"}]
        assert sinks[1].sent[0]["reason"] == "Going away: the connection reached its maximum duration"
        assert sinks[0].sent == []

    asyncio.run(run())


def test_management_operations() -> None:
    async def run() -> None:
        conns = Connections("n", 8, clock=lambda: 5.0)
        sink = _Sink()
        conn = Connection(conns.new_id(), "chat", "h", "ws/chat", 1.0, "ip", "ua", 10, 10, sink)
        conns.add(conn)
        invoke = SimpleNamespace(scope="invoke", owner=None, function=None)
        await conns.operate("post", conn.id, b"hi", invoke)
        await conns.operate("post", conn.id, b"\xff", invoke)
        assert sink.sent == [{"type": "websocket.send", "text": "hi"}, {"type": "websocket.send", "bytes": b"\xff"}]
        info = await conns.operate("get", conn.id, b"", invoke)
        assert info == {"connectedAt": "1970-01-01T00:00:01.000Z", "lastActiveAt": "1970-01-01T00:00:05.000Z",
                        "identity": {"sourceIp": "ip", "userAgent": "ua"}}
        with pytest.raises(TooLarge):
            await conns.operate("post", conn.id, b"123456789", invoke)
        with pytest.raises(Denied):  # a key bound to another function
            await conns.operate("post", conn.id, b"x", SimpleNamespace(scope="invoke", owner=None, function="other"))
        with pytest.raises(Denied):  # read is below invoke
            await conns.operate("post", conn.id, b"x", SimpleNamespace(scope="read", owner=None, function=None))
        await conns.operate("post", conn.id, b"x", SimpleNamespace(scope="invoke", owner="fn", function=None))
        await conns.operate("delete", conn.id, b"", invoke)
        assert sink.sent[-1] == {"type": "websocket.close", "code": 1000, "reason": ""}
        with pytest.raises(Gone):
            await conns.operate("post", conn.id, b"x", invoke)
        with pytest.raises(Gone):  # another node's id, no cluster
            await conns.operate("post", Connections("other", 8).new_id(), b"x", invoke)

    asyncio.run(run())


@pytest.mark.parametrize(("field", "value"), [
    ("ws_route_selection", "$request.header.x"), ("ws_route_selection", "action"), ("ws_routes", ["$other"]),
    ("ws_routes", [""]), ("ws_responses", ["$nope"]), ("ws_idle_timeout", 0.0), ("ws_max_duration", 1e9),
])
def test_spec_refuses_bad_websocket_settings(field: str, value: Any) -> None:
    with pytest.raises(SpecError, match=field.split("_")[0]):
        validate_spec(FunctionSpec(name="f", **{field: value}), 900, 4096, 10)


def test_inbox_and_flag() -> None:
    async def run() -> None:
        box = Inbox()
        assert box.empty()
        getter = asyncio.ensure_future(box.get())
        await asyncio.sleep(0)
        box.put_nowait(1)
        box.put_nowait(2)
        assert await getter == 1 and box.qsize() == 1 and await box.get() == 2
        flag = Flag()
        await flag.wait()  # set: at once
        flag.clear()
        waiter = asyncio.ensure_future(flag.wait())
        await asyncio.sleep(0)
        assert not waiter.done()
        flag.set()
        await waiter
        assert flag.is_set()

    asyncio.run(run())


def test_management_request_ids_are_version_4_uuids() -> None:
    import uuid

    from polyfn.wsapi.management import request_id

    ids = {request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for raw in list(ids)[:200]:
        u = uuid.UUID(raw.decode())
        assert u.version == 4 and u.variant == uuid.RFC_4122 and str(u).encode() == raw
