"""Tencent Cloud COS trigger event (`Records[]` with `cos` and `event` parts) from storage events.

Shape from the SCF docs' COS trigger sample (583/9707). `cosObject.key` is `/<appid>/<bucket>/<key>`.
Also the CMQ topic message shape for queue events (same docs).
"""

from __future__ import annotations

from typing import Any

from polyfn.events import _common as c
from polyfn.events.cloudevent import TYPE_OBJECT_DELETED

APPID = "1250000000"


def record(ce: dict[str, Any]) -> dict[str, Any]:
    d = c.data_of(ce)
    bucket = str(d.get("bucket", ""))
    region = d.get("region") or "ap-guangzhou"
    key = str(d.get("key", ""))
    deleted = ce.get("type") == TYPE_OBJECT_DELETED
    return {
        "cos": {
            "cosSchemaVersion": "1.0",
            "cosObject": {
                "url": f"http://{bucket}-{APPID}.cos.{region}.myqcloud.com/{key}",
                "meta": {"x-cos-request-id": str(ce.get("id", "")),
                         "Content-Type": str(d.get("content_type") or "")},
                "vid": "",
                "key": f"/{APPID}/{bucket}/{key}",
                "size": int(d.get("size") or 0),
            },
            "cosBucket": {"region": region, "name": bucket, "appid": APPID},
            "cosNotificationId": "unkown",
        },
        "event": {
            "eventName": "cos:ObjectRemove:Delete" if deleted else "cos:ObjectCreated:Put",
            "eventVersion": "1.0",
            "eventTime": c.epoch_s(ce.get("time")),
            "eventSource": "qcs::cos",
            "requestParameters": {"requestSourceIP": d.get("source_ip") or "127.0.0.1", "requestHeaders": {}},
            "eventQueue": "qcs:0:cos:gz:1251111111:cos",
            "reservedInfo": "",
            "reqid": 0,
        },
    }


def event(ce: dict[str, Any]) -> dict[str, Any]:
    return {"Records": [record(ce)]}


def cmq_event(ce: dict[str, Any]) -> dict[str, Any]:
    d = c.data_of(ce)
    topic = str(d.get("topic") or "queue")
    out = []
    for m in c.messages_of(ce):
        body = m.get("body", "")
        out.append({"CMQ": {
            "type": "topic", "topicOwner": int(APPID), "topicName": topic, "subscriptionName": "polyfn",
            "publishTime": c.iso_ms(None), "msgId": str(m.get("id", "")), "requestId": str(ce.get("id", "")),
            "msgBody": body if isinstance(body, str) else str(body),
            "msgTag": ",".join(f"{k}={v}" for k, v in (m.get("attributes") or {}).items()),
        }})
    return {"Records": out}
