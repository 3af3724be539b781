"""Storage triggers: bucket notification configs, the CloudEvents they produce, and their delivery.

A trigger says "invoke FUNCTION when objects in BUCKET are created/deleted (optionally only keys with this
prefix/suffix)". Configs live in the metadata store (`storage_triggers`). Every matching change becomes a
CloudEvent (`TYPE_OBJECT_CREATED` / `TYPE_OBJECT_DELETED`, data as in `polyfn.events.cloudevent`) invoked
asynchronously through `Invoker.invoke(name, "cloudevent", "storage", ...)`.

Delivery is at-least-once *while the node runs*: a bounded in-memory queue, a few workers, `attempts`
tries with exponential backoff, then a dead-letter line in `<storage dir>/dead-letters.jsonl`. It is not
durable across restarts (the events issue's durable queue replaces the in-memory queue when it lands).

Loop protection: a function whose own key writes (or deletes) an object that would trigger the same
function is refused with 403 and a message that says why, before anything is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select

from polyfn.events.cloudevent import CONTENT_TYPE, TYPE_OBJECT_CREATED, TYPE_OBJECT_DELETED, new_event
from polyfn.storage.errors import S3Error
from polyfn.store.tables import storage_triggers

log = logging.getLogger("polyfn.storage")

EVENT_TYPES = {"created": TYPE_OBJECT_CREATED, "deleted": TYPE_OBJECT_DELETED}
QUEUE_MAX = 100_000
WORKERS = 8


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


class Notifications:
    def __init__(self, store: Any, invoke: Callable[..., Any], region: str, dlq_path: Path, attempts: int = 4,
                 backoff: float = 0.5, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.invoke = invoke  # Invoker.invoke
        self.region = region
        self.dlq_path = dlq_path
        self.attempts = attempts
        self.backoff = backoff
        self.clock = clock
        self.triggers: dict[str, StorageTrigger] = {}
        self._queue: asyncio.Queue[tuple[StorageTrigger, bytes, int]] = asyncio.Queue(QUEUE_MAX)
        self._workers: list[asyncio.Task[None]] = []
        self._retries: set[asyncio.Task[None]] = set()
        self._seq = itertools.count(int(clock() * 1000) << 16)
        self.delivered = 0
        self.failed = 0
        self.on_error: Callable[[str, str], None] | None = None  # (function, reason): polyfn_trigger_errors_total

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
                  suffix: str = "") -> StorageTrigger:
        from polyfn.storage.local import validate_bucket_name

        evs = parse_events(events)
        try:
            validate_bucket_name(bucket)
        except S3Error:
            raise TriggerError("invalid_trigger", f"{bucket!r} is not a valid bucket name") from None
        for t in self.triggers.values():
            if (t.function == function and t.bucket == bucket and t.prefix == prefix and t.suffix == suffix
                    and set(t.events) & set(evs)):
                raise TriggerError("trigger_exists", f"function {function!r} already has trigger {t.id} on the "
                                   "same bucket, prefix, suffix and event", 409)
        trig = StorageTrigger("st-" + secrets.token_hex(4), function, bucket, evs, prefix, suffix, self.clock())
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

    def emit(self, event: str, bucket: str, key: str, size: int = 0, etag: str = "", content_type: str = "",
             source_ip: str = "") -> int:
        """Queue one delivery per matching trigger; returns how many were queued."""
        matched = [t for t in self.triggers.values() if t.matches(bucket, key, event)]
        if not matched:
            return 0
        data = {"bucket": bucket, "key": key, "size": size, "etag": etag, "content_type": content_type,
                "region": self.region, "source_ip": source_ip, "sequencer": f"{next(self._seq):016X}"}
        ce = new_event(EVENT_TYPES[event], f"polyfn:storage:{self.region}:{bucket}", data, subject=key)
        body = ce.to_json()
        for t in matched:
            try:
                self._queue.put_nowait((t, body, 1))
            except asyncio.QueueFull:
                self._dead(t, body, 0, "the delivery queue is full")
                if self.on_error is not None:
                    self.on_error(t.function, "queue_full")
        return len(matched)

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(WORKERS)]

    async def stop(self, timeout: float = 5.0) -> None:
        """Let queued deliveries finish (bounded), then stop the workers; undelivered events go to the DLQ."""
        deadline = time.monotonic() + timeout
        while (self._queue.qsize() or self._retries) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for t in [*self._workers, *self._retries]:
            t.cancel()
        for t in [*self._workers, *self._retries]:
            with contextlib.suppress(BaseException):
                await t
        while not self._queue.empty():
            trig, body, attempt = self._queue.get_nowait()
            self._dead(trig, body, attempt - 1, "the server stopped before the event was delivered")

    def pending(self) -> int:
        return self._queue.qsize() + len(self._retries)

    async def _work(self) -> None:
        while True:
            trig, body, attempt = await self._queue.get()
            try:
                await self._deliver(trig, body, attempt)
            except Exception:  # never let one event kill a worker
                log.exception("storage trigger %s: delivery failed", trig.id)

    async def _deliver(self, trig: StorageTrigger, body: bytes, attempt: int) -> None:
        out = await self.invoke(trig.function, "cloudevent", "storage", "POST", "/", "",
                                [("content-type", CONTENT_TYPE)], body, CONTENT_TYPE)
        if out.status < 400:
            self.delivered += 1
            return
        err = _error_text(out)
        if self.on_error is not None:
            from polyfn.queue.dispatcher import outcome_error
            from polyfn.triggers.base import failure_reason

            self.on_error(trig.function, failure_reason(out.status, outcome_error(out)[0]))
        if trig.id not in self.triggers:
            return  # removed meanwhile
        if attempt >= self.attempts or out.status == 404:
            self._dead(trig, body, attempt, err)
            return
        delay = self.backoff * (2 ** (attempt - 1))
        log.warning("storage trigger %s: %s failed (attempt %d/%d: %s); retrying in %.1f s", trig.id,
                    trig.function, attempt, self.attempts, err, delay)

        async def later() -> None:
            await asyncio.sleep(delay)
            await self._queue.put((trig, body, attempt + 1))

        task = asyncio.create_task(later())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    def _dead(self, trig: StorageTrigger, body: bytes, attempts: int, error: str) -> None:
        self.failed += 1
        log.error("storage trigger %s: event for %s dead-lettered after %d attempt(s): %s", trig.id,
                  trig.function, attempts, error)
        line = {"time": self.clock(), "trigger": trig.id, "function": trig.function, "attempts": attempts,
                "error": error, "event": json.loads(body)}
        try:
            with open(self.dlq_path, "a") as f:
                f.write(json.dumps(line) + "\n")
        except OSError as e:
            log.error("cannot write the storage dead-letter file %s: %s", self.dlq_path, e)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        try:
            lines = self.dlq_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for ln in lines[-limit:]:
            with contextlib.suppress(ValueError):
                out.append(json.loads(ln))
        return out


def _error_text(out: Any) -> str:
    try:
        err = json.loads(out.body).get("error")
        if isinstance(err, dict):
            return f"{out.status} {err.get('code') or ''} {err.get('message') or err.get('errorMessage') or ''}".strip()
    except (ValueError, AttributeError):
        pass
    return f"HTTP {out.status}: {out.body[:200].decode('utf-8', 'replace')}"


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
