"""AWS SQS event (`Records[]` with `eventSource: aws:sqs`) from polyfn queue batches and broker messages.

Shape from AWS's published sample (aws-lambda-go `events/testdata/sqs-event.json`). A function may answer
`{"batchItemFailures": [{"itemIdentifier": messageId}]}` to fail part of a batch.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from polyfn.events import _common as c


def _body(m: dict[str, Any]) -> str:
    body = m.get("body", "")
    if m.get("body_base64"):
        return str(body)  # SQS bodies are text: binary stays base64 as the sender would have encoded it
    return body if isinstance(body, str) else str(body)


def record(m: dict[str, Any], topic: str, region: str) -> dict[str, Any]:
    body = _body(m)
    sent = int(float(m.get("sent_at") or 0) * 1000)
    attrs: dict[str, Any] = {}
    for k, v in (m.get("attributes") or {}).items():
        attrs[str(k)] = {"stringValue": str(v), "stringListValues": [], "binaryListValues": [], "dataType": "String"}
    return {
        "messageId": str(m.get("id", "")),
        "receiptHandle": base64.b64encode(f"{topic}:{m.get('id', '')}".encode()).decode(),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(int(m.get("attempt") or 1)),
            "SentTimestamp": str(sent),
            "SenderId": c.ACCOUNT_ID,
            "ApproximateFirstReceiveTimestamp": str(sent),
        },
        "messageAttributes": attrs,
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{region}:{c.ACCOUNT_ID}:{topic}",
        "awsRegion": region,
    }


def event(ce: dict[str, Any]) -> dict[str, Any]:
    d = c.data_of(ce)
    topic = str(d.get("topic") or "queue")
    return {"Records": [record(m, topic, "us-east-1") for m in c.messages_of(ce)]}
