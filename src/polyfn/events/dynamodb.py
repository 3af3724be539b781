"""The Lambda event of a DynamoDB Streams trigger (`Records[]` with `eventSource: aws:dynamodb`), from polyfn's
table change batches (`TYPE_DB_CHANGES`). Shape from AWS's published sample event (Lambda developer guide,
"Using AWS Lambda with Amazon DynamoDB"); a function may answer `{"batchItemFailures": [{"itemIdentifier":
SequenceNumber}]}` to have the batch retried from that record on.
"""

from __future__ import annotations

from typing import Any

from polyfn.events import _common as c

VIEWS = ("NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY")


def record(seq: int, rec: dict[str, Any], view: str, table: str, label: str, region: str) -> dict[str, Any]:
    """One stream record of a change record (`db/rows.record_change`) as the view type shows it."""
    ddb: dict[str, Any] = {"ApproximateCreationDateTime": int(rec.get("time", 0)), "Keys": rec["keys"],
                           "SequenceNumber": str(seq), "SizeBytes": int(rec.get("newSize", 0) or 1),
                           "StreamViewType": view}
    if view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES") and "new" in rec:
        ddb["NewImage"] = rec["new"]
    if view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES") and "old" in rec:
        ddb["OldImage"] = rec["old"]
    out = {"eventID": rec["eventID"], "eventName": rec["eventName"], "eventVersion": "1.1",
           "eventSource": "aws:dynamodb", "awsRegion": region, "dynamodb": ddb,
           "eventSourceARN": f"arn:aws:dynamodb:{region}:{c.ACCOUNT_ID}:table/{table}/stream/{label}"}
    if rec.get("ttl"):  # deleted by TTL expiry, not by a client
        out["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return out


def event(ce: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(c.data_of(ce).get("records") or [])}
