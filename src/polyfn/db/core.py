"""The document database's core: tables and single-item operations, with DynamoDB's request model.

Requests and results are the plain dicts of DynamoDB's data model (`{"TableName": …, "Item": {...}}`) —
the model every face maps onto; no face is known here. `Database` owns the table catalog (cached; on a
shared PostgreSQL re-read when older than `CATALOG_TTL`) and runs every operation as one storage
transaction (`storage.Storage`). Queries and scans are in `reads.py`, batches and transactions in
`multi.py`, TTL expiry in `ttl.py`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy import text as sql
from sqlalchemy.engine import Connection

from polyfn.db import evaluate, rows, schema, values, writes
from polyfn.db.errors import InUse, Invalid, NoSuchTable, QuotaExceeded
from polyfn.db.expr import Names
from polyfn.db.schema import TableDef
from polyfn.db.storage import Storage, db_index_rows, db_items, db_tables, lock_key, namespace_use

T = TypeVar("T")
CATALOG_TTL = 2.0  # seconds a cached definition is trusted when other nodes share the database


def _def(row: Any) -> TableDef:
    import msgspec

    return msgspec.json.decode(row.spec, type=TableDef)


def capacity(req: dict[str, Any], table: str, units: float | Callable[[], float]) -> dict[str, Any]:
    """ConsumedCapacity when the request asked for it; `units` may be a function (an item's size is summed only
    then)."""
    if req.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
        return {"ConsumedCapacity": {"TableName": table, "CapacityUnits": units() if callable(units) else units}}
    return {}


def write_units(size: int) -> float:
    return float(max(1, -(-size // 1024)))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, -(-size // 4096))
    return float(units if consistent else units / 2)


def _return_values(req: dict[str, Any], allowed: tuple[str, ...]) -> str:
    rv = req.get("ReturnValues") or "NONE"
    if rv not in allowed:
        if len(allowed) == 2:
            raise Invalid("ReturnValues can only be ALL_OLD or NONE")
        raise Invalid(f"1 validation error detected: Value '{rv}' at 'returnValues' failed to satisfy constraint: "
                      "Member must satisfy enum value set: [ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, UPDATED_NEW]")
    return str(rv)


class Database:
    """Create with `await Database.open(url, region)`; every method takes the caller's namespace."""

    def __init__(self, storage: Storage, region: str = "us-east-1", clock: Callable[[], float] = time.time):
        self.storage = storage
        self.region = region
        self.clock = clock
        self._catalog: dict[tuple[str, str], tuple[TableDef, float]] = {}
        self.shared = storage.dialect == "postgresql"
        self.on_change: Callable[[], None] | None = None  # the change feed wakes up after writes that record
        self.quotas: Callable[[str], Any] | None = None  # namespace → tenancy.Quotas (db_items, db_bytes)

    @classmethod
    async def open(cls, url: str, region: str = "us-east-1") -> Database:
        return cls(await Storage.open(url), region)

    async def close(self) -> None:
        await self.storage.close()

    # -- catalog ------------------------------------------------------------------------------------------

    def cached(self, ns: str, name: Any) -> TableDef | None:
        """The table's definition when the catalog may answer without a read (embedded: always, once read)."""
        if self.shared or type(name) is not str:
            return None
        hit = self._catalog.get((ns, name))
        return hit[0] if hit is not None else None

    async def table(self, ns: str, name: Any) -> TableDef:
        if not isinstance(name, str) or not name:
            raise Invalid("1 validation error detected: Value null at 'tableName' failed to satisfy constraint: "
                          "Member must not be null")
        hit = self._catalog.get((ns, name))
        now = time.monotonic()
        if hit is not None and (not self.shared or now - hit[1] < CATALOG_TTL):
            return hit[0]
        found = await self.storage.read(lambda c: c.execute(
            select(db_tables.c.spec).where(db_tables.c.ns == ns, db_tables.c.name == name)).first())
        if found is None:
            self._catalog.pop((ns, name), None)
            raise NoSuchTable(f"Requested resource not found: Table: {name} not found")
        t = _def(found)
        self._catalog[(ns, name)] = (t, now)
        return t

    async def _save_def(self, ns: str, t: TableDef, extra: Callable[[Connection], None] | None = None) -> None:
        import msgspec

        def fn(c: Connection) -> None:
            n = c.execute(update(db_tables).where(db_tables.c.ns == ns, db_tables.c.name == t.name,
                                                  db_tables.c.id == t.id)
                          .values(spec=msgspec.json.encode(t).decode())).rowcount
            if n != 1:
                raise NoSuchTable(f"Requested resource not found: Table: {t.name} not found")
            if extra is not None:
                extra(c)

        await self.storage.write(fn)
        self._catalog[(ns, t.name)] = (t, time.monotonic())

    # -- tables -----------------------------------------------------------------------------------------

    async def create_table(self, ns: str, req: dict[str, Any]) -> dict[str, Any]:
        import msgspec

        t = schema.create(req, uuid.uuid4().hex, self.clock())

        def fn(c: Connection) -> bool:
            if c.execute(select(db_tables.c.id).where(db_tables.c.ns == ns, db_tables.c.name == t.name)).first():
                return False
            c.execute(db_tables.insert().values(ns=ns, name=t.name, id=t.id, spec=msgspec.json.encode(t).decode(),
                                                created_at=t.created_at))
            return True

        if not await self.storage.write(fn):
            raise InUse(f"Table already exists: {t.name}")
        self._catalog[(ns, t.name)] = (t, time.monotonic())
        return {"TableDescription": t.describe(self.region)}

    async def describe_table(self, ns: str, req: dict[str, Any]) -> dict[str, Any]:
        t = await self.table(ns, req.get("TableName"))
        count, size = await self.storage.read(lambda c: self._stats(c, t))
        return {"Table": t.describe(self.region, count, size)}

    @staticmethod
    def _stats(c: Connection, t: TableDef) -> tuple[int, int]:
        from sqlalchemy import func

        row = c.execute(select(func.count(), func.coalesce(func.sum(db_items.c.size), 0))
                        .where(db_items.c.tid == t.id)).first()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def list_tables(self, ns: str, req: dict[str, Any]) -> dict[str, Any]:
        limit = req.get("Limit", 100)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise Invalid(f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: "
                          "Member must have value less than or equal to 100")
        start = req.get("ExclusiveStartTableName")
        q = select(db_tables.c.name).where(db_tables.c.ns == ns).order_by(db_tables.c.name).limit(limit + 1)
        if start:
            q = q.where(db_tables.c.name > start)
        names = [r[0] for r in await self.storage.read(lambda c: c.execute(q).all())]
        out: dict[str, Any] = {"TableNames": names[:limit]}
        if len(names) > limit:
            out["LastEvaluatedTableName"] = names[limit - 1]
        return out

    async def delete_table(self, ns: str, req: dict[str, Any]) -> dict[str, Any]:
        t = await self.table(ns, req.get("TableName"))
        if t.deletion_protection:
            raise Invalid("Resource cannot be deleted as it is currently protected against deletion. Disable "
                          "deletion protection first.")

        def fn(c: Connection) -> tuple[int, int]:
            stats = self._stats(c, t)
            if c.execute(delete(db_tables).where(db_tables.c.ns == ns, db_tables.c.id == t.id)).rowcount != 1:
                raise NoSuchTable(f"Requested resource not found: Table: {t.name} not found")
            c.execute(delete(db_items).where(db_items.c.tid == t.id))
            c.execute(delete(db_index_rows).where(db_index_rows.c.tid == t.id))
            return stats

        count, size = await self.storage.write(fn)
        self._catalog.pop((ns, t.name), None)
        return {"TableDescription": t.describe(self.region, count, size, status="DELETING")}

    async def update_table(self, ns: str, req: dict[str, Any]) -> dict[str, Any]:
        t = await self.table(ns, req.get("TableName"))
        new = schema.update(t, req, self.clock())
        added = [ix for ix in new.indexes if ix.name not in {i.name for i in t.indexes}]
        dropped = [ix for ix in t.indexes if ix.name not in {i.name for i in new.indexes}]

        def extra(c: Connection) -> None:
            for ix in dropped:
                c.execute(delete(db_index_rows).where(db_index_rows.c.tid == t.id, db_index_rows.c.ix == ix.name))
            if added:  # backfill the new indexes from every item
                only = TableDef(**{**{f: getattr(new, f) for f in new.__struct_fields__}, "indexes": added})
                for r in c.execute(select(db_items.c.h, db_items.c.pk, db_items.c.sk, db_items.c.item)
                                   .where(db_items.c.tid == t.id)).all():
                    item = rows.decode(r.item)
                    try:
                        rows.store_index_rows(c, only, rows.RowKey(r.h, r.pk, r.sk), item)
                    except Invalid:
                        continue  # an item whose attribute does not fit the new key type is left out

        await self._save_def(ns, new, extra)
        return {"TableDescription": new.describe(self.region)}

    async def update_ttl(self, ns: str, req: dict[str, Any]) -> dict[str, Any]:
        t = await self.table(ns, req.get("TableName"))
        spec = req.get("TimeToLiveSpecification")
        if not isinstance(spec, dict) or not isinstance(spec.get("AttributeName"), str) or "Enabled" not in spec:
            raise Invalid("1 validation error detected: Value null at 'timeToLiveSpecification' failed to satisfy "
                          "constraint: Member must not be null")
        enabled, attr = bool(spec["Enabled"]), spec["AttributeName"]
        if enabled and t.ttl_attribute is not None:
            raise Invalid("TimeToLive is already enabled")
        if not enabled and t.ttl_attribute is None:
            raise Invalid("TimeToLive is already disabled")
        if not enabled and t.ttl_attribute != attr:
            raise Invalid("TimeToLive is active on a different AttributeName: current AttributeName is "
                          f"{t.ttl_attribute}")
        import msgspec

        new = msgspec.structs.replace(t, ttl_attribute=attr if enabled else None)

        def extra(c: Connection) -> None:  # every item's expiry, from the attribute now named
            for r in c.execute(select(db_items.c.h, db_items.c.pk, db_items.c.sk, db_items.c.item)
                               .where(db_items.c.tid == t.id)).all():
                c.execute(update(db_items).where(db_items.c.tid == t.id, db_items.c.h == r.h, db_items.c.pk == r.pk,
                                                 db_items.c.sk == r.sk)
                          .values(expires=rows.expiry(new, rows.decode(r.item))))

        await self._save_def(ns, new, extra)
        return {"TimeToLiveSpecification": {"Enabled": enabled, "AttributeName": attr}}

    async def describe_ttl(self, ns: str, req: dict[str, Any]) -> dict[str, Any]:
        t = await self.table(ns, req.get("TableName"))
        if t.ttl_attribute is None:
            return {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}
        return {"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED", "AttributeName": t.ttl_attribute}}

    async def set_changes(self, ns: str, name: str, on: bool) -> None:
        """Record the table's changes for change triggers (even when it has no stream)."""
        import msgspec

        t = await self.table(ns, name)
        if t.changes != on:
            await self._save_def(ns, msgspec.structs.replace(t, changes=on))

    # -- single items ---------------------------------------------------------------------------------------

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def write_items(self, ns: str, fn: Callable[[Connection], T], locks: list[int], small: bool = False) -> Awaitable[T]:
        """Run a write of items of namespace `ns` (`fn`, in one transaction; `locks`: the keys it writes, for
        PostgreSQL's advisory locks — SQLite has one writer, and the callers leave them out there); when the namespace has a database
        quota, its use is read before and after (`db_use`, kept by triggers) in the same transaction, and a
        write that grows it past the quota is undone: `LimitExceeded` (deletes and shrinking writes always pass).
        On PostgreSQL a growing write that leaves less than `_headroom` under the quota reads the use again
        under the namespace's advisory lock, so concurrent writers to different tables (through any node of a
        cluster) cannot all take its last free items; farther from the quota they do not queue for it."""
        q = self.quotas(ns) if self.quotas is not None else None
        if q is None or (q.db_items is None and q.db_bytes is None):
            return self.storage.write(fn, locks, small=small)

        def guarded(c: Connection) -> T:
            before = namespace_use(c, ns)
            out = fn(c)
            after = namespace_use(c, ns)
            adds = (after[0] - before[0], after[1] - before[1])  # what this write adds (items, bytes)
            if c.dialect.name == "postgresql" and any(
                    a > 0 and lim is not None and lim - used < _headroom(lim, i)
                    for i, (a, lim, used) in enumerate(zip(adds, (q.db_items, q.db_bytes), after, strict=True))):
                # Near the quota: concurrent writes to other tables of the namespace (through any node) are not
                # in `after` until they commit, so a growing write takes the namespace's lock, its last step
                # before committing, and reads again: each one sees the growth committed before it.
                c.execute(sql("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key("db-quota", ns)})
                after = namespace_use(c, ns)
            for i, (quota, limit) in enumerate((("db_items", q.db_items), ("db_bytes", q.db_bytes))):
                if limit is not None and adds[i] > 0 and after[i] > limit:
                    raise QuotaExceeded(ns, quota, limit, after[i] - adds[i], adds[i])
            return out

        return self.storage.write(guarded, locks, small=small)

    async def write_one(self, ns: str, w: writes.Write) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        now = self.clock()
        out = await self.write_items(ns, lambda c: writes.run(c, ns, w, now), [w.lock()] if self.shared else [],
                                     small=True)
        if w.t.stream_view or w.t.changes:
            self.changed()
        return out

    async def put_item(self, ns: str, req: dict[str, Any]) -> dict[str, Any]:
        t = self.cached(ns, name := req.get("TableName")) or await self.table(ns, name)
        w = writes.prepare_put(t, req)
        rv = _return_values(req, ("NONE", "ALL_OLD"))
        if writes.blind(w, rv == "ALL_OLD"):  # (the common put: one statement, no read of the old item)
            old, new = await self.write_items(ns, lambda c: writes.run_blind(c, w), [w.lock()] if self.shared else [],
                                              small=True)
        else:
            old, new = await self.write_one(ns, w)
        out: dict[str, Any] = {"Attributes": old} if rv == "ALL_OLD" and old is not None else {}
        size = w.size if w.size is not None else values.item_size(new or {})
        out.update(capacity(req, t.name, lambda: write_units(size)))
        return out

    async def get_item(self, ns: str, req: dict[str, Any]) -> dict[str, Any]:
        t = self.cached(ns, name := req.get("TableName")) or await self.table(ns, name)
        k, _ = rows.request_key(t, req.get("Key"))
        proj = None
        if "ExpressionAttributeNames" in req or "ProjectionExpression" in req or "AttributesToGet" in req:
            names = Names(req.get("ExpressionAttributeNames"), None, req.get("ProjectionExpression") is not None)
            proj = writes.projection_of(req, names)
            names.check_unused()
        text = await self.storage.item_text(t.id, k.h, k.pk, k.sk)
        item = rows.decode(text) if text is not None else None
        out: dict[str, Any] = {}
        if item is not None:
            out["Item"] = evaluate.project(item, proj) if proj is not None else item
        out.update(capacity(req, t.name, lambda: read_units(values.item_size(item) if item else 1,
                                                            bool(req.get("ConsistentRead")))))
        return out

    async def delete_item(self, ns: str, req: dict[str, Any]) -> dict[str, Any]:
        t = self.cached(ns, name := req.get("TableName")) or await self.table(ns, name)
        w = writes.prepare_delete(t, req)
        rv = _return_values(req, ("NONE", "ALL_OLD"))
        old, _ = await self.write_one(ns, w)
        out: dict[str, Any] = {"Attributes": old} if rv == "ALL_OLD" and old is not None else {}
        out.update(capacity(req, t.name, write_units(values.item_size(old) if old else 1)))
        return out

    async def update_item(self, ns: str, req: dict[str, Any]) -> dict[str, Any]:
        t = self.cached(ns, name := req.get("TableName")) or await self.table(ns, name)
        w = writes.prepare_update(t, req)
        rv = _return_values(req, ("NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"))
        old, new = await self.write_one(ns, w)
        assert new is not None
        out: dict[str, Any] = {}
        if rv == "ALL_OLD" and old is not None:
            out["Attributes"] = old
        elif rv == "ALL_NEW":
            out["Attributes"] = new
        elif rv in ("UPDATED_OLD", "UPDATED_NEW") and w.paths:
            src = old if rv == "UPDATED_OLD" else new
            got = evaluate.project(src, w.paths) if src is not None else {}
            if got:
                out["Attributes"] = got
        out.update(capacity(req, t.name, lambda: write_units(w.size if w.size is not None else values.item_size(new))))
        return out


def _headroom(limit: int, which: int) -> float:
    """How close to a database quota (0: items, 1: bytes) growing writes take the namespace's lock on
    PostgreSQL: the last tenth of the quota, and at least the last 10,000 items or 1 GiB. Farther away an overshoot
    would need more than that much growth in flight (written, not yet committed) at one instant."""
    return max(limit / 10, 10_000 if which == 0 else 1 << 30)
