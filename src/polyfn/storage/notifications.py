"""Storage triggers: bucket notification configs and the CloudEvents they produce.

A trigger says "invoke FUNCTION when objects in BUCKET are created/deleted (optionally only keys with this
prefix/suffix)". Configs live in the metadata store (`storage_triggers`). Every matching change becomes a
CloudEvent (`TYPE_OBJECT_CREATED` / `TYPE_OBJECT_DELETED`, data as in `polyfn.events.cloudevent`) queued as
an async invocation in the durable queue (`AsyncQueue.enqueue(Call(fn, "cloudevent", "storage", ...))`), so it gets
the function's retry policy and the dead-letter queue like every other trigger. `emit` returns once the
deliveries are committed to the queue file: the S3 API acknowledges a write only after that, so a write a
client saw succeed is delivered even if the server is killed right after.

Loop protection: a function whose own key writes (or deletes) an object that would trigger the same
function is refused with 403 and a message that says why, before anything is stored.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from polyfn.call import Call
from polyfn.events.cloudevent import CONTENT_TYPE, TYPE_OBJECT_CREATED, TYPE_OBJECT_DELETED, new_event
from polyfn.storage.errors import S3Error
from polyfn.store.tables import storage_triggers

EVENT_TYPES = {"created": TYPE_OBJECT_CREATED, "deleted": TYPE_OBJECT_DELETED}
TRIGGER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # as every trigger id (triggers/manager.py)
TRIGGER_HEADER = "x-polyfn-storage-trigger"  # which storage trigger queued an invocation (in `dlq show`)


class TriggerError(ValueError):
    """A trigger config that cannot be accepted; `code` is the API error code."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class StorageTrigger:
    id: str
    function: str
    bucket: str
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""
    created_at: float = 0.0

    def matches(self, bucket: str, key: str, event: str) -> bool:
        return (bucket == self.bucket and event in self.events and key.startswith(self.prefix)
                and key.endswith(self.suffix))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "function": self.function, "kind": "storage", "bucket": self.bucket,
                "events": list(self.events), "prefix": self.prefix, "suffix": self.suffix,
                "created_at": self.created_at}


