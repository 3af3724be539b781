"""CloudEvents routing (Knative Trigger-like): `POST /v1/events` accepts CloudEvents in binary or structured
HTTP mode (and batches), and every `events` trigger whose filters match gets the event as an async invocation
(durable, with the function's retries and dead-letter queue).

Options (all optional, exact match; `source` may end in `*` for a prefix match): `type`, `source`, `subject`.
A function invoked through an `events` trigger may reply with a CloudEvent (return a dict with `specversion`,
`id`, `source`, `type`): it is routed again, like an event POSTed to `/v1/events` (at most 8 hops).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

from polyfn.call import Call
from polyfn.events.cloudevent import CONTENT_TYPE
from polyfn.tenancy import owns
from polyfn.triggers.base import Runner, TriggerConfigError

FILTERS = ("type", "source", "subject")
MAX_HOPS = 8
HOPS_HEADER = "x-polyfn-event-hops"


class InvalidEvent(ValueError):
    pass


def validate(config: dict[str, Any]) -> dict[str, Any]:
    unknown = set(config) - set(FILTERS)
    if unknown:
        raise TriggerConfigError(f"unknown events filter(s): {', '.join(sorted(unknown))}; use {', '.join(FILTERS)}")
    for k, v in config.items():
        if not isinstance(v, str) or not v:
            raise TriggerConfigError(f"filter {k}={v!r} must be a non-empty string")
    return dict(config)


def matches(filters: dict[str, str], event: dict[str, Any]) -> bool:
    for k, want in filters.items():
        got = event.get(k)
        if not isinstance(got, str):
            return False
        if want.endswith("*") and k == "source":
            if not got.startswith(want[:-1]):
                return False
        elif got != want:
            return False
    return True


def check_event(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidEvent("a CloudEvent must be a JSON object")
    if event.get("specversion") != "1.0":
        raise InvalidEvent(f"specversion={event.get('specversion')!r}: only CloudEvents 1.0 is supported")
    for k in ("id", "source", "type"):
        if not isinstance(event.get(k), str) or not event[k]:
            raise InvalidEvent(f"the required attribute {k!r} is missing or empty")
    return event


def from_http(headers: dict[str, str], body: bytes) -> list[dict[str, Any]]:
    """CloudEvents from an HTTP request: structured (`application/cloudevents+json`), batched
    (`application/cloudevents-batch+json`) or binary mode (`ce-*` headers, the body is `data`)."""
    ct = headers.get("content-type", "").split(";")[0].strip().lower()
    if ct in ("application/cloudevents+json", "application/cloudevents-batch+json"):
        try:
            parsed = json.loads(body)
        except ValueError as e:
            raise InvalidEvent(f"the body is not valid JSON ({e})") from None
        items = parsed if ct.endswith("batch+json") else [parsed]
        if not isinstance(items, list):
            raise InvalidEvent("a batch must be a JSON array of CloudEvents")
        return [check_event(e) for e in items]
    attrs = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
    if not attrs:
        raise InvalidEvent("no CloudEvent: send ce-* headers (binary mode) or Content-Type: "
                           "application/cloudevents+json (structured mode)")
    event: dict[str, Any] = dict(attrs)
    if ct:
        event["datacontenttype"] = ct
    if body:
        if "json" in ct:
            try:
                event["data"] = json.loads(body)
            except ValueError as e:
                raise InvalidEvent(f"the data is not valid JSON ({e})") from None
        elif ct.startswith("text/"):
            event["data"] = body.decode("utf-8", "replace")
        else:
            event["data_base64"] = base64.b64encode(body).decode()
    return [check_event(event)]


class EventsRunner(Runner):
    """Passive: events are pushed to it by `route`."""

    kind = "events"

    async def run(self) -> None:
        self.set_health("connected")
        await asyncio.Event().wait()


async def route(manager: Any, event: dict[str, Any], hops: int = 0,
                namespace: str | None = None) -> list[dict[str, str]]:
    """Queue `event` for every matching `events` trigger (of `namespace`'s functions only, when given); returns
    the deliveries."""
    if hops > MAX_HOPS:
        return []
    out = []
    body = json.dumps(event).encode()
    for r in manager.runners_of("events"):
        if matches(r.trigger.config, event) and (namespace is None or owns(namespace, r.trigger.function)):
            try:
                aid = await manager.ctx.queue.enqueue(Call(
                    r.trigger.function, "cloudevent", "events", body=body, content_type=CONTENT_TYPE,
                    headers=[(HOPS_HEADER, str(hops)), ("x-polyfn-trigger", r.trigger.id)]),
                    job_id=uuid.uuid4().hex, check=False)
            except Exception as e:
                r.count_error("enqueue_failed", f"could not queue the event: {type(e).__name__}: {e}")
                raise
            r.delivered += 1
            out.append({"trigger": r.trigger.id, "function": r.trigger.function, "activation_id": aid})
    return out


RUNNER = EventsRunner
