"""The app platform's database face: wx.cloud's `database()` for end users, under their app's security rules.

    POST /app/{env}/db/{action}      Authorization: Bearer <the user's access token>
    {"collection": "notes", "query": {…}, "order": [["created", "desc"]], "limit": 20, …}

The actions and bodies are the wx.cloud database API's (`db/wx_api.py`, docs/database.md): `collection.add |
get | count | update | remove | watch`, `document.get | set | update | remove`. The answer is the same JSON
(`{"data": […], "errMsg": "collection.get:ok"}`; failures WeChat's `errCode` and `errMsg`, with 403 for a
document the rules refuse), and `collection.watch` streams server-sent events.

This module only says who is calling: the verified user (a token is required: mini-programs and the SDK
always have one) with the app's rules (`App.rule(collection)`, compiled once per expression). The database
itself decides what the rules let through (`db/collections.py`). Collections live in the app's namespace,
so a WeChat function of that namespace (`cloud.database()`) and the app's users see the same collections.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from polyfn.apps.http import Request, json_outcome
from polyfn.apps.model import App
from polyfn.apps.rules import Compiled, compile_rule
from polyfn.apps.service import AppError
from polyfn.db.collections import INVALID_PARAM, Caller, WxError
from polyfn.db.wx_api import ACTIONS, EventStream, failure
from polyfn.invoker import Outcome

WATCH = "collection.watch"
MAX_WATCHES = 20  # open watches per user on one node: each holds a query's documents in memory

#: a rule expression → its compiled form (rules are few and change rarely; compiling is per expression)
_compiled = lru_cache(maxsize=4096)(compile_rule)


def rules_of(app: App) -> Callable[[str, str], Compiled]:
    """`rules(collection, "read" | "write")` for the database (`db.collections.Rules`)."""

    def rules(collection: str, side: str) -> Compiled:
        return _compiled(getattr(app.rule(collection), side))

    return rules


class DatabaseFace:
    """`database` returns the node's wx.cloud database API (`WxDatabaseApi`), or None while it is not started
    (the database service starts after the app platform)."""

    def __init__(self, database: Callable[[], Any], max_watches: int = MAX_WATCHES):
        self.database = database
        self.max_watches = max_watches
        self.watching: dict[tuple[str, str], int] = {}  # (app, uid) → open watches on this node

    def routes(self) -> dict[tuple[str, str, str], Any]:
        out: dict[tuple[str, str, str], Any] = {("POST", "db", action): self.run for action in ACTIONS}
        out[("POST", "db", WATCH)] = self.watch
        return out

    def _api(self) -> Any:
        api = self.database()
        if api is None:
            raise AppError(503, "database_unavailable", "the node's database is not running")
        return api

    @staticmethod
    def caller(req: Request) -> Caller:
        ident = req.identity(required=True)
        assert ident is not None
        return Caller(ns=req.app.namespace, openid=ident.openid, auth=ident.rule_auth(), rules=rules_of(req.app))

    async def run(self, req: Request) -> Outcome:
        caller = self.caller(req)
        status, answer = await self._api().run(caller, "/".join(req.parts[1:]), req.json())
        return json_outcome(answer, status)

    async def watch(self, req: Request) -> Outcome | EventStream:
        """Server-sent snapshots while the user's session stands: signing out or `polyfn apps revoke` ends
        the stream at its next line (a change, or the heartbeat's within 15 s)."""
        caller = self.caller(req)
        ident = req.identity()
        assert ident is not None
        who = (ident.app, ident.uid)
        if self.watching.get(who, 0) >= self.max_watches:
            raise AppError(429, "too_many_watches", f"at most {self.max_watches} open watches per user: close one "
                                                    "(watcher.close()) before opening another")
        api = self._api()
        body = req.json()
        try:
            if not isinstance(body, dict):
                raise WxError(INVALID_PARAM, "the body must be a JSON object")
            stream = await api.watcher.open(caller, body)
        except WxError as e:
            status, answer = failure(WATCH, e.code, e.message)
            return json_outcome(answer, status)
        self.watching[who] = self.watching.get(who, 0) + 1

        def closed() -> None:
            left = self.watching.pop(who, 1) - 1
            if left:
                self.watching[who] = left

        return EventStream(stream, alive=lambda: not req.service.revoked(ident), on_close=closed)
