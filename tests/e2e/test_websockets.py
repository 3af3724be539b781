"""WebSocket APIs for functions (polyfn.wsapi) against a real server, with real clients: the `websockets` package
and boto3's `apigatewaymanagementapi` — from the test and from inside a function."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from typing import Any

import boto3
import httpx
import pytest
import websockets
from botocore.config import Config

from .conftest import Server, wait_until

CHAT = '''import json, boto3

def handler(event, context):
    ctx = event["requestContext"]
    route = ctx["routeKey"]
    print("route", route, ctx["eventType"], ctx["connectionId"], ctx.get("disconnectStatusCode"))
    if route == "$connect":
        if (event.get("queryStringParameters") or {}).get("deny"):
            return {"statusCode": 403, "body": "not you"}
        if (event.get("queryStringParameters") or {}).get("crash"):
            raise RuntimeError("connect handler failed")
        return {"statusCode": 200}
    if route == "push":  # the management API from inside the function, as on AWS
        api = boto3.client("apigatewaymanagementapi", endpoint_url="http://" + ctx["domainName"] + "/" + ctx["stage"])
        target = json.loads(event["body"]).get("to") or ctx["connectionId"]
        api.post_to_connection(ConnectionId=target, Data=b"pushed to " + target.encode())
        info = api.get_connection(ConnectionId=ctx["connectionId"])
        return {"statusCode": 200, "body": "from " + info["Identity"]["SourceIp"]}
    if route == "pushenv":  # no endpoint_url: AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI and the function's own key
        boto3.client("apigatewaymanagementapi").post_to_connection(ConnectionId=ctx["connectionId"], Data=b"env")
        return {"statusCode": 200}
    if route == "whoami":
        return {"statusCode": 200, "body": ctx["connectionId"]}
    if route == "fail":
        raise ValueError("no")
    if route == "$default":
        return {"statusCode": 200, "body": json.dumps({"echo": event["body"], "b64": event["isBase64Encoded"],
                                                        "domain": ctx["domainName"], "stage": ctx["stage"]})}
    return {"statusCode": 200, "body": "one-way: never sent"}
'''

SPEC = {"flavor": "aws", "handler": "handler.handler",
        "ws_routes": ["$connect", "$disconnect", "$default", "push", "pushenv", "whoami", "fail", "quiet"],
        "ws_responses": ["$default", "push", "whoami"]}

NODE = '''const { ApiGatewayManagementApiClient, PostToConnectionCommand } = require("@aws-sdk/client-apigatewaymanagementapi");

exports.handler = async (event) => {
  const ctx = event.requestContext;
  if (ctx.routeKey === "$connect") return { statusCode: 200 };
  if (ctx.routeKey === "push") {  // the AWS SDK v3 client, as on Lambda's Node runtime
    const api = new ApiGatewayManagementApiClient({ endpoint: `http://${ctx.domainName}/${ctx.stage}` });
    await api.send(new PostToConnectionCommand({ ConnectionId: ctx.connectionId, Data: "pushed from node" }));
    return { statusCode: 200 };
  }
  return { statusCode: 200, body: `node ${ctx.eventType} ${ctx.routeKey}: ${event.body}` };
};
'''


@pytest.fixture(scope="module")
def chat(server: Server) -> Server:
    server.deploy("chat", {"handler.py": CHAT}, **SPEC)
    return server


def ws_url(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def mgmt(server: Server, key: tuple[str, str] | None = None, stage: str = "/ws/chat") -> Any:
    akid, secret = key or ("polyfn-admin", server.key)
    return boto3.client("apigatewaymanagementapi", endpoint_url=server.url + stage, region_name="us-east-1",
                        aws_access_key_id=akid, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def whoami(ws: Any) -> str:
    await ws.send(json.dumps({"action": "whoami"}))
    return await ws.recv()


def test_routes_events_and_replies(chat: Server) -> None:
    async def go() -> None:
        async with websockets.connect(ws_url(chat, "/ws/chat")) as ws:
            await ws.send("hello")
            echo = json.loads(await ws.recv())
            assert echo == {"echo": "hello", "b64": False, "domain": f"127.0.0.1:{chat.port}", "stage": "ws/chat"}
            await ws.send(b"\x00\x01")
            assert json.loads(await ws.recv())["b64"] is True
            await ws.send(json.dumps({"action": "quiet"}))  # a one-way route: nothing comes back ...
            await ws.send(json.dumps({"action": "fail"}))  # ... a failed invocation: API Gateway's error frame
            err = json.loads(await ws.recv())
            assert err["message"] == "Internal server error" and err["connectionId"] == await whoami(ws)

    run(go())


def test_a_function_pushes_with_boto3(chat: Server) -> None:
    async def go() -> None:
        async with websockets.connect(ws_url(chat, "/ws/chat")) as a, websockets.connect(ws_url(chat, "/ws/chat")) as b:
            b_id = await whoami(b)
            await a.send(json.dumps({"action": "push", "to": b_id}))
            assert await b.recv() == f"pushed to {b_id}"
            assert await a.recv() == "from 127.0.0.1"
            await b.send(json.dumps({"action": "pushenv"}))
            assert await b.recv() == "env"
            gauge = re.search(r'polyfn_websocket_connections\{function="chat"\} (\S+)', chat.api.get("/metrics").text)
            assert gauge is not None and float(gauge[1]) >= 2  # (others' closing connections may still count)

    run(go())


def test_the_management_api_from_outside(chat: Server) -> None:
    api = mgmt(chat)

    async def go() -> str:
        async with websockets.connect(ws_url(chat, "/ws/chat")) as ws:
            cid = await whoami(ws)
            await asyncio.to_thread(api.post_to_connection, ConnectionId=cid, Data=b"from the test")
            assert await ws.recv() == "from the test"
            await asyncio.to_thread(api.post_to_connection, ConnectionId=cid, Data=b"\xff\x00")
            assert await ws.recv() == b"\xff\x00"  # not UTF-8: a binary message
            info = await asyncio.to_thread(api.get_connection, ConnectionId=cid)
            assert info["Identity"]["SourceIp"] == "127.0.0.1" and info["ConnectedAt"] <= info["LastActiveAt"]
            # the endpoint without a stage (AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI in functions) works too
            await asyncio.to_thread(mgmt(chat, stage="").post_to_connection, ConnectionId=cid, Data=b"no stage")
            assert await ws.recv() == "no stage"
            await asyncio.to_thread(api.delete_connection, ConnectionId=cid)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
            return cid

    cid = run(go())
    with pytest.raises(api.exceptions.GoneException) as gone:
        api.post_to_connection(ConnectionId=cid, Data=b"too late")
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    with pytest.raises(api.exceptions.GoneException):
        api.get_connection(ConnectionId="AAAAAAAAAAAAAAA=")
    # $disconnect ran with the close code
    assert wait_until(lambda: any(f"route $disconnect DISCONNECT {cid} 1000" in ln[2] for a in _activations(chat)
                                  for ln in a.get("logs") or []), 20)


def _activations(server: Server) -> list[dict[str, Any]]:
    listed = server.api.get("/v1/activations", params={"function": "chat", "limit": 50}).json()
    items = listed if isinstance(listed, list) else listed.get("activations", [])
    return [server.activation(a["id"]) for a in items if a.get("trigger") == "websocket"]


def test_management_api_refusals(chat: Server) -> None:
    async def go() -> str:
        async with websockets.connect(ws_url(chat, "/ws/chat")) as ws:
            cid = await whoami(ws)
            with pytest.raises(mgmt(chat).exceptions.PayloadTooLargeException):
                await asyncio.to_thread(mgmt(chat).post_to_connection, ConnectionId=cid, Data=b"x" * (128 * 1024 + 1))
            other = chat.api.post("/v1/keys", json={"scope": "invoke", "function": "other"}).json()
            bound = mgmt(chat, (other["access_key_id"], other["secret_access_key"]))
            with pytest.raises(bound.exceptions.ForbiddenException):
                await asyncio.to_thread(bound.post_to_connection, ConnectionId=cid, Data=b"x")
            mine = chat.api.post("/v1/keys", json={"scope": "invoke", "function": "chat"}).json()
            await asyncio.to_thread(mgmt(chat, (mine["access_key_id"], mine["secret_access_key"])).post_to_connection,
                                    ConnectionId=cid, Data=b"bound to chat")
            assert await ws.recv() == "bound to chat"
            wrong = mgmt(chat, ("polyfn-admin", "not-the-key"))
            with pytest.raises(wrong.exceptions.ForbiddenException):
                await asyncio.to_thread(wrong.post_to_connection, ConnectionId=cid, Data=b"x")
            return cid

    run(go())
    r = httpx.post(f"{chat.url}/ws/chat/@connections/AAAAAAAAAAAAAAA=", content=b"x")  # unsigned
    assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "ForbiddenException"
    r = chat.http.get("/ws/chat")  # not an upgrade
    assert r.status_code == 426 and r.json()["error"]["code"] == "upgrade_required"


def test_handshake_refusals(chat: Server) -> None:
    async def status_of(path: str) -> int:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url(chat, path)):
                pass
        return refused.value.response.status_code

    async def go() -> None:
        assert await status_of("/ws/no-such-function") == 404
        assert await status_of("/ws/chat?deny=1") == 403
        assert await status_of("/ws/chat?crash=1") == 500

    run(go())
    r = httpx.get(f"{chat.url}/ws/no-such-function", headers={
        "upgrade": "websocket", "connection": "Upgrade", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "function_not_found"


def test_a_message_over_the_limit_closes_with_1009(chat: Server) -> None:
    async def go() -> None:
        async with websockets.connect(ws_url(chat, "/ws/chat"), max_size=None) as ws:
            await ws.send("x" * (128 * 1024 + 1))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

    run(go())


def test_key_auth_and_idle_timeout(server: Server) -> None:
    server.deploy("keyed", {"handler.py": CHAT}, **{**SPEC, "auth": "key", "ws_idle_timeout": 2})
    key = server.api.post("/v1/keys", json={"scope": "invoke", "function": "keyed"}).json()
    token = f"{key['access_key_id']}:{key['secret_access_key']}"

    async def go() -> None:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url(server, "/ws/keyed")):
                pass
        assert refused.value.response.status_code == 401
        async with websockets.connect(ws_url(server, "/ws/keyed"),
                                      additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send("hi")
            assert json.loads(await ws.recv())["echo"] == "hi"
        async with websockets.connect(ws_url(server, f"/ws/keyed?code={token}")) as ws:
            started = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
            assert "idle" in closed.value.rcvd.reason and time.monotonic() - started >= 1.5

    run(go())


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_node_and_native_flavors(server: Server) -> None:
    server.deploy("nodews", {"index.js": NODE}, runtime="node", flavor="aws", handler="index.handler",
                  ws_routes=["$connect", "$default", "push"])
    server.deploy("nativews", {"handler.py": "def handler(event, context):\n"
                               "    return {'body': event['requestContext']['routeKey'] + ' ' + event['body']}\n"},
                  ws_routes=["$default", "go"], ws_responses=["*"])

    async def go() -> None:
        async with websockets.connect(ws_url(server, "/ws/nodews")) as ws:
            await ws.send("hi")
            assert await ws.recv() == "node MESSAGE $default: hi"
            await ws.send(json.dumps({"action": "push"}))
            assert await ws.recv() == "pushed from node"
        async with websockets.connect(ws_url(server, "/ws/nativews")) as ws:
            await ws.send('{"action": "go"}')
            assert await ws.recv() == 'go {"action": "go"}'

    run(go())


def test_a_push_reaches_a_connection_another_node_holds(tmp_path: Any, jetstream_queue: dict[str, str]) -> None:
    """Two nodes on one NATS (each with its own database): a client connected to a; pushes through b's management
    API reach it (forwarded over NATS to the node the connection id names), and a closed one is Gone through b too."""
    from .conftest import start_server

    a = start_server(tmp_path / "a", env=jetstream_queue)
    b = start_server(tmp_path / "b", env=jetstream_queue)
    try:
        a.deploy("chat", {"handler.py": CHAT}, **SPEC)
        via_b = mgmt(b)

        async def go() -> str:
            async with websockets.connect(ws_url(a, "/ws/chat")) as ws:
                cid = await whoami(ws)
                await asyncio.to_thread(via_b.post_to_connection, ConnectionId=cid, Data=b"through b")
                assert await ws.recv() == "through b"
                info = await asyncio.to_thread(via_b.get_connection, ConnectionId=cid)
                assert info["Identity"]["SourceIp"] == "127.0.0.1"
                return cid

        cid = run(go())
        with pytest.raises(via_b.exceptions.GoneException):
            via_b.post_to_connection(ConnectionId=cid, Data=b"too late")
    finally:
        a.stop()
        b.stop()


WS_PROGRAM = '''import asyncio, os
from http import HTTPStatus
from websockets.asyncio.server import serve


def check(connection, request):
    if request.path.startswith("/deny"):
        return connection.respond(HTTPStatus.FORBIDDEN, "the program says no\\n")
    return None


async def handler(ws):
    async for msg in ws:
        if msg == "bye":
            await ws.close(4000, "program closed")
            return
        if isinstance(msg, bytes):
            await ws.send(msg[::-1])
        else:
            await ws.send(f"program got {msg} at {ws.request.path} ({ws.subprotocol})")


async def main():
    async with serve(handler, "127.0.0.1", int(os.environ["PORT"]), process_request=check,
                     subprotocols=["chat.v1", "other"]):
        await asyncio.Future()

asyncio.run(main())
'''


def test_an_upgrade_passes_through_to_an_http_runtime_server(server: Server) -> None:
    server.deploy("wsprog", {"server.py": WS_PROGRAM}, runtime="http", handler="python3 server.py",
                  ws_idle_timeout=3)

    async def go() -> None:
        async with websockets.connect(ws_url(server, "/fn/wsprog/room/1?x=1"), subprotocols=["chat.v1"]) as ws:
            assert ws.subprotocol == "chat.v1"
            await ws.send("hello")
            assert await ws.recv() == "program got hello at /room/1?x=1 (chat.v1)"
            await ws.send(b"\x01\x02\x03")
            assert await ws.recv() == b"\x03\x02\x01"
            await ws.send("bye")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                4000, "program closed")
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url(server, "/fn/wsprog/deny")):
                pass
        assert refused.value.response.status_code == 403
        assert refused.value.response.body == b"the program says no\n"
        with pytest.raises(websockets.InvalidStatus) as refused:  # the program requires a subprotocol
            async with websockets.connect(ws_url(server, "/fn/wsprog/")):
                pass
        assert refused.value.response.status_code == 400
        async with websockets.connect(ws_url(server, "/fn/wsprog/"), subprotocols=["other"]) as ws:  # idle: closed
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        with pytest.raises(websockets.InvalidStatus) as refused:  # not an http-runtime server
            async with websockets.connect(ws_url(server, "/fn/chat")):
                pass
        assert refused.value.response.status_code == 400
        assert b"websocket_unsupported" in refused.value.response.body

    server.deploy("chat", {"handler.py": CHAT}, **SPEC)
    run(go())


MEMBERS = '''import json

def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"authorizer": event["requestContext"].get("authorizer"),
                                                   "cognito": context.identity.cognito_identity_id})}
'''


def test_app_users_connect_with_their_token(server: Server) -> None:
    server.cli("apps", "create", "wsshop", check=True)
    server.deploy("members-ws", {"handler.py": MEMBERS}, flavor="aws", handler="handler.handler", auth="app",
                  ws_routes=["$default"])
    r = server.http.post("/app/wsshop/auth/anonymous")
    assert r.status_code == 200, r.text
    tokens = r.json()

    async def go() -> None:
        for path in ("/ws/members-ws", "/ws/members-ws?app=wsshop&token=forged"):
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(ws_url(server, path)):
                    pass
            assert refused.value.response.status_code == 401
            assert b"app_token_required" in refused.value.response.body
        async with websockets.connect(ws_url(server, f"/ws/members-ws?app=wsshop&token={tokens['access_token']}")) as ws:
            await ws.send("hi")
            seen = json.loads(await ws.recv())
        assert seen["authorizer"]["app"] == "wsshop" and seen["authorizer"]["principalId"]
        assert seen["cognito"]  # the verified user reached the function as every app call's does

    run(go())


def test_a_connection_ends_at_its_maximum_duration(server: Server) -> None:
    server.deploy("shortlived", {"handler.py": CHAT}, **{**SPEC, "ws_max_duration": 2})

    async def go() -> None:
        async with websockets.connect(ws_url(server, "/ws/shortlived")) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                for _ in range(120):  # busy (never idle) until the node closes it
                    await ws.send("tick")
                    await asyncio.wait_for(ws.recv(), 10)
                    await asyncio.sleep(0.25)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
            assert "maximum duration" in closed.value.rcvd.reason

    run(go())
