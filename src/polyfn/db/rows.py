"""Items ↔ rows: key extraction and checks, index rows, change records; the statements one write runs.

Everything here runs inside a storage transaction (`storage.Storage.write`/`read`), on a synchronous
SQLAlchemy `Connection`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
from sqlalchemy import bindparam, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from polyfn.db import values
from polyfn.db.errors import Invalid
from polyfn.db.schema import Index, Key, TableDef
from polyfn.db.storage import FEED_ORDER_LOCK, db_changes, db_index_rows, db_items, driver_of, lock_key

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()
NOT_SCHEMA = "The provided key element does not match the schema"


def encode(item: dict[str, Any]) -> str:
    return _enc.encode(item).decode()


def decode(text: str | bytes) -> dict[str, Any]:
    return _dec.decode(text)  # type: ignore[no-any-return]


# -- keys ---------------------------------------------------------------------------------------------------


class RowKey(msgspec.Struct, frozen=True):
    h: int
    pk: bytes
    sk: bytes

    def lock(self, tid: str) -> int:
        return lock_key(tid, self.pk, self.sk)


def _key_value(item: dict[str, Any], name: str, want: str, index: str | None = None) -> dict[str, Any] | None:
    v = item.get(name)
    if v is None:
        return None
    t = values.type_of(v)
    if t != want:
        if index:
            raise Invalid(f"One or more parameter values were invalid: Type mismatch for Index Key {name} Expected: "
                          f"{want} Actual: {t} IndexName: {index}")
        raise Invalid(f"One or more parameter values were invalid: Type mismatch for key {name} expected: {want} "
                      f"actual: {t}")
    if (t == "S" and v["S"] == "") or (t == "B" and v["B"] == ""):
        kind = "string" if t == "S" else "binary"
        if index:
            raise Invalid(f"One or more parameter values are not valid. A value specified for a secondary index key "
                          f"is not supported. The AttributeValue for a key attribute cannot contain an empty {kind} "
                          f"value. IndexName: {index}, IndexKey: {name}")
        raise Invalid(f"One or more parameter values are not valid. The AttributeValue for a key attribute cannot "
                      f"contain an empty {kind} value. Key: {name}")
    return v


def _plain_key_bytes(v: Any, want: str | None) -> bytes | None:
    """A checked key value's bytes when it is a non-empty string or a number of the wanted type (the usual keys:
    `item_key` checks nothing more of them), else None (the full checks then say what is wrong, if anything)."""
    if type(v) is dict and len(v) == 1:
        if want == "S":
            x = v.get("S")
            if type(x) is str and x:
                return x.encode()
        elif want == "N":
            x = v.get("N")
            if type(x) is str:
                return values._number_key(x)
    return None


def item_key(key: Key, item: dict[str, Any]) -> RowKey:
    """The row key of an item being written (every key attribute present, of its type)."""
    pk = _plain_key_bytes(item.get(key.hash), key.hash_type)
    if pk is not None and len(pk) <= values.MAX_HASH_KEY:
        if key.range is None:
            return RowKey(values.segment_hash(pk), pk, b"")
        sk = _plain_key_bytes(item.get(key.range), key.range_type or "S")
        if sk is not None and len(sk) <= values.MAX_RANGE_KEY:
            return RowKey(values.segment_hash(pk), pk, sk)
    hv = _key_value(item, key.hash, key.hash_type)
    if hv is None:
        raise Invalid(f"One or more parameter values were invalid: Missing the key {key.hash} in the item")
    pk = values.key_bytes(hv)
    if len(pk) > values.MAX_HASH_KEY:
        raise Invalid("One or more parameter values were invalid: Size of hashkey has exceeded the maximum size "
                      f"limit of{values.MAX_HASH_KEY} bytes")
    sk = b""
    if key.range is not None:
        rv = _key_value(item, key.range, key.range_type or "S")
        if rv is None:
            raise Invalid(f"One or more parameter values were invalid: Missing the key {key.range} in the item")
        sk = values.key_bytes(rv)
        if len(sk) > values.MAX_RANGE_KEY:
            raise Invalid("One or more parameter values were invalid: Aggregated size of all range keys has exceeded "
                          f"the size limit of {values.MAX_RANGE_KEY} bytes")
    return RowKey(values.segment_hash(pk), pk, sk)


def request_key(t: TableDef, key: Any) -> tuple[RowKey, dict[str, Any]]:
    """A `Key` parameter (GetItem, UpdateItem, DeleteItem …): exactly the table's key attributes."""
    if not isinstance(key, dict):
        raise Invalid(NOT_SCHEMA)
    key = values.check_item(key, "Key")
    names = t.key.names()
    if set(key) != set(names):
        raise Invalid(NOT_SCHEMA)
    for n in names:
        want = t.key.hash_type if n == t.key.hash else t.key.range_type
        if values.type_of(key[n]) != want:
            raise Invalid(NOT_SCHEMA)
    return item_key(t.key, key), key


