"""AWS CloudWatch Logs subscription event: `{"awslogs": {"data": base64(gzip(json))}}`.

Decoded, `data` is `{messageType: DATA_MESSAGE, owner, logGroup, logStream, subscriptionFilters, logEvents}`
(aws-lambda-go `events/testdata/cloudwatch-logs-event.json`).
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from polyfn.events import _common as c


def payload(ce: dict[str, Any]) -> dict[str, Any]:
    d = c.data_of(ce)
    return {
        "messageType": "DATA_MESSAGE",
        "owner": c.ACCOUNT_ID,
        "logGroup": str(d.get("group") or "polyfn"),
        "logStream": str(d.get("stream") or "default"),
        "subscriptionFilters": [str(d.get("filter") or "polyfn")],
        "logEvents": [{"id": str(ln.get("id", "")), "timestamp": int(ln.get("timestamp") or 0),
                       "message": str(ln.get("message", ""))} for ln in d.get("lines") or [] if isinstance(ln, dict)],
    }


def encode(decoded: dict[str, Any]) -> str:
    return base64.b64encode(gzip.compress(json.dumps(decoded).encode(), mtime=0)).decode()


def decode(data: str) -> dict[str, Any]:
    return json.loads(gzip.decompress(base64.b64decode(data)))


def event(ce: dict[str, Any]) -> dict[str, Any]:
    return {"awslogs": {"data": encode(payload(ce))}}
