"""Delivering broker and topic messages to a function: the event, the retries, partial batch failure, DLQ.

`deliver` returns only when every message either succeeded or went to the dead-letter queue, which is
when the caller may acknowledge them to the broker (ack after success or DLQ, never before). Retries
follow the function's policy (`retry_attempts`, backoff, `retry_on`, `max_event_age`). If the function's
result JSON has `batchItemFailures: [{"itemIdentifier": <message id>}]` (SQS partial batch response),
only those messages count as failed and are retried.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from polyfn.call import Call
from polyfn.events.cloudevent import CONTENT_TYPE, TYPE_BROKER_MESSAGE, TYPE_QUEUE_BATCH, new_event
from polyfn.queue import retry
from polyfn.queue.attempts import outcome_error
from polyfn.queue.builtin import Job
from polyfn.triggers.base import Runner, failure_reason

log = logging.getLogger("polyfn.triggers")


class Message(msgspec.Struct, kw_only=True):
    id: str
    body: bytes
    attributes: dict[str, str] = {}
    sent_at: float = 0.0
    attempt: int = 1


class Interrupted(Exception):
    """The node is shutting down mid-delivery: do not acknowledge; the broker will redeliver."""


def message_json(m: Message) -> dict[str, Any]:
    try:
        body, b64 = m.body.decode("utf-8"), False
    except UnicodeDecodeError:
        body, b64 = base64.b64encode(m.body).decode(), True
    return {"id": m.id, "body": body, "body_base64": b64, "attributes": m.attributes,
            "sent_at": m.sent_at, "attempt": m.attempt}


def build_event(trigger_id: str, source: str, topic: str, messages: list[Message], single: bool) -> bytes:
    src = f"/polyfn/triggers/{trigger_id}"
    if single and len(messages) == 1:
        data = {"source": source, "topic": topic, **message_json(messages[0])}
        return new_event(TYPE_BROKER_MESSAGE, src, data, subject=topic, id=messages[0].id).to_json()
    data = {"source": source, "topic": topic, "messages": [message_json(m) for m in messages]}
    return new_event(TYPE_QUEUE_BATCH, src, data, subject=topic).to_json()


def failed_items(body: bytes, ids: set[str]) -> set[str] | None:
    """Message ids named in an SQS-style `batchItemFailures` result, or None when the result has none."""
    try:
        result = json.loads(body)
    except ValueError:
        return None
    if not isinstance(result, dict) or not isinstance(result.get("batchItemFailures"), list):
        return None
    out = set()
    for item in result["batchItemFailures"]:
        if isinstance(item, dict) and str(item.get("itemIdentifier")) in ids:
            out.add(str(item["itemIdentifier"]))
    return out


async def deliver(runner: Runner, source: str, topic: str, messages: list[Message], single: bool = True,
                  builder: Callable[[list[Message]], bytes] | None = None,
                  retry_from_first_failure: bool = False) -> None:
    """Deliver `messages` until each succeeded or is a dead letter. `retry_from_first_failure`: a partial batch
    failure retries the first failed message and every one after it (a stream's order: DynamoDB Streams'
    batchItemFailures), not only the failed ones. A failure of ours with them (a bug, a
    message the event builder cannot shape) dead-letters them with the reason, logged, instead of raising:
    the runner would restart, the broker would redeliver the same messages, and the trigger would be stuck
    on them for good."""
    try:
        await _deliver(runner, source, topic, messages, single, builder, retry_from_first_failure)
    except Interrupted:
        raise
    except Exception as e:
        trig = runner.trigger
        log.exception("trigger %s: delivering %d message(s) failed; they go to the dead-letter queue",
                      trig.id, len(messages))
        reason = f"delivery_failed: {type(e).__name__}: {e}"[:500]
        runner.count_error("delivery_failed", reason, n=len(messages))
        await _bury(runner, source, topic, messages, "delivery_failed",
                    {"code": "delivery_failed", "message": reason})


async def _deliver(runner: Runner, source: str, topic: str, messages: list[Message], single: bool,
                   builder: Callable[[list[Message]], bytes] | None, retry_from_first_failure: bool) -> None:
    ctx = runner.ctx
    trig = runner.trigger
    pending = list(messages)
    first_seen = min((m.sent_at for m in messages if m.sent_at), default=time.time())
    attempt = 0
    while pending:
        attempt += 1
        for m in pending:
            m.attempt = max(m.attempt, attempt)
        active = ctx.registry.get(trig.function)
        if active is None:
            runner.count_error("function_not_found", f"function {trig.function!r} does not exist", n=len(pending))
            await _bury(runner, source, topic, pending, "function_not_found",
                        {"code": "function_not_found", "message": f"function {trig.function!r} does not exist"})
            return
        spec = active.revision.spec
        body = builder(pending) if builder else build_event(trig.id, source, topic, pending, single)
        out = await ctx.invoker.call(Call(trig.function, "cloudevent", trig.kind,
                                          headers=[("x-polyfn-trigger", trig.id)], body=body,
                                          content_type=CONTENT_TYPE, activation_id=uuid.uuid4().hex))
        code, err = outcome_error(out) if out.status >= 400 else (None, {})
        cls = retry.classify(out.status, code, err.get("errorType"))
        if cls == retry.SHUTDOWN:
            raise Interrupted()
        if cls == retry.SUCCESS:
            failed = failed_items(out.body, {m.id for m in pending})
            runner.delivered += len(pending) - len(failed or ())
            if not failed:
                return
            first = next(i for i, m in enumerate(pending) if m.id in failed)
            pending = pending[first:] if retry_from_first_failure else [m for m in pending if m.id in failed]
            cls, err = "5xx", {"code": "batch_item_failure", "message": f"{len(failed)} item(s) reported failed"}
            runner.count_error("batch_item_failure", err["message"], n=len(pending))
        else:
            runner.count_error(failure_reason(out.status, code), str(err.get("message") or err.get("code", "")),
                               n=len(pending))
        decision = retry.decide(cls, attempt, time.time() - first_seen, spec)
        if decision.action == "dead":
            err["attempt"] = attempt
            await _bury(runner, source, topic, pending, decision.reason, err)
            return
        await asyncio.sleep(decision.delay)


async def _bury(runner: Runner, source: str, topic: str, messages: list[Message], reason: str,
                err: dict[str, Any]) -> None:
    """Each failed message becomes its own dead letter; replaying it invokes the function with that message."""
    trig = runner.trigger
    now = time.time()
    for m in messages:
        body = build_event(trig.id, source, topic, [m], single=True)
        job = Job(id=uuid.uuid4().hex, function=trig.function, kind="cloudevent", trigger=trig.kind, body=body,
                  content_type=CONTENT_TYPE, enqueued_at=m.sent_at or now, not_before=now, attempt=m.attempt,
                  headers=[("x-polyfn-trigger", trig.id)])
        await runner.ctx.queue.db.bury(job, reason, err, now)
        runner.dead_lettered += 1
