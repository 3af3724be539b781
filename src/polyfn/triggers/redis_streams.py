"""Redis Streams triggers with consumer groups (redis-py asyncio).

Options: `url` (default redis://127.0.0.1:6379/0), `stream`, `group` (default `polyfn`, created with MKSTREAM
when missing), `consumer` (default `<trigger id>-<node id>`: one consumer per node of a cluster), `start` (`$`:
only new entries, default; `0`: the whole stream) for a new group, `batch_size` (1), `claim_idle` (seconds,
default 300).

At-least-once: entries are XACKed only after the function succeeded or the entry went to the dead-letter
queue. At (re)connect the consumer first re-reads its own pending entries (delivered before a crash or a
broker restart but never acknowledged), then reads new ones. Entries another consumer of the group has held
unacknowledged for `claim_idle` seconds (a node that is gone, or a consumer name no longer used) are taken
over with XAUTOCLAIM, checked at connect and every `claim_idle / 2` seconds: keep it above the function's
timeout, or a slow run is taken over while it still runs. The body is the entry's `body` field (or
`data`/`message`), else all fields as JSON; the other fields become attributes.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from polyfn.triggers.base import BrokerRunner, only, opt_num, opt_str, opt_url
from polyfn.triggers.delivery import Message, deliver

BODY_FIELDS = ("body", "data", "message")


def validate(config: dict[str, Any]) -> dict[str, Any]:
    only(config, "redis", {"url", "stream", "group", "consumer", "start", "batch_size", "claim_idle"})
    start = config.get("start", "$")
    if start not in ("$", "0"):
        from polyfn.triggers.base import TriggerConfigError

        raise TriggerConfigError(f"option start={start!r}: use '$' (new entries) or '0' (whole stream)")
    return {"url": opt_url(config, "url", "redis://127.0.0.1:6379/0", ("redis", "rediss", "unix"),
                                  "redis://127.0.0.1:6379/0"), "stream": opt_str(config, "stream", required=True),
            "group": opt_str(config, "group", "polyfn"), "consumer": opt_str(config, "consumer"), "start": start,
            "batch_size": opt_num(config, "batch_size", 1, 1, 1000, integer=True),
            "claim_idle": opt_num(config, "claim_idle", 300, 1, 86400)}


class RedisRunner(BrokerRunner):
    kind = "redis"

    def __init__(self, trigger: Any, ctx: Any):
        super().__init__(trigger, ctx)
        self.cfg = trigger.config
        self.r: Any = None

    async def close(self) -> None:
        if self.r is not None:
            r, self.r = self.r, None
            await r.aclose()

    async def consume(self) -> None:
        c = self.cfg
        stream, group = c["stream"], c["group"]
        consumer = c["consumer"] or f"{self.trigger.id}-{self.ctx.settings.node_id}"
        claim_idle = c.get("claim_idle", 300)  # (triggers stored before the option have none)
        claim_ms = int(claim_idle * 1000)
        self.r = aioredis.from_url(c["url"], socket_connect_timeout=2, socket_timeout=10)
        try:
            await self.r.xgroup_create(stream, group, id=c["start"], mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self.connected()
        backlog = True  # first our own pending entries (id 0), then new ones (>)
        next_claim = 0.0
        while True:
            if not backlog and time.monotonic() >= next_claim:
                next_claim = time.monotonic() + claim_idle / 2
                _, claimed, *_ = await self.r.xautoclaim(stream, group, consumer, claim_ms, "0-0",
                                                         count=c["batch_size"])
                if claimed:  # others' entries idle too long: ours now (more may follow at once)
                    next_claim = 0.0
                    msgs = [_message(eid, fields) for eid, fields in claimed]
                    await deliver(self, "redis", stream, msgs, single=c["batch_size"] == 1)
                    await self.r.xack(stream, group, *[eid for eid, _ in claimed])
                    continue
            resp = await self.r.xreadgroup(group, consumer, {stream: "0" if backlog else ">"},
                                           count=c["batch_size"], block=None if backlog else 1000)
            entries = resp[0][1] if resp else []
            if backlog and not entries:
                backlog = False
                continue
            if not entries:
                continue
            msgs = [_message(eid, fields) for eid, fields in entries]
            await deliver(self, "redis", stream, msgs, single=c["batch_size"] == 1)
            await self.r.xack(stream, group, *[eid for eid, _ in entries])


def _message(eid: Any, fields: dict[Any, Any]) -> Message:
    f = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in fields.items()}
    mid = eid.decode() if isinstance(eid, bytes) else str(eid)
    body_key = next((k for k in BODY_FIELDS if k in f), None)
    if body_key is not None:
        raw = f.pop(body_key)
        body = raw if isinstance(raw, bytes) else str(raw).encode()
    else:
        body = json.dumps({k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
                           for k, v in f.items()}).encode()
        f = {}
    attrs = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for k, v in f.items()}
    return Message(id=mid, body=body, attributes=attrs, sent_at=int(mid.split("-")[0]) / 1000)


RUNNER = RedisRunner
