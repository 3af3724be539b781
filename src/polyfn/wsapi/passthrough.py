"""WebSocket upgrades passed through to an `http` runtime's program (Knative style: the function is a server).

`ws://NODE/fn/FUNCTION[/PATH]` on a function of the `http` (or `dotnet`) runtime: the node accepts the client's
upgrade only once the program accepted its own (the instance's proxy opens a WebSocket to the program with the
client's path, query, headers and subprotocols: runtimes/http/wsrelay.py); a program that refuses answers the
client's handshake with its own status, headers and body. Then messages go both ways as the invocation's stream:
the instance's `Chunk`s are the program's messages (`t` text, `b` binary, `c` its close), the client's go to the
instance the same way (`ResponseStream.upstream`). The invocation (kind `websocket`) lasts as long as the
connection, under the function's WebSocket limits (`ws_idle_timeout`: no message either way; `ws_max_duration`),
and holds one of its instance's `concurrency` slots meanwhile.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

from polyfn.auth.function_keys import refusal
from polyfn.call import Call
from polyfn.invoker import Invoker, platform_error
from polyfn.wsapi.endpoint import refuse_handshake

PREFIX_LEN = len("/fn/")
RUNTIMES = ("http", "dotnet")


class Passthrough:
    def __init__(self, invoker: Invoker, keys: Any):
        self.invoker = invoker
        self.keys = keys

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        name, slash, sub = scope["path"][PREFIX_LEN:].partition("/")
        if (await receive())["type"] != "websocket.connect":
            return
        active = self.invoker.registry.get(name) if name else None
        if active is None:
            await refuse_handshake(send, platform_error(404, "function_not_found", f"function {name!r} does not exist"))
            return
        spec = active.revision.spec
        if spec.runtime not in RUNTIMES:
            await refuse_handshake(send, platform_error(400, "websocket_unsupported", (
                f"function {name!r} is not a server of the http runtime, so it takes no WebSocket upgrade at /fn/; "
                f"its WebSocket API (API Gateway's shape) is ws://NODE/ws/{name}")))
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        query = scope["query_string"].decode("latin-1")
        if spec.auth != "anonymous":
            refused = refusal(spec, name, query, headers, self.keys)
            if refused is not None:
                await refuse_handshake(send, platform_error(*refused))
                return
        out = await self.invoker.call(Call(name, "websocket", "http", "GET", "/" + sub if slash else "/", query,
                                           headers, b"", active=active, stream=True))
        stream = out.stream
        if stream is None or out.status != 101:  # the program (or the node) refused: its answer, as HTTP
            if stream is not None:
                out.body = b"".join([bytes(c) async for c in _chunks(stream)])
            await refuse_handshake(send, out)
            return
        accept: dict[str, Any] = {"type": "websocket.accept"}
        chosen = next((v for k, v in out.headers if k == b"sec-websocket-protocol"), None)
        if chosen:
            accept["subprotocol"] = chosen.decode("latin-1")
        await send(accept)
        up = asyncio.ensure_future(_upstream(receive, stream))
        code, reason = 1000, ""
        try:
            while (data := await stream.next()) is not None:
                kind, payload = data[0], bytes(data[1:])
                stream.last = time.perf_counter()
                if kind == 0x74:  # t
                    await send({"type": "websocket.send", "text": payload.decode()})
                elif kind == 0x62:  # b
                    await send({"type": "websocket.send", "bytes": payload})
                elif kind == 0x63 and len(payload) >= 2:  # c: the program closed
                    code, reason = struct.unpack("!H", payload[:2])[0], payload[2:].decode(errors="replace")
        except Exception:  # (the client went meanwhile)
            stream.cancel()
        finally:
            up.cancel()
        if stream.error is not None:  # the program died, or the connection passed its limits
            code, reason = (1001, "Going away: " + str(stream.error.get("message", ""))[:100]) \
                if stream.error.get("code") in ("stream_idle_timeout", "stream_too_long") else (1011, "")
        try:
            await send({"type": "websocket.close", "code": code if code not in (1005, 1006) else 1000,
                        "reason": reason})
        except Exception:  # (already gone)
            pass


async def _chunks(stream: Any) -> Any:
    while (data := await stream.next()) is not None:
        yield data


async def _upstream(receive: Any, stream: Any) -> None:
    """The client's messages to the program, until the client goes: then its close, and the stream is over."""
    while True:
        msg = await receive()
        if msg["type"] == "websocket.receive":
            stream.last = time.perf_counter()
            text = msg.get("text")
            stream.upstream(b"t" + text.encode() if text is not None else b"b" + (msg.get("bytes") or b""))
        elif msg["type"] == "websocket.disconnect":
            stream.upstream(b"c" + struct.pack("!H", msg.get("code", 1000)) + (msg.get("reason") or "").encode())
            stream.cancel()
            return