def parse_events(value: str | list[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    out = tuple(dict.fromkeys(e.strip() for e in items if e.strip()))
    bad = [e for e in out if e not in EVENT_TYPES]
    if not out or bad:
        raise TriggerError("invalid_trigger", f"unknown storage event(s) {bad or value!r}: use created, deleted "
                           "or created,deleted")
    return out


#: enqueue(call, check=...) -> activation id: the durable async queue's `AsyncQueue.enqueue`.
Enqueue = Callable[..., Awaitable[str]]


class Notifications:
    def __init__(self, store: Any, region: str, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.region = region
        self.clock = clock
        self.enqueue: Enqueue | None = None  # set by the node once the async queue runs (`StorageService.serve`)
        # Whether a bucket exists (set by StorageService): a trigger on a missing bucket could never fire.
        self.bucket_exists: Callable[[str], bool] | None = None
        self.triggers: dict[str, StorageTrigger] = {}
        self._seq = itertools.count(int(clock() * 1000) << 16)

    # -- configs --------------------------------------------------------------------------------------

    async def load(self) -> None:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(storage_triggers))).all()
        self.triggers = {r.id: StorageTrigger(r.id, r.function, r.bucket, tuple(r.events.split(",")), r.prefix,
                                              r.suffix, r.created_at) for r in rows}

    def list(self, function: str | None = None, bucket: str | None = None) -> list[StorageTrigger]:
        return sorted((t for t in self.triggers.values() if (function is None or t.function == function)
                       and (bucket is None or t.bucket == bucket)), key=lambda t: (t.created_at, t.id))

    async def add(self, function: str, bucket: str, events: str | list[str], prefix: str = "",
                  suffix: str = "", trigger_id: str | None = None) -> StorageTrigger:
        """A new trigger; TriggerError for what could never work: a bad or missing bucket, an id in use."""
        from polyfn.storage.local import validate_bucket_name

        evs = parse_events(events)
        try:
            validate_bucket_name(bucket)
        except S3Error:
            raise TriggerError("invalid_trigger", f"bucket={bucket!r} is not a valid bucket name") from None
        if self.bucket_exists is not None and not self.bucket_exists(bucket):
            raise TriggerError("bucket_not_found", f"bucket={bucket!r} does not exist: make it first "
                               f"(`polyfn storage mb s3://{bucket}`), then add the trigger", 404)
        if trigger_id is not None:
            if not TRIGGER_ID.match(trigger_id):
                raise TriggerError("invalid_trigger", f"id={trigger_id!r}: use 1-63 characters a-z, 0-9 and '-'")
            if trigger_id in self.triggers:
                raise TriggerError("trigger_exists", f"trigger {trigger_id!r} already exists", 409)
        for t in self.triggers.values():
            if (t.function == function and t.bucket == bucket and t.prefix == prefix and t.suffix == suffix
                    and set(t.events) & set(evs)):
                raise TriggerError("trigger_exists", f"function {function!r} already has trigger {t.id} on the "
                                   "same bucket, prefix, suffix and event", 409)
        trig = StorageTrigger(trigger_id or "st-" + secrets.token_hex(4), function, bucket, evs, prefix, suffix,
                              self.clock())
        async with self.store._writer() as conn:
            await conn.execute(insert(storage_triggers).values(
                id=trig.id, function=function, bucket=bucket, events=",".join(evs), prefix=prefix, suffix=suffix,
                created_at=trig.created_at))
        self.triggers[trig.id] = trig
        return trig

    async def remove(self, trigger_id: str) -> StorageTrigger | None:
        async with self.store._writer() as conn:
            await conn.execute(delete(storage_triggers).where(storage_triggers.c.id == trigger_id))
        return self.triggers.pop(trigger_id, None)

    async def remove_function(self, function: str) -> int:
        ids = [t.id for t in self.triggers.values() if t.function == function]
        for i in ids:
            await self.remove(i)
        return len(ids)

    # -- events ---------------------------------------------------------------------------------------

    def check_loop(self, bucket: str, key: str, event: str, writer: str) -> None:
        """Refuse a change by function `writer` that would trigger `writer` itself (a loop)."""
        if not writer:
            return
        for t in self.triggers.values():
            if t.function == writer and t.matches(bucket, key, event):
                where = f"{bucket}/{t.prefix}*{t.suffix}"
                raise S3Error(403, "AccessDenied",
                              f"polyfn loop protection: function {writer!r} is triggered by '{event}' events on "
                              f"{where} (trigger {t.id}), so this write would invoke it again; write the result "
                              "under another prefix or bucket")

    def matching(self, event: str, bucket: str, key: str) -> list[StorageTrigger]:
        return [t for t in self.triggers.values() if t.matches(bucket, key, event)]

    async def emit(self, event: str, bucket: str, key: str, size: int = 0, etag: str = "", content_type: str = "",
                   source_ip: str = "") -> int:
        """Queue one async invocation per matching trigger, durably; returns how many were queued. Raises
        when the queue cannot take them (the caller answers 500: the change is stored, its event is not)."""
        matched = self.matching(event, bucket, key)
        if not matched:
            return 0
        if self.enqueue is None:
            raise RuntimeError("storage event not queued: the async queue is not running")
        data = {"bucket": bucket, "key": key, "size": size, "etag": etag, "content_type": content_type,
                "region": self.region, "source_ip": source_ip, "sequencer": f"{next(self._seq):016X}"}
        body = new_event(EVENT_TYPES[event], f"polyfn:storage:{self.region}:{bucket}", data, subject=key).to_json()
        enqueue = self.enqueue
        # check=False: a trigger whose function is gone is dead-lettered by the queue, like other triggers.
        await asyncio.gather(*(enqueue(Call(t.function, "cloudevent", "storage", headers=[(TRIGGER_HEADER, t.id)],
                                            body=body, content_type=CONTENT_TYPE), check=False) for t in matched))
        return len(matched)

def from_vendor_config(config: dict[str, Any]) -> tuple[str, tuple[str, ...], str, str]:
    """(bucket, events, prefix, suffix) from a storage trigger declared in a vendor's definition file: event
    names like `s3:ObjectCreated:*`, `oss:ObjectRemoved:DeleteObject`, `cos:ObjectCreated:*`; filters as S3
    `Filter.S3Key.Rules`, Serverless `rules`, Aliyun `filter.key`, or an Azure blob path pattern."""
    bucket = str(config.get("bucket") or "")
    raw = config.get("events") or ["created"]
    names = raw if isinstance(raw, list) else [raw]
    events: list[str] = []
    for name in names:
        text = str(name or "created").lower()
        kind = "deleted" if ("remov" in text or "delet" in text) else "created"
        if kind not in events:
            events.append(kind)
    prefix, suffix = str(config.get("prefix") or ""), str(config.get("suffix") or "")
    rules: list[Any] = list(config.get("rules") or [])
    flt = config.get("filter")
    if isinstance(flt, dict):
        key = flt.get("S3Key") or flt.get("key") or flt.get("Key") or {}
        rules += key.get("Rules") or [key] if isinstance(key, dict) else []
    elif isinstance(flt, str) and flt:  # Azure blob path after the container: "uploads/{name}.jpg"
        head, _, tail = flt.partition("{name}")
        prefix, suffix = prefix or head, suffix or tail
    for rule in rules:
        if not isinstance(rule, dict):
            continue
        low = {str(k).lower(): v for k, v in rule.items()}
        if "name" in low and "value" in low:  # S3: {"Name": "prefix", "Value": "uploads/"}
            low = {str(low["name"]).lower(): low["value"]}
        prefix = prefix or str(low.get("prefix") or "")
        suffix = suffix or str(low.get("suffix") or "")
    return bucket, tuple(events), prefix, suffix