def key_attrs(key: Key, item: dict[str, Any]) -> dict[str, Any]:
    return {n: item[n] for n in key.names() if n in item}


# -- index rows -------------------------------------------------------------------------------------------


def index_key(t: TableDef, ix: Index, item: dict[str, Any]) -> tuple[bytes, bytes] | None:
    """(ipk, isk) of the item in `ix`, or None when the item lacks the index's key (a sparse index)."""
    hv = _key_value(item, ix.key.hash, ix.key.hash_type, ix.name)
    rv = _key_value(item, ix.key.range, ix.key.range_type or "S", ix.name) if ix.key.range else {"S": ""}
    if hv is None or rv is None:
        return None
    return values.key_bytes(hv), values.key_bytes(rv) if ix.key.range else b""


def projected(t: TableDef, ix: Index, item: dict[str, Any]) -> dict[str, Any]:
    keep = ix.projects(t.key)
    if keep is None or ix.local:  # LSIs keep the whole item: reads outside the projection fetch it (as DynamoDB)
        return item
    return {k: v for k, v in item.items() if k in keep}


def check_index_keys(t: TableDef, item: dict[str, Any]) -> None:
    for ix in t.indexes:
        index_key(t, ix, item)


# -- statements --------------------------------------------------------------------------------------------


class Prepared:
    """A statement compiled once per dialect and run with positional parameters straight through the driver:
    SQLAlchemy's per-execution work (cache key, compiled-cache lookup, bind processing, its execution context
    and result objects) cost more than SQLite's own on the single-item hot path. On SQLite the statement goes
    to the DB-API connection itself, inside the transaction the `Connection` began; elsewhere through
    `exec_driver_sql`."""

    __slots__ = ("_by_dialect", "_positional", "make", "names")

    def __init__(self, make: Any, names: tuple[str, ...] = ()):
        self.make = make  # Connection → the statement (built lazily: some depend on the dialect)
        self.names = names  # the parameters' order `run` takes them in
        self._by_dialect: dict[str, tuple[str, tuple[str, ...]]] = {}
        # dialect → (SQL, None when the statement takes `names` in their order, else where each comes from)
        self._positional: dict[str, tuple[str, tuple[int, ...] | None]] = {}

    def run(self, conn: Connection, args: tuple[Any, ...]) -> None:
        """Run it with the values of `names`, in that order (no dict to build and reorder: the single-item write)."""
        found = self._positional.get(conn.dialect.name)
        if found is None:
            sql, order = self._sql(conn)
            perm = tuple(self.names.index(k) for k in order)  # (every name of the statement is one of `names`)
            found = self._positional[conn.dialect.name] = (sql, None if perm == tuple(range(len(self.names))) else perm)
        sql, perm = found
        if perm is not None:
            args = tuple([args[i] for i in perm])
        if conn.dialect.name == "sqlite":
            driver_of(conn).execute(sql, args)
        else:
            conn.exec_driver_sql(sql, args)

    def _sql(self, conn: Connection) -> tuple[str, tuple[str, ...]]:
        found = self._by_dialect.get(conn.dialect.name)
        if found is None:
            compiled = self.make(conn).compile(dialect=conn.dialect)
            found = self._by_dialect[conn.dialect.name] = (compiled.string, tuple(compiled.positiontup or ()))
        return found

    def __call__(self, conn: Connection, params: dict[str, Any]) -> None:
        sql, order = self._sql(conn)
        args = tuple(params[k] for k in order)
        if conn.dialect.name == "sqlite":
            driver_of(conn).execute(sql, args)
        else:
            conn.exec_driver_sql(sql, args)

    def first(self, conn: Connection, params: dict[str, Any]) -> Any:
        """The statement's first row, or None."""
        sql, order = self._sql(conn)
        args = tuple(params[k] for k in order)
        if conn.dialect.name == "sqlite":
            return driver_of(conn).execute(sql, args).fetchone()
        return conn.exec_driver_sql(sql, args).first()


def fetch(conn: Connection, tid: str, k: RowKey) -> dict[str, Any] | None:
    row = _GET.first(conn, {"tid": tid, "h": k.h, "pk": k.pk, "sk": k.sk})
    return decode(row[0]) if row is not None else None


def _bind_get() -> Any:
    c = db_items.c
    return select(c.item).where(c.tid == bindparam("tid"), c.h == bindparam("h"), c.pk == bindparam("pk"),
                                c.sk == bindparam("sk"))


_GET = Prepared(lambda conn: _bind_get())


def _insert(conn: Connection) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)


