"""Scheduled events as each vendor delivers them, from polyfn's `TYPE_TIMER` CloudEvent.

- AWS EventBridge scheduled event (`detail-type: Scheduled Event`, `source: aws.events`).
- Tencent SCF timer (`{Type: "Timer", TriggerName, Time, Message}`).
- Alibaba FC time trigger (`{triggerTime, triggerName, payload}`).
"""

from __future__ import annotations

import json
from typing import Any

from polyfn.events import _common as c


def eventbridge(ce: dict[str, Any]) -> dict[str, Any]:
    d = c.data_of(ce)
    name = str(d.get("trigger") or "timer")
    region = "us-east-1"
    payload = d.get("payload")
    return {
        "version": "0",
        "id": str(ce.get("id", "")),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": c.ACCOUNT_ID,
        "time": c.iso_s(d.get("scheduled_time") or ce.get("time")),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{c.ACCOUNT_ID}:rule/{name}"],
        "detail": payload if isinstance(payload, dict) else {},
    }


def _message(payload: Any) -> str:
    if payload is None:
        return ""
    return payload if isinstance(payload, str) else json.dumps(payload)


def tencent(ce: dict[str, Any]) -> dict[str, Any]:
    d = c.data_of(ce)
    return {
        "Type": "Timer",
        "TriggerName": str(d.get("trigger") or "timer"),
        "Time": c.iso_s(d.get("scheduled_time") or ce.get("time")),
        "Message": _message(d.get("payload")),
    }


def aliyun(ce: dict[str, Any]) -> dict[str, Any]:
    d = c.data_of(ce)
    return {
        "triggerTime": c.iso_s(d.get("scheduled_time") or ce.get("time")),
        "triggerName": str(d.get("trigger") or "timer"),
        "payload": _message(d.get("payload")),
    }
