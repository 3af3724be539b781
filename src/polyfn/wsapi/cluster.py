"""Pushes to a connection another node holds: each node answers requests on its own core-NATS subject
(`polyfn.ws.<its tag>`, over the async queue's NATS connection), and a connection id names its node's tag
(events.connection_id), so the node that received a management request forwards it there.

The receiving node verified the caller's signature; what travels is the operation, the connection id, the payload
and the caller key's scope, owner and function binding, so the holding node applies the same `allows` rule to the
connection's function. No answer within `TIMEOUT` (the node is gone) → `Gone`, as for any connection not open.
"""

from __future__ import annotations

import base64
import json
import logging
from types import SimpleNamespace
from typing import Any, Protocol

from polyfn.wsapi.connections import Connections, Denied, Gone, TooLarge
from polyfn.wsapi.events import tag_of

log = logging.getLogger("polyfn.websockets")

TIMEOUT = 2.0
_ERRORS: dict[str, type[Exception]] = {"gone": Gone, "too_large": TooLarge, "denied": Denied}


class Bus(Protocol):
    """What forwarding needs of the node's NATS connection (queue/jetstream.py's JetStreamJobs)."""

    async def answer(self, subject: str, handler: Any) -> None: ...

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes: ...


def subject(tag: bytes) -> str:
    return f"polyfn.ws.{tag.hex()}"


class Forwarder:
    def __init__(self, connections: Connections, bus: Bus):
        self.connections = connections
        self.bus = bus

    async def start(self) -> None:
        await self.bus.answer(subject(self.connections.tag), self.handle)
        self.connections.forward = self.forward

    async def forward(self, op: str, cid: str, data: bytes, key: Any) -> dict[str, Any] | None:
        tag = tag_of(cid)
        if tag is None:
            raise Gone(cid)
        request = json.dumps({"op": op, "id": cid, "data": base64.b64encode(data).decode(),
                              "key": {"scope": key.scope, "owner": key.owner, "function": key.function}}).encode()
        try:
            raw = await self.bus.request(subject(tag), request, TIMEOUT)
        except Exception as e:  # (no responders, a timeout, NATS away: the connection is not reachable)
            log.info("push to %s: its node did not answer (%s)", cid, type(e).__name__)
            raise Gone(cid) from None
        answer = json.loads(raw)
        if "error" in answer:
            raise _ERRORS.get(answer["error"], Gone)(answer.get("message", ""))
        return answer.get("info")

    async def handle(self, raw: bytes) -> bytes:
        req = json.loads(raw)
        key = SimpleNamespace(**req["key"])
        try:
            info = await self.connections.operate(req["op"], req["id"], base64.b64decode(req["data"]), key)
        except Exception as e:
            name = next((n for n, t in _ERRORS.items() if isinstance(e, t)), "gone")
            return json.dumps({"error": name, "message": str(e)}).encode()
        return json.dumps({"info": info}).encode()