def expiry(t: TableDef, item: dict[str, Any]) -> float | None:
    """The item's TTL expiry (epoch seconds) when the table has TTL on and the attribute is a number."""
    if t.ttl_attribute is None:
        return None
    v = item.get(t.ttl_attribute)
    if v is None or "N" not in v:
        return None
    try:
        return float(v["N"])
    except (ValueError, OverflowError):
        return None


def _upsert(conn: Connection) -> Any:
    ins = _insert(conn)(db_items).values(**{c: bindparam(c) for c in ("tid", "h", "pk", "sk", "item", "size",
                                                                        "expires")})
    return ins.on_conflict_do_update(index_elements=["tid", "h", "pk", "sk"],
                                     set_={"item": ins.excluded.item, "size": ins.excluded.size,
                                           "expires": ins.excluded.expires})


_UPSERT_ITEM = Prepared(_upsert, ("tid", "h", "pk", "sk", "item", "size", "expires"))


def store(conn: Connection, t: TableDef, k: RowKey, item: dict[str, Any], old: dict[str, Any] | None,
          size: int) -> None:
    """Write `item` (replacing `old`) and its index rows."""
    _UPSERT_ITEM.run(conn, (t.id, k.h, k.pk, k.sk, _enc.encode(item).decode(), size,
                            None if t.ttl_attribute is None else expiry(t, item)))
    if t.indexes:
        if old is not None:
            drop_index_rows(conn, t, k, old)
        store_index_rows(conn, t, k, item)


def store_index_rows(conn: Connection, t: TableDef, k: RowKey, item: dict[str, Any]) -> None:
    for ix in t.indexes:
        ik = index_key(t, ix, item)
        if ik is None:
            continue
        row = projected(t, ix, item)
        ih = k.h if ix.local else values.segment_hash(ik[0])
        conn.execute(db_index_rows.insert().values(tid=t.id, ix=ix.name, h=ih, ipk=ik[0], isk=ik[1], pk=k.pk,
                                                   sk=k.sk, item=encode(row), size=values.item_size(row)))


def drop_index_rows(conn: Connection, t: TableDef, k: RowKey, old: dict[str, Any]) -> None:
    c = db_index_rows.c
    for ix in t.indexes:
        ik = index_key(t, ix, old)
        if ik is None:
            continue
        ih = k.h if ix.local else values.segment_hash(ik[0])
        conn.execute(delete(db_index_rows).where(c.tid == t.id, c.ix == ix.name, c.h == ih, c.ipk == ik[0],
                                                 c.isk == ik[1], c.pk == k.pk, c.sk == k.sk))


def _bind_delete() -> Any:
    c = db_items.c
    return delete(db_items).where(c.tid == bindparam("tid"), c.h == bindparam("h"), c.pk == bindparam("pk"),
                                  c.sk == bindparam("sk"))


_DELETE = Prepared(lambda conn: _bind_delete())


def remove(conn: Connection, t: TableDef, k: RowKey, old: dict[str, Any]) -> None:
    _DELETE(conn, {"tid": t.id, "h": k.h, "pk": k.pk, "sk": k.sk})
    if t.indexes:
        drop_index_rows(conn, t, k, old)


# -- change records ---------------------------------------------------------------------------------------


def record_change(conn: Connection, ns: str, t: TableDef, old: dict[str, Any] | None, new: dict[str, Any] | None,
                  now: float, ttl: bool = False) -> None:
    """A change of one item, for the table's stream and change triggers (same transaction as the change)."""
    if not t.stream_view and not t.changes:
        return
    if old is None and new is None:
        return
    name = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
    src = new if new is not None else old
    assert src is not None
    rec: dict[str, Any] = {"eventID": uuid.uuid4().hex, "eventName": name, "keys": key_attrs(t.key, src),
                           "time": now}
    if new is not None:
        rec["new"] = new
        rec["newSize"] = values.item_size(new)
    if old is not None:
        rec["old"] = old
    if ttl:
        rec["ttl"] = True
    if conn.dialect.name == "postgresql" and not conn.info.get("feed_locked"):
        # Sequence numbers are taken in insert order but become visible in commit order; a reader that saw
        # seq 11 before seq 10 committed would skip 10 for good. Holding this lock from the first change
        # row to the commit makes the two orders one, on every node (SQLite has one writer anyway).
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": FEED_ORDER_LOCK})
        conn.info["feed_locked"] = True
    _CHANGE(conn, {"ns": ns, "tname": t.name, "tid": t.id, "record": encode(rec),
                           "created_at": now or time.time()})


_CHANGE = Prepared(lambda conn: db_changes.insert().values(
    **{c: bindparam(c) for c in ("ns", "tname", "tid", "record", "created_at")}))
