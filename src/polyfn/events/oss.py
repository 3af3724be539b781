"""Alibaba Cloud OSS trigger event (`{"events": [...]}` with `eventSource: acs:oss`) from storage events.

Shape from the Function Compute docs' OSS trigger sample.
"""

from __future__ import annotations

from typing import Any

from polyfn.events import _common as c
from polyfn.events.cloudevent import TYPE_OBJECT_DELETED


def record(ce: dict[str, Any]) -> dict[str, Any]:
    d = c.data_of(ce)
    region = d.get("region") or "cn-hangzhou"
    bucket = str(d.get("bucket", ""))
    size = int(d.get("size") or 0)
    deleted = ce.get("type") == TYPE_OBJECT_DELETED
    return {
        "eventName": "ObjectRemoved:DeleteObject" if deleted else "ObjectCreated:PutObject",
        "eventSource": "acs:oss",
        "eventTime": c.iso_s(ce.get("time")).replace("Z", ".000Z"),
        "eventVersion": "1.0",
        "oss": {
            "bucket": {"arn": f"acs:oss:{region}:{c.ACCOUNT_ID}:{bucket}", "name": bucket,
                       "ownerIdentity": c.ACCOUNT_ID},
            "object": {"deltaSize": -size if deleted else size, "eTag": str(d.get("etag", "")).strip('"'),
                       "key": str(d.get("key", "")), "size": size},
            "ossSchemaVersion": "1.0",
            "ruleId": "polyfn",
        },
        "region": region,
        "requestParameters": {"sourceIPAddress": d.get("source_ip") or "127.0.0.1"},
        "responseElements": {"requestId": str(ce.get("id", ""))},
        "userIdentity": {"principalId": c.ACCOUNT_ID},
    }


def event(ce: dict[str, Any]) -> dict[str, Any]:
    return {"events": [record(ce)]}
