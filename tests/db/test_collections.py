"""WeChat's cloud database model on the core, on both engines: documents, queries with db.command's operators,
updates, the get() caps, errors with WeChat's codes, and end users under per-collection rules (the hook the
app platform plugs its rule engine into)."""

from __future__ import annotations

from typing import Any

import pytest

from polyfn.db import docs
from polyfn.db.access import Grants
from polyfn.db.collections import (
    BAD_COMMAND,
    NO_COLLECTION,
    PERMISSION_DENIED,
    REQUEST_FAILED,
    Caller,
    Collections,
    Query,
    WxError,
)
from polyfn.db.core import Database


class Key:
    def __init__(self, scope: str = "admin", owner: str | None = None):
        self.id, self.scope, self.owner = "k1", scope, owner


SERVER = Caller(key=Key())


class OwnerRule:
    """A stand-in for the app platform's compiled rule `doc._openid == auth.openid` (apps/rules.py)."""

    def allows(self, auth: dict[str, Any] | None, doc: dict[str, Any] | None) -> bool:
        return auth is not None and doc is not None and doc.get("_openid") == auth["openid"]

    def equalities(self, auth: dict[str, Any] | None) -> dict[str, Any] | None:
        return {"_openid": auth["openid"]} if auth is not None else None


class Everyone:
    def allows(self, auth: dict[str, Any] | None, doc: dict[str, Any] | None) -> bool:
        return True

    def equalities(self, auth: dict[str, Any] | None) -> dict[str, Any] | None:
        return {}


def user(openid: str, read: Any = None) -> Caller:
    rules = {"read": read or OwnerRule(), "write": OwnerRule()}
    return Caller(openid=openid, auth={"openid": openid}, rules=lambda coll, side: rules[side])


@pytest.fixture
async def cols(db: Database) -> Collections:
    grants = Grants(db.storage)
    await grants.load()
    c = Collections(db, grants, clock=lambda: 1_700_000_000.0)
    await c.create(SERVER, "todos")
    return c


async def test_documents_round_trip(cols: Collections) -> None:
    doc = {"title": "write tests", "done": False, "n": 3, "f": 1.5, "tags": ["a", "b"], "meta": {"p": None},
           "due": {"$date": 1_700_000_123_456}, "at": {"$serverDate": {"offset": 1000}}}
    i = await cols.add(SERVER, "todos", doc)
    assert len(i) == 32 and int(i[8:16], 16) == 1_700_000_000
    got = await cols.get(SERVER, "todos", i)
    assert got == {**doc, "_id": i, "at": {"$date": 1_700_000_001_000}}
    assert await cols.get(SERVER, "todos", "nope") is None
    with pytest.raises(WxError) as e:
        await cols.add(SERVER, "todos", {"_id": i})
    assert e.value.code == REQUEST_FAILED and "duplicate" in e.value.message
    assert await cols.set(SERVER, "todos", i, {"title": "replaced"}) == (1, 0)
    assert await cols.get(SERVER, "todos", i) == {"_id": i, "title": "replaced"}
    assert await cols.set(SERVER, "todos", "fresh", {"x": 1}) == (0, 1)
    assert await cols.remove(SERVER, "todos", "fresh") == 1
    assert await cols.remove(SERVER, "todos", "fresh") == 0
    with pytest.raises(WxError) as e:
        await cols.get(SERVER, "missing", i)
    assert e.value.code == NO_COLLECTION


async def test_queries(cols: Collections) -> None:
    rows = [{"_id": f"d{i}", "n": i, "even": i % 2 == 0, "tags": ["x"] if i < 3 else ["y", "z"],
             "o": {"k": f"v{i % 3}"}, "name": f"Item {i}", "when": {"$date": 1000 * i}} for i in range(10)]
    rows[9].pop("o")
    for r in rows:
        await cols.add(SERVER, "todos", r)

    async def ids(where: Any, **q: Any) -> list[str]:
        return [d["_id"] for d in await cols.find(SERVER, "todos", Query(where=where, **q))]

    assert await ids({"n": {"$gt": 7}}, order=[("n", "asc")]) == ["d8", "d9"]
    assert await ids({"n": {"$and": [{"$gte": 2}, {"$lt": 4}]}}, order=[("n", "desc")]) == ["d3", "d2"]
    assert await ids({"$or": [{"n": 0}, {"n": {"$in": [5, 6]}}]}, order=[("n", "asc")]) == ["d0", "d5", "d6"]
    assert await ids({"tags": "z", "even": True}, order=[("n", "asc")]) == ["d4", "d6", "d8"]
    assert await ids({"tags": {"$in": ["x"]}}, order=[("n", "asc")]) == ["d0", "d1", "d2"]
    assert await ids({"o.k": "v2"}, order=[("n", "asc")]) == ["d2", "d5", "d8"]
    assert await ids({"o": {"k": "v1"}}, order=[("n", "asc")]) == ["d1", "d4", "d7"]
    assert await ids({"o": {"$exists": False}}) == ["d9"]
    assert await ids({"o.k": {"$neq": "v0"}, "n": {"$nin": [1, 2]}}, order=[("n", "asc")]) == ["d4", "d5", "d7", "d8", "d9"]
    assert await ids({"name": {"$regex": "^item [13]$", "$options": "i"}}, order=[("n", "asc")]) == ["d1", "d3"]
    assert await ids({"when": {"$lt": {"$date": 2500}}}, order=[("n", "asc")]) == ["d0", "d1", "d2"]
    assert await ids({"_id": {"$in": ["d3", "d1", "zz"]}}) == ["d3", "d1"]
    assert await ids(None, order=[("even", "desc"), ("n", "asc")], skip=1, limit=3) == ["d2", "d4", "d6"]
    assert await cols.count(SERVER, "todos", {"even": False}) == 5
    page = await cols.find(SERVER, "todos", Query(where={"n": 4}, field={"n": True}))
    assert page == [{"_id": "d4", "n": 4}]
    page = await cols.find(SERVER, "todos", Query(where={"n": 4}, field={"o": False, "tags": False, "when": False,
                                                                         "name": False}))
    assert page == [{"_id": "d4", "n": 4, "even": True}]
    with pytest.raises(WxError) as e:
        await cols.find(SERVER, "todos", Query(where={"n": {"$near": 1}}))
    assert e.value.code == BAD_COMMAND


