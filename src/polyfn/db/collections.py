"""Collections: WeChat's cloud database model on the core. A collection is a table whose hash key is `_id`
(a string) and nothing else, its documents items (`docs.py`); queries and updates compile onto the core's
expressions (`wxquery.py`) and run through its reads and writes. No state lives here.

**Who calls.** Every operation takes a `Caller`:
* a server caller (a function's own key, an API key): its key's scope, or its function's table grants,
  decide as for the DynamoDB face (`access.py`); it sees and writes every document of a collection it may
  reach, and the documents it adds carry no `_openid` unless it sets one (as in WeChat's cloud functions);
* an end user (a mini-program or browser page, through the app platform): `rules` is set, and is asked
  before every read and write — `rules(collection, "read" | "write")` returns the collection's rule, with
  `allows(auth, doc)` and `equalities(auth)` (the `field == value` terms a query may be narrowed by, or None).
  The documents such a caller adds are stamped `_openid` = its openid; it can neither set nor change
  `_openid`. A query returns only documents the read rule allows; `doc(id)` of a document it may not read
  or write fails with -502003; a `where().update()/remove()` touches only documents it may read and write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from polyfn.db import access, docs, evaluate, reads, rows, values, writes, wxquery
from polyfn.db.core import Database
from polyfn.db.errors import ConditionFailed, DbError, Invalid, NoSuchTable
from polyfn.db.expr import And, Func, PathRef
from polyfn.db.schema import TableDef

SERVER_LIMIT = 100  # documents per get() for server callers (WeChat's cap) …
CLIENT_LIMIT = 20  # … and for end users
MAX_SORTED = 100_000  # documents an orderBy query may sort in memory
WRITE_CHUNK = 100  # documents per transaction of a where().update()/remove()

# WeChat's error codes (the SDKs' errCode)
INVALID_PARAM = -501007
SYSTEM_ERROR = -501001
REQUEST_FAILED = -502001
BAD_COMMAND = -502002
PERMISSION_DENIED = -502003
NO_COLLECTION = -502005


class WxError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Rule(Protocol):
    def allows(self, auth: dict[str, Any] | None, doc: dict[str, Any] | None) -> bool: ...

    def equalities(self, auth: dict[str, Any] | None) -> dict[str, Any] | None: ...


Rules = Callable[[str, str], Rule]  # (collection, "read" | "write") → its rule


@dataclass(frozen=True)
class Caller:
    ns: str = "default"
    key: Any = None  # a server caller's API key record
    openid: str = ""  # an end user's openid
    auth: dict[str, Any] | None = None  # the end user as rules see them (`auth` in a rule)
    rules: Rules | None = None  # set for end users: asked before every read and write

    @property
    def client(self) -> bool:
        return self.rules is not None

    @property
    def limit(self) -> int:
        return CLIENT_LIMIT if self.client else SERVER_LIMIT


@dataclass
class Query:
    """What `where(…).orderBy(…).skip(…).limit(…).field(…)` asks."""

    where: Any = None
    order: list[tuple[str, str]] | None = None  # (field, "asc" | "desc")
    skip: int = 0
    limit: int | None = None
    field: Any = None


def _id_key(t: TableDef, doc_id: Any) -> rows.RowKey:
    if not isinstance(doc_id, str) or not doc_id:
        raise WxError(INVALID_PARAM, "a document id must be a non-empty string")
    try:
        return rows.item_key(t.key, {"_id": {"S": doc_id}})
    except Invalid as e:
        raise WxError(INVALID_PARAM, e.message) from None


def _exists() -> Any:
    return Func("attribute_exists", (PathRef(("_id",)),))


class Collections:
    def __init__(self, db: Database, grants: access.Grants, clock: Callable[[], float] = time.time):
        self.db = db
        self.grants = grants
        self.clock = clock

    # -- access -----------------------------------------------------------------------------------------

    async def collection(self, caller: Caller, name: Any, need: str) -> TableDef:
        if not isinstance(name, str) or not name:
            raise WxError(INVALID_PARAM, "collection name must be a non-empty string")
        if not caller.client:
            grants = await self.grants.of(caller.ns, caller.key.owner) if caller.key.owner is not None else {}
            refusal = access.allowed(caller.key, need, [name], grants)
            if refusal is not None:
                raise WxError(PERMISSION_DENIED, f"permission denied: {refusal}")
        try:
            t = await self.db.table(caller.ns, name)
        except NoSuchTable:
            raise WxError(NO_COLLECTION, f"database collection not exists: {name}") from None
        if t.key.hash != "_id" or t.key.hash_type != "S" or t.key.range is not None:
            raise WxError(INVALID_PARAM, f"table {name!r} is not a collection: its key is not _id alone")
        return t

    @staticmethod
    def _rule(caller: Caller, name: str, side: str) -> Rule | None:
        return caller.rules(name, side) if caller.rules is not None else None

    @staticmethod
    def _check(caller: Caller, rule: Rule | None, item: dict[str, Any] | None, what: str) -> None:
        if rule is not None and not rule.allows(caller.auth, docs.from_item(item) if item is not None else None):
            raise WxError(PERMISSION_DENIED, f"permission denied: the collection's rule does not let you {what}")

    def _readable(self, caller: Caller, name: str, cond: Any, now: float) -> tuple[Any, Rule | None]:
        """The query's condition narrowed by the read rule's equalities, and the rule to check each document
        against (None: a server caller)."""
        rule = self._rule(caller, name, "read")
        if rule is None:
            return cond, None
        eq = rule.equalities(caller.auth)
        if eq == {} and not rule.allows(caller.auth, None):
            raise WxError(PERMISSION_DENIED, "permission denied: the collection's rule does not let you read it")
        if eq:
            narrow = wxquery.compile_query(eq, now)
            cond = narrow if cond is None else And(cond, narrow)
        return cond, rule

    # -- collections ------------------------------------------------------------------------------------

    async def create(self, caller: Caller, name: Any) -> None:
        """createCollection: a table keyed by `_id`, recording its changes (for watch)."""
        if caller.client:
            raise WxError(PERMISSION_DENIED, "permission denied: collections are created by the server")
        await self.collection_access(caller, name)
        try:
            await self.db.create_table(caller.ns, {
                "TableName": name, "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "_id", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "_id", "KeyType": "HASH"}]})
        except DbError as e:
            if e.kind == "ResourceInUseException":
                raise WxError(REQUEST_FAILED, f"collection {name} already exists") from None
            raise WxError(INVALID_PARAM, e.message) from None
        await self.db.set_changes(caller.ns, name, True)

    async def collection_access(self, caller: Caller, name: Any) -> None:
        """A server caller may create a collection it could write (a function: one granted write)."""
        if not isinstance(name, str) or not name:
            raise WxError(INVALID_PARAM, "collection name must be a non-empty string")
        grants = await self.grants.of(caller.ns, caller.key.owner) if caller.key.owner is not None else {}
        refusal = access.allowed(caller.key, access.WRITE, [name], grants)
        if refusal is not None:
            raise WxError(PERMISSION_DENIED, f"permission denied: {refusal}")

    # -- documents --------------------------------------------------------------------------------------

    def _new_item(self, caller: Caller, data: Any, now: float, doc_id: str | None = None) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise WxError(INVALID_PARAM, "data must be an object")
        if caller.client and "_openid" in data:
            raise WxError(INVALID_PARAM, "_openid is set by the server: do not send it")
        item = docs.to_item({k: v for k, v in data.items() if k != "_id"}, now)
        given = data.get("_id")
        if given is not None and doc_id is not None and given != doc_id:
            raise WxError(INVALID_PARAM, "data._id differs from the document's id")
        doc_id = doc_id or given or docs.new_id(now)
        if not isinstance(doc_id, str) or not doc_id:
            raise WxError(INVALID_PARAM, "_id must be a non-empty string")
        item["_id"] = {"S": doc_id}
        if caller.client:
            item["_openid"] = {"S": caller.openid}
        return item

    async def add(self, caller: Caller, name: Any, data: Any) -> str:
        t = await self.collection(caller, name, access.WRITE)
        now = self.clock()
        item = self._new_item(caller, data, now)
        self._check(caller, self._rule(caller, t.name, "write"), item, "add this document")
        doc_id = item["_id"]["S"]
        w = writes.Write(t, _id_key(t, doc_id), Func("attribute_not_exists", (PathRef(("_id",)),)),
                         make=lambda _old: item, key={"_id": item["_id"]})
        try:
            await self.db.write_one(caller.ns, w)
        except ConditionFailed:
            raise WxError(REQUEST_FAILED, f"duplicate key: a document with _id {doc_id!r} already exists") from None
        return str(doc_id)

    async def get(self, caller: Caller, name: Any, doc_id: Any, field: Any = None) -> dict[str, Any] | None:
        t = await self.collection(caller, name, access.READ)
        k = _id_key(t, doc_id)
        proj = wxquery.projection(field)
        item = await self.db.storage.read(lambda c: rows.fetch(c, t.id, k))
        if item is None:
            return None
        self._check(caller, self._rule(caller, t.name, "read"), item, "read this document")
        return docs.from_item(wxquery.project(item, proj))

    async def set(self, caller: Caller, name: Any, doc_id: Any, data: Any) -> tuple[int, int]:
        """(updated, created)"""
        t = await self.collection(caller, name, access.WRITE)
        now = self.clock()
        item = self._new_item(caller, data, now, doc_id)
        rule = self._rule(caller, t.name, "write")

        def make(old: dict[str, Any] | None) -> dict[str, Any]:
            if old is not None:
                self._check(caller, rule, old, "replace this document")
            self._check(caller, rule, item, "write this document")
            return item

        old, _ = await self.db.write_one(caller.ns, writes.Write(t, _id_key(t, doc_id), make=make,
                                                                 key={"_id": item["_id"]}))
        return (1, 0) if old is not None else (0, 1)

    async def update(self, caller: Caller, name: Any, doc_id: Any, data: Any) -> int:
        t = await self.collection(caller, name, access.WRITE)
        w = self._updater(caller, t, data, _exists(), _id_key(t, doc_id), {"_id": {"S": doc_id}})
        try:
            await self.db.write_one(caller.ns, w)
        except ConditionFailed:
            return 0
        return 1

    async def remove(self, caller: Caller, name: Any, doc_id: Any) -> int:
        t = await self.collection(caller, name, access.WRITE)
        w = self._remover(caller, t, _exists(), _id_key(t, doc_id), {"_id": {"S": doc_id}})
        try:
            await self.db.write_one(caller.ns, w)
        except ConditionFailed:
            return 0
        return 1

    def _updater(self, caller: Caller, t: TableDef, data: Any, cond: Any, k: rows.RowKey,
                 key: dict[str, Any]) -> writes.Write:
        try:
            changes = wxquery.flatten_update(data, ("_id", "_openid") if caller.client else ("_id",))
        except Invalid as e:
            raise WxError(BAD_COMMAND, e.message) from None
        rule = self._rule(caller, t.name, "write")
        now = self.clock()

        def make(old: dict[str, Any] | None) -> dict[str, Any]:
            self._check(caller, rule, old, "update this document")
            new = evaluate.apply_update(wxquery.compile_update(changes, old, now), old, ("_id",))
            if values.item_size(new) > values.MAX_ITEM:
                raise WxError(INVALID_PARAM, f"the document would be larger than {values.MAX_ITEM // 1024} KB")
            self._check(caller, rule, new, "write this document")
            return new

        return writes.Write(t, k, cond, make=make, key=key)

    def _remover(self, caller: Caller, t: TableDef, cond: Any, k: rows.RowKey, key: dict[str, Any]) -> writes.Write:
        rule = self._rule(caller, t.name, "write")

        def make(old: dict[str, Any] | None) -> None:
            self._check(caller, rule, old, "remove this document")
            return None

        return writes.Write(t, k, cond, make=make, deletes=True, key=key)

    # -- queries ----------------------------------------------------------------------------------------

    def matcher(self, caller: Caller, t: TableDef, where: Any) -> Callable[[dict[str, Any]], bool]:
        """Does an item match the query and the caller's read rule?"""
        now = self.clock()
        try:
            cond = wxquery.compile_query(where, now)
        except Invalid as e:
            raise WxError(BAD_COMMAND, e.message) from None
        cond, rule = self._readable(caller, t.name, cond, now)

        def keep(item: dict[str, Any]) -> bool:
            if cond is not None and not evaluate.check(cond, item):
                return False
            return rule is None or rule.allows(caller.auth, docs.from_item(item))

        return keep

    @staticmethod
    def sort(found: list[dict[str, Any]], order: list[tuple[str, str]] | None) -> None:
        for name, direction in reversed(order or []):
            path = wxquery.query_path(wxquery.split_path(name))
            found.sort(key=lambda i, p=path: docs.sort_key(evaluate.get_path(i, p)), reverse=direction == "desc")

    async def found(self, caller: Caller, t: TableDef, q: Query, want: int | None) -> list[dict[str, Any]]:
        """The documents (items) matching the query and the caller's read rule, sorted when asked."""
        keep = self.matcher(caller, t, q.where)
        ids = wxquery.id_lookup(q.where)
        if ids is not None:
            keys = [_id_key(t, i) for i in ids]
            got = await self.db.storage.read(lambda c: [rows.fetch(c, t.id, k) for k in keys])
            found = [i for i in got if i is not None and keep(i)]
        else:
            found = await reads.matching(self.db, t, keep, None if q.order else want)
        if q.order:
            if len(found) > MAX_SORTED:
                raise WxError(REQUEST_FAILED, f"orderBy sorts at most {MAX_SORTED} matching documents: narrow the "
                                              "query")
            self.sort(found, q.order)
        return found

    def _page(self, caller: Caller, q: Query) -> tuple[int, int]:
        skip, limit = q.skip, q.limit
        if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
            raise WxError(INVALID_PARAM, "skip must be a non-negative integer")
        if limit is None:
            limit = caller.limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise WxError(INVALID_PARAM, "limit must be a positive integer")
        return skip, min(limit, caller.limit)

    async def find(self, caller: Caller, name: Any, q: Query) -> list[dict[str, Any]]:
        t = await self.collection(caller, name, access.READ)
        skip, limit = self._page(caller, q)
        try:
            proj = wxquery.projection(q.field)
        except Invalid as e:
            raise WxError(INVALID_PARAM, e.message) from None
        found = await self.found(caller, t, q, skip + limit)
        return [docs.from_item(wxquery.project(i, proj)) for i in found[skip:skip + limit]]

    async def count(self, caller: Caller, name: Any, where: Any) -> int:
        t = await self.collection(caller, name, access.READ)
        return len(await self.found(caller, t, Query(where=where), None))

    async def update_where(self, caller: Caller, name: Any, where: Any, data: Any) -> int:
        t = await self.collection(caller, name, access.WRITE)
        return await self._each(caller, t, where, lambda cond, k, key: self._updater(caller, t, data, cond, k, key))

    async def remove_where(self, caller: Caller, name: Any, where: Any) -> int:
        t = await self.collection(caller, name, access.WRITE)
        return await self._each(caller, t, where, lambda cond, k, key: self._remover(caller, t, cond, k, key))

    async def _each(self, caller: Caller, t: TableDef, where: Any,
                    make: Callable[[Any, rows.RowKey, dict[str, Any]], writes.Write]) -> int:
        """Apply a write to every matching document, a chunk per transaction; each document is checked
        against the query again inside its write, so one changed meanwhile is left alone."""
        found = await self.found(caller, t, Query(where=where), None)
        cond = wxquery.compile_query(where, self.clock())
        done = 0
        for i in range(0, len(found), WRITE_CHUNK):
            ws = []
            for item in found[i:i + WRITE_CHUNK]:
                ws.append(make(And(_exists(), cond) if cond is not None else _exists(), rows.item_key(t.key, item),
                               {"_id": item["_id"]}))
            done += await self.db.write_items(caller.ns, lambda c, ws=ws: _run_each(c, caller.ns, ws, self.clock()),
                                              [w.lock() for w in ws])
            if t.stream_view or t.changes:
                self.db.changed()
        return done


def _run_each(c: Connection, ns: str, ws: list[writes.Write], now: float) -> int:
    n = 0
    for w in ws:
        try:
            writes.run(c, ns, w, now)
        except ConditionFailed:
            continue
        except WxError as e:
            if e.code == PERMISSION_DENIED:
                continue
            raise
        n += 1
    return n

