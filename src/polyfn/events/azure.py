"""Azure Functions trigger payloads (what the host hands the Python worker) from polyfn events.

- timer: the `TimerInfo` JSON (`Schedule`, `ScheduleStatus`, `IsPastDue`) → `func.TimerRequest`.
- blob: content plus `name`, `uri`, `length`, `properties` → `func.InputStream`.
- queue: one message `id`, `body`, `dequeue_count`, times, `pop_receipt` → `func.QueueMessage`.
The flavor builds the `azure.functions` objects from these dicts.
"""

from __future__ import annotations

from typing import Any

from polyfn.events import _common as c


def timer(ce: dict[str, Any]) -> dict[str, Any]:
    d = c.data_of(ce)
    return {"Schedule": {"AdjustForDST": True, "Expression": d.get("schedule", "")},
            "ScheduleStatus": {"Last": c.iso_ms(d.get("scheduled_time") or ce.get("time")), "Next": None,
                               "LastUpdated": c.iso_ms(ce.get("time"))},
            "IsPastDue": bool(d.get("past_due", False))}


def blob(ce: dict[str, Any], content: bytes) -> dict[str, Any]:
    d = c.data_of(ce)
    bucket, key = str(d.get("bucket", "")), str(d.get("key", ""))
    return {"name": f"{bucket}/{key}", "uri": f"/storage/{bucket}/{key}", "length": int(d.get("size") or len(content)),
            "data": content, "properties": {"ContentType": d.get("content_type"), "ETag": d.get("etag")},
            "metadata": {}}


def queue_messages(ce: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for m in c.messages_of(ce):
        body = m.get("body", "")
        out.append({"id": str(m.get("id", "")), "body": body if isinstance(body, str) else str(body),
                    "dequeue_count": int(m.get("attempt") or 1), "pop_receipt": str(m.get("id", "")),
                    "insertion_time": c.iso_ms(None), "attributes": m.get("attributes") or {}})
    return out
