"""The wx.cloud database face: a JSON HTTP API over collections (`collections.py`), on the node's main port,
which polyfn's `wx-server-sdk` (in functions) calls, and which the app platform serves to end users.

    POST /wx/database/{action}        Authorization: Bearer <key id>:<secret>
    {"collection": "todos", "id": …, "data": …, "query": …, "order": [["due", "asc"]], "skip": 0,
     "limit": 20, "field": {…}}

Actions (WeChat's names): `database.createCollection`, `collection.add | get | count | update | remove |
watch`, `document.get | set | update | remove`. An answer is what the SDK resolves to, e.g.
`{"data": [...], "errMsg": "collection.get:ok"}`; a failure has WeChat's `errCode` and
`errMsg: "collection.get:fail -502005 database collection not exists: todos"` (and an HTTP status that
fits). `document.get` of no document answers `{"data": null}`: the SDK decides whether that throws.
`collection.watch` answers a stream of server-sent events (`watch.py`): `{"type": "init", "docs": …}`, then
`{"docChanges": …, "docs": …}` per change.

`run(caller, action, body)` is the same API for any caller: the app platform's face calls it with an end
user (`Caller(openid=…, auth=…, rules=…)`, docs/database.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec

from polyfn.db.collections import (
    BAD_COMMAND,
    INVALID_PARAM,
    NO_COLLECTION,
    PERMISSION_DENIED,
    SYSTEM_ERROR,
    Caller,
    Collections,
    Query,
    WxError,
)
from polyfn.db.errors import DbError
from polyfn.db.metering import wx_items
from polyfn.tenancy import key_namespace

log = logging.getLogger("polyfn.db")
PREFIX = "/wx/database/"
MAX_BODY = 1024 * 1024
_dec = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()
_STATUS = {INVALID_PARAM: 400, BAD_COMMAND: 400, PERMISSION_DENIED: 403, NO_COLLECTION: 404, SYSTEM_ERROR: 500}
UNAUTHORIZED = -401001

Action = Callable[[Collections, Caller, dict[str, Any]], Awaitable[dict[str, Any]]]


def _query(body: dict[str, Any]) -> Query:
    order = body.get("order")
    if order is not None:
        if not isinstance(order, list) or not all(
                isinstance(o, list) and len(o) == 2 and isinstance(o[0], str) and o[1] in ("asc", "desc")
                for o in order):
            raise WxError(INVALID_PARAM, "order is a list of [field, \"asc\" | \"desc\"]")
        order = [(str(f), str(d)) for f, d in order]
    return Query(where=body.get("query"), order=order, skip=body.get("skip", 0), limit=body.get("limit"),
                 field=body.get("field"))


async def _create(c: Collections, who: Caller, b: dict[str, Any]) -> dict[str, Any]:
    await c.create(who, b.get("collection"))
    return {}


async def _add(c: Collections, who: Caller, b: dict[str, Any]) -> dict[str, Any]:
    return {"_id": await c.add(who, b.get("collection"), b.get("data"))}


async def _find(c: Collections, who: Caller, b: dict[str, Any]) -> dict[str, Any]:
    return {"data": await c.find(who, b.get("collection"), _query(b))}


async def _count(c: Collections, who: Caller, b: dict[str, Any]) -> dict[str, Any]:
    return {"total": await c.count(who, b.get("collection"), b.get("query"))}


async def _update_where(c: Collections, who: Caller, b: dict[str, Any]) -> dict[str, Any]:
    return {"stats": {"updated": await c.update_where(who, b.get("collection"), b.get("query"), b.get("data"))}}


async def _remove_where(c: Collections, who: Caller, b: dict[str, Any]) -> dict[str, Any]:
    return {"stats": {"removed": await c.remove_where(who, b.get("collection"), b.get("query"))}}


async def _get(c: Collections, who: Caller, b: dict[str, Any]) -> dict[str, Any]:
    return {"data": await c.get(who, b.get("collection"), b.get("id"), b.get("field"))}


async def _set(c: Collections, who: Caller, b: dict[str, Any]) -> dict[str, Any]:
    updated, created = await c.set(who, b.get("collection"), b.get("id"), b.get("data"))
    return {"_id": b.get("id"), "stats": {"updated": updated, "created": created}}


async def _update(c: Collections, who: Caller, b: dict[str, Any]) -> dict[str, Any]:
    return {"stats": {"updated": await c.update(who, b.get("collection"), b.get("id"), b.get("data"))}}


async def _remove(c: Collections, who: Caller, b: dict[str, Any]) -> dict[str, Any]:
    return {"stats": {"removed": await c.remove(who, b.get("collection"), b.get("id"))}}


ACTIONS: dict[str, Action] = {
    "database.createCollection": _create,
    "collection.add": _add, "collection.get": _find, "collection.count": _count,
    "collection.update": _update_where, "collection.remove": _remove_where,
    "document.get": _get, "document.set": _set, "document.update": _update, "document.remove": _remove,
}


def failure(action: str, code: int, message: str) -> tuple[int, dict[str, Any]]:
    return _STATUS.get(code, 400), {"errCode": code, "errMsg": f"{action}:fail {code} {message}"}


class WxDatabaseApi:
    """Raw ASGI app for `/wx/database/…`; `run` for callers the node has already identified."""

    def __init__(self, collections: Collections, keys: Any, watcher: Any = None, ns: str = "default"):
        self.collections = collections
        self.keys = keys
        self.watcher = watcher  # watch.Watcher: collection.watch
        self.ns = ns
        self.meter: Any = None  # (ns, key owner, reads, writes) → None: usage metering

    @staticmethod
    def owns(scope: dict[str, Any]) -> bool:
        return scope["type"] == "http" and scope["path"].startswith(PREFIX)

    async def run(self, caller: Caller, action: str, body: Any) -> tuple[int, dict[str, Any]]:
        fn = ACTIONS.get(action)
        if fn is None:
            return failure(action, INVALID_PARAM, f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
        if not isinstance(body, dict):
            return failure(action, INVALID_PARAM, "the body must be a JSON object")
        try:
            out = await fn(self.collections, caller, body)
        except WxError as e:
            return failure(action, e.code, e.message)
        except DbError as e:  # the core refused what a document or update became (size, types)
            return failure(action, INVALID_PARAM if e.status < 500 else SYSTEM_ERROR, e.message)
        except Exception:
            log.exception("wx.cloud database %s failed", action)
            return failure(action, SYSTEM_ERROR, "internal error")
        if self.meter is not None:  # items read and written (usage metering: db/metering.py)
            self.meter(caller.ns, getattr(caller.key, "owner", None), *wx_items(action, out))
        out["errMsg"] = f"{action}:ok"
        return 200, out

    async def caller(self, headers: dict[bytes, bytes]) -> Caller | None:
        auth = headers.get(b"authorization", b"").decode("latin-1")
        key_id = auth.partition(" ")[2].partition(":")[0].strip()
        if key_id:
            await self.keys.ensure(key_id)
        key = self.keys.from_authorization(auth)
        return Caller(ns=key_namespace(key) or self.ns, key=key) if key is not None else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        action = scope["path"][len(PREFIX):]
        body = bytearray()
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if len(body) > MAX_BODY:
                await _send(send, 413, failure(action, INVALID_PARAM, f"the request is larger than {MAX_BODY} bytes")[1])
                return
            if not msg.get("more_body"):
                break
        if scope["method"] != "POST":
            await _send(send, 405, failure(action, INVALID_PARAM, "use POST")[1])
            return
        caller = await self.caller(dict(scope["headers"]))
        if caller is None:
            await _send(send, 401, {"errCode": UNAUTHORIZED, "errMsg": f"{action}:fail {UNAUTHORIZED} no permission "
                                    "to use the API: send Authorization: Bearer <key id>:<secret>"})
            return
        try:
            req = _dec.decode(body) if body else {}
        except (msgspec.DecodeError, RecursionError):  # (RecursionError: nested deeper than the decoder goes)
            await _send(send, *failure(action, INVALID_PARAM, "the body is not JSON"))
            return
        if action == "collection.watch" and self.watcher is not None:
            await self._watch(caller, req, receive, send)
            return
        await _send(send, *await self.run(caller, action, req))

    async def _watch(self, caller: Caller, req: Any, receive: Any, send: Any) -> None:
        try:
            stream = await self.watcher.open(caller, req)
        except WxError as e:
            await _send(send, *failure("collection.watch", e.code, e.message))
            return
        await EventStream(stream).serve(receive, send)


class EventStream:
    """Snapshots answered as server-sent events (one `data:` line each) until the client goes away; a comment
    line every `heartbeat` seconds keeps proxies from closing a quiet stream and finds clients that left.
    `alive()` is asked before every line: False ends the stream (an end user signed out or revoked while
    watching). Both faces that watch (this one, and the app platform's for end users) answer with it."""

    def __init__(self, snapshots: AsyncIterator[dict[str, Any]], headers: list[tuple[bytes, bytes]] | None = None,
                 heartbeat: float = 15.0, alive: Callable[[], bool] = lambda: True,
                 on_close: Callable[[], None] | None = None):
        self.snapshots = snapshots
        self.headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"), *(headers or [])]
        self.heartbeat = heartbeat
        self.alive = alive
        self.on_close = on_close  # called once when the stream ends, however it ends

    async def serve(self, receive: Any, send: Any) -> None:
        try:
            await self._serve(receive, send)
        finally:
            if self.on_close is not None:
                self.on_close()

    async def _serve(self, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})

        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        waiter = asyncio.ensure_future(gone())
        events = _until(self.snapshots, waiter, self.heartbeat)
        try:
            async for snap in events:
                if not self.alive():
                    break
                body = b": keep-alive\n\n" if snap is None else b"data: " + _enc.encode(snap) + b"\n\n"
                await send({"type": "http.response.body", "body": body, "more_body": True})
        except OSError:
            pass
        finally:
            waiter.cancel()
            await events.aclose()  # first: it cancels a pending read of the snapshots
            await self.snapshots.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b""})


async def _until(stream: AsyncIterator[dict[str, Any]], stop: asyncio.Future[Any],
                 heartbeat: float) -> AsyncIterator[dict[str, Any] | None]:
    """The stream's items until `stop` is done; None after each `heartbeat` seconds without one."""
    nxt: asyncio.Future[Any] | None = None
    try:
        while not stop.done():
            if nxt is None:
                nxt = asyncio.ensure_future(stream.__anext__())
            await asyncio.wait([nxt, stop], timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED)
            if stop.done():
                return
            if not nxt.done():
                yield None
                continue
            done, nxt = nxt, None
            try:
                yield done.result()
            except StopAsyncIteration:
                return
    finally:
        if nxt is not None and not nxt.done():
            nxt.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await nxt


async def _send(send: Any, status: int, out: dict[str, Any]) -> None:
    data = _enc.encode(out)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
