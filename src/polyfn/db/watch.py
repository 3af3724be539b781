"""Realtime queries: `collection.where(…).watch()` as an async iterator of snapshots, from the change feed.

`Watcher.open(caller, {"collection", "query", "order", "limit"})` checks the request (errors as `WxError`,
before anything is streamed) and returns an async iterator that yields, as WeChat's `watch` does:

    {"id": 0, "type": "init", "docs": [...], "docChanges": [{"dataType": "init", "queueType": "init", …}]}
    {"id": 1, "docs": [...], "docChanges": [{"id", "dataType": "add" | "update" | "remove",
                                              "queueType": "enqueue" | "update" | "dequeue",
                                              "docId", "doc", "updatedFields"?, "removedFields"?}]}

`docs` is the query's whole result after the change (ordered, at most `limit`); `docChanges` says what
changed: `enqueue` when a document starts matching (added, or updated into the query), `dequeue` when it
stops (removed, or updated out of it), `update` when a matching document changed. End users get only
documents their collection's read rule allows (the same `matcher` a query uses).

Changes come from the table's change feed (`changes.py`: written in each change's transaction), read from
the position taken just before the initial snapshot; a change that the snapshot already holds is applied
again harmlessly (the same document, the same content). The feed wakes readers at once for changes made on
this node and is polled every `poll` seconds for other nodes' (a cluster). The delivery to clients
(WebSocket, server-sent events) is the faces' job: `wx_api.py` streams server-sent events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from polyfn.db import access, docs
from polyfn.db.changes import ChangeFeed
from polyfn.db.collections import INVALID_PARAM, MAX_SORTED, Caller, Collections, Query, WxError

BATCH = 500


class Watcher:
    def __init__(self, collections: Collections, feed: ChangeFeed, poll: float = 1.0):
        self.collections = collections
        self.feed = feed
        self.poll = poll

    async def open(self, caller: Caller, req: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        cols = self.collections
        name = req.get("collection")
        t = await cols.collection(caller, name, access.READ)
        keep = cols.matcher(caller, t, req.get("query"))
        order = req.get("order")
        if order is not None and (not isinstance(order, list) or not all(
                isinstance(o, list) and len(o) == 2 and o[1] in ("asc", "desc") for o in order)):
            raise WxError(INVALID_PARAM, "order is a list of [field, \"asc\" | \"desc\"]")
        limit = req.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise WxError(INVALID_PARAM, "limit must be a positive integer")
        if not t.changes:
            await cols.db.set_changes(caller.ns, t.name, True)
        after = await self.feed.last_seq()
        found = await cols.found(caller, t, Query(where=req.get("query")), None)
        if len(found) > MAX_SORTED:
            raise WxError(INVALID_PARAM, f"watch follows at most {MAX_SORTED} documents: narrow the query")
        return self._follow(caller.ns, t.name, keep, [(str(o[0]), str(o[1])) for o in order or []], limit,
                            {i["_id"]["S"]: i for i in found}, after)

    def _docs(self, current: dict[str, dict[str, Any]], order: list[tuple[str, str]],
              limit: int | None) -> list[dict[str, Any]]:
        items = list(current.values())
        self.collections.sort(items, order)
        return [docs.from_item(i) for i in items[:limit]]

    async def _follow(self, ns: str, name: str, keep: Any, order: list[tuple[str, str]], limit: int | None,
                      current: dict[str, dict[str, Any]], after: int) -> AsyncIterator[dict[str, Any]]:
        snap = self._docs(current, order, limit)
        yield {"id": 0, "type": "init", "docs": snap,
               "docChanges": [{"id": n, "dataType": "init", "queueType": "init", "docId": d["_id"], "doc": d}
                              for n, d in enumerate(snap)]}
        sid = 0
        while True:
            seen = self.feed.version
            recs = await self.feed.read(ns, name, after, BATCH)
            if not recs:
                await self.feed.wait(seen, self.poll)
                continue
            after = recs[-1][0]
            changes = []
            for _seq, _ts, rec in recs:
                change = _change(current, keep, rec)
                if change is not None:
                    change["id"] = len(changes)
                    changes.append(change)
            if changes:
                sid += 1
                yield {"id": sid, "docs": self._docs(current, order, limit), "docChanges": changes}


def _change(current: dict[str, dict[str, Any]], keep: Any, rec: dict[str, Any]) -> dict[str, Any] | None:
    """Apply one change record to the query's result set; what changed for the watcher, or None."""
    old, new = rec.get("old"), rec.get("new")
    doc_id = (new or old or {}).get("_id", {}).get("S")
    if doc_id is None:
        return None
    was = doc_id in current
    now = new is not None and keep(new)
    if now:
        prev = current.get(doc_id)
        current[doc_id] = new
        if was:
            out = {"dataType": "update", "queueType": "update", "docId": doc_id, "doc": docs.from_item(new)}
            out.update(_fields(prev, new))
            return out
        return {"dataType": "add" if old is None else "update", "queueType": "enqueue", "docId": doc_id,
                "doc": docs.from_item(new)}
    if was:
        current.pop(doc_id)
        return {"dataType": "remove" if new is None else "update", "queueType": "dequeue", "docId": doc_id,
                "doc": docs.from_item(new if new is not None else old or {})}
    return None


def _fields(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    old = old or {}
    updated = {k: docs.from_value(v) for k, v in new.items() if old.get(k) != v}
    removed = [k for k in old if k not in new]
    return {"updatedFields": updated, "removedFields": removed}