async def test_get_caps(cols: Collections) -> None:
    for i in range(130):
        await cols.add(SERVER, "todos", {"i": i})
    assert len(await cols.find(SERVER, "todos", Query())) == 100
    assert len(await cols.find(SERVER, "todos", Query(limit=500))) == 100
    assert len(await cols.find(SERVER, "todos", Query(skip=120))) == 10
    assert len(await cols.find(user("u1", read=Everyone()), "todos", Query(limit=50))) == 20
    assert await cols.count(SERVER, "todos", None) == 130


async def test_updates(cols: Collections) -> None:
    await cols.add(SERVER, "todos", {"_id": "a", "n": 1, "tags": ["x", "y", "x"], "style": {"color": "red", "w": 1},
                                     "gone": True, "list": [{"k": 1}, {"k": 2}]})
    n = await cols.update(SERVER, "todos", "a", {
        "n": {"$inc": 2}, "tags": {"$pull": "x"}, "style": {"color": "blue"}, "gone": {"$remove": True},
        "deep.er.still": 5, "fresh": {"$inc": 1}, "pushed": {"$push": ["p"]}, "list": {"$pull": {"k": 2}},
        "list.0.k": 9, "when": {"$serverDate": {}}})
    assert n == 1
    got = await cols.get(SERVER, "todos", "a")
    assert got == {"_id": "a", "n": 3, "tags": ["y"], "style": {"color": "blue", "w": 1}, "deep": {"er": {"still": 5}},
                   "fresh": 1, "pushed": ["p"], "list": [{"k": 9}], "when": {"$date": 1_700_000_000_000}}
    await cols.update(SERVER, "todos", "a", {"tags": {"$push": {"$each": ["a", "b"], "$position": 0}},
                                             "style": {"$set": {"only": 1}}, "n": {"$pull": 3}})
    got = await cols.get(SERVER, "todos", "a")
    assert got is not None and got["tags"] == ["a", "b", "y"] and got["style"] == {"only": 1} and got["n"] == 3
    assert await cols.update(SERVER, "todos", "nope", {"n": 1}) == 0
    with pytest.raises(WxError) as e:
        await cols.update(SERVER, "todos", "a", {"_id": "b"})
    assert e.value.code == BAD_COMMAND
    for i in range(5):
        await cols.add(SERVER, "todos", {"i": i, "kind": "batch"})
    assert await cols.update_where(SERVER, "todos", {"kind": "batch", "i": {"$gte": 2}}, {"hit": True}) == 3
    assert await cols.count(SERVER, "todos", {"hit": True}) == 3
    assert await cols.remove_where(SERVER, "todos", {"kind": "batch"}) == 5
    assert await cols.count(SERVER, "todos", None) == 1


