"""How many items a database request read and wrote, for usage metering (observe/usage.py). Pure.

Counted per item, as DynamoDB's on-demand request units are at most 1 KB written / 4 KB read: an item read
(GetItem, each item a Query or Scan examined, each of a batch or transaction) is one read, an item put, updated
or deleted one write; a conditional check of a transaction is a read. A refused request reads and writes nothing
here (DynamoDB bills some refusals; polyfn does not).
"""

from __future__ import annotations

from typing import Any

WRITES_ONE = frozenset({"PutItem", "UpdateItem", "DeleteItem"})


def dynamodb_items(target: str, req: dict[str, Any], out: dict[str, Any]) -> tuple[int, int]:
    """(reads, writes) of a DynamoDB operation that succeeded with answer `out`."""
    if target == "GetItem":
        return 1, 0
    if target in WRITES_ONE:
        return 0, 1
    if target in ("Query", "Scan"):
        return max(1, int(out.get("ScannedCount", out.get("Count", 0)) or 0)), 0
    if target == "BatchGetItem":
        return sum(len(v) for v in (out.get("Responses") or {}).values()), 0
    if target == "BatchWriteItem":
        asked = sum(len(v) for v in (req.get("RequestItems") or {}).values() if isinstance(v, list))
        left = sum(len(v) for v in (out.get("UnprocessedItems") or {}).values())
        return 0, max(0, asked - left)
    if target == "TransactGetItems":
        return len(req.get("TransactItems") or ()), 0
    if target == "TransactWriteItems":
        items = req.get("TransactItems") or ()
        checks = sum(1 for i in items if isinstance(i, dict) and "ConditionCheck" in i)
        return checks, len(items) - checks
    if target == "ExecuteStatement":
        if "Items" in out:
            return max(1, len(out["Items"])), 0
        return 0, 1
    return 0, 0


WX_READS = frozenset({"collection.get", "collection.count", "document.get"})
WX_WRITES = frozenset({"collection.add", "document.set", "document.update", "document.remove"})


def wx_items(action: str, out: dict[str, Any]) -> tuple[int, int]:
    """(reads, writes) of a wx.cloud database action that succeeded with answer `out`."""
    if action in WX_READS:
        data = out.get("data")
        return (max(1, len(data)) if isinstance(data, list) else 1), 0
    if action in WX_WRITES:
        ids = out.get("ids")
        return 0, len(ids) if isinstance(ids, list) else 1
    if action in ("collection.update", "collection.remove"):
        stats = out.get("stats") or {}
        return 0, int(stats.get("updated", stats.get("removed", 0)) or 0)
    return 0, 0
