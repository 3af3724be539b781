"""AWS S3 event notification (`Records[]` with `eventSource: aws:s3`) from polyfn storage events.

Shape from AWS's published sample (aws-lambda-go `events/testdata/s3-event.json`, Lambda docs). The
object key is URL-encoded as S3 does (`Happy%20Face.jpg`); `eventName` is `ObjectCreated:Put` or
`ObjectRemoved:Delete`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

from polyfn.events import _common as c
from polyfn.events.cloudevent import TYPE_OBJECT_DELETED


def record(ce: dict[str, Any]) -> dict[str, Any]:
    d = c.data_of(ce)
    deleted = ce.get("type") == TYPE_OBJECT_DELETED
    bucket = str(d.get("bucket", ""))
    obj: dict[str, Any] = {"key": quote_plus(str(d.get("key", "")), safe="/"),
                           "sequencer": str(d.get("sequencer") or ce.get("id", ""))[:18].upper()}
    if not deleted:
        obj["size"] = int(d.get("size") or 0)
        obj["eTag"] = str(d.get("etag", "")).strip('"')
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": d.get("region") or "us-east-1",
        "eventTime": c.iso_ms(ce.get("time")),
        "eventName": "ObjectRemoved:Delete" if deleted else "ObjectCreated:Put",
        "userIdentity": {"principalId": "polyfn"},
        "requestParameters": {"sourceIPAddress": d.get("source_ip") or "127.0.0.1"},
        "responseElements": {"x-amz-request-id": str(ce.get("id", ""))[:16].upper(),
                             "x-amz-id-2": str(ce.get("id", ""))},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "polyfn",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "polyfn"},
                       "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def event(ce: dict[str, Any]) -> dict[str, Any]:
    return {"Records": [record(ce)]}