async def test_end_users_under_rules(cols: Collections) -> None:
    alice, bob = user("alice"), user("bob")
    a = await cols.add(alice, "todos", {"t": "alice's"})
    b = await cols.add(bob, "todos", {"t": "bob's"})
    s = await cols.add(SERVER, "todos", {"t": "server's"})
    assert (await cols.get(SERVER, "todos", a) or {})["_openid"] == "alice"
    assert "_openid" not in (await cols.get(SERVER, "todos", s) or {})
    assert [d["t"] for d in await cols.find(alice, "todos", Query())] == ["alice's"]
    assert await cols.count(bob, "todos", None) == 1
    for attempt in (cols.get(alice, "todos", b), cols.update(alice, "todos", b, {"t": "mine"}),
                    cols.remove(alice, "todos", b), cols.set(alice, "todos", b, {"t": "mine"})):
        with pytest.raises(WxError) as e:
            await attempt
        assert e.value.code == PERMISSION_DENIED
    with pytest.raises(WxError):
        await cols.add(alice, "todos", {"_openid": "bob"})
    with pytest.raises(WxError):
        await cols.update(alice, "todos", a, {"_openid": "bob"})
    assert await cols.update_where(alice, "todos", {}, {"seen": True}) == 1
    assert await cols.remove_where(bob, "todos", {"t": {"$exists": True}}) == 1
    assert sorted(d["t"] for d in await cols.find(SERVER, "todos", Query())) == ["alice's", "server's"]
    everyone = user("carol", read=Everyone())
    assert await cols.count(everyone, "todos", None) == 2
    with pytest.raises(WxError) as e:
        await cols.create(alice, "other")
    assert e.value.code == PERMISSION_DENIED


async def test_function_keys_need_grants(cols: Collections) -> None:
    fn = Caller(key=Key("invoke", owner="fn1"))
    with pytest.raises(WxError) as e:
        await cols.add(fn, "todos", {"x": 1})
    assert e.value.code == PERMISSION_DENIED and "polyfn db grant fn1 todos" in e.value.message
    await cols.grants.grant("default", "fn1", "todos", "read")
    assert await cols.find(fn, "todos", Query()) == []
    with pytest.raises(WxError):
        await cols.add(fn, "todos", {"x": 1})
    await cols.grants.grant("default", "fn1", "todos", "write")
    assert await cols.add(fn, "todos", {"x": 1})


def test_document_values() -> None:
    with pytest.raises(Exception, match="may not contain"):
        docs.to_item({"a.b": 1}, 0)
    with pytest.raises(Exception, match="start with"):
        docs.to_item({"$x": 1}, 0)
    assert docs.from_item(docs.to_item({"big": 10**20, "f": 0.1, "neg": -2}, 0)) == {"big": 10**20, "f": 0.1, "neg": -2}
    assert docs.sort_key(None) < docs.sort_key({"N": "-5"}) < docs.sort_key({"S": ""}) < docs.sort_key({"BOOL": False})


async def test_watch_gives_a_snapshot_then_changes(cols: Collections) -> None:
    from polyfn.db.changes import ChangeFeed
    from polyfn.db.watch import Watcher

    watcher = Watcher(cols, ChangeFeed(cols.db), poll=0.05)
    await cols.add(SERVER, "todos", {"_id": "a", "n": 1, "open": True})
    await cols.add(SERVER, "todos", {"_id": "b", "n": 2, "open": False})
    stream = await watcher.open(SERVER, {"collection": "todos", "query": {"open": True},
                                         "order": [["n", "desc"]], "limit": 2})
    init = await anext(stream)
    assert init["type"] == "init" and [d["_id"] for d in init["docs"]] == ["a"]
    assert init["docChanges"][0]["dataType"] == "init"
    await cols.add(SERVER, "todos", {"_id": "c", "n": 3, "open": True})
    snap = await anext(stream)
    assert [d["_id"] for d in snap["docs"]] == ["c", "a"]
    assert snap["docChanges"] == [{"id": 0, "dataType": "add", "queueType": "enqueue", "docId": "c",
                                   "doc": {"_id": "c", "n": 3, "open": True}}]
    await cols.update(SERVER, "todos", "a", {"n": 5, "x": 1})
    snap = await anext(stream)
    change = snap["docChanges"][0]
    assert (change["dataType"], change["queueType"], change["updatedFields"]) == ("update", "update", {"n": 5, "x": 1})
    assert [d["_id"] for d in snap["docs"]] == ["a", "c"]
    await cols.update(SERVER, "todos", "b", {"n": 9})  # outside the query: no snapshot
    await cols.update(SERVER, "todos", "c", {"open": False})
    snap = await anext(stream)
    assert [(c["docId"], c["dataType"], c["queueType"]) for c in snap["docChanges"]] == [("c", "update", "dequeue")]
    await cols.remove(SERVER, "todos", "a")
    snap = await anext(stream)
    assert snap["docChanges"][0]["dataType"] == "remove" and snap["docs"] == []
    await stream.aclose()  # type: ignore[attr-defined]
    alice = user("alice")
    await cols.add(alice, "todos", {"_id": "mine"})
    mine = await watcher.open(alice, {"collection": "todos"})
    assert [d["_id"] for d in (await anext(mine))["docs"]] == ["mine"]
    await cols.add(user("bob"), "todos", {"_id": "theirs"})
    await cols.update(alice, "todos", "mine", {"v": 1})
    assert [c["docId"] for c in (await anext(mine))["docChanges"]] == ["mine"]
    with pytest.raises(WxError):
        await watcher.open(SERVER, {"collection": "todos", "limit": -1})
