"""The wx.cloud database face of a real `polyfn serve`: a WeChat cloud function (Node, `wx-server-sdk`) uses
`cloud.database()` against it, and the HTTP API answers with WeChat's errCode/errMsg."""

from __future__ import annotations

from typing import Any

import boto3

from .conftest import Server

TODO_FN = """
const cloud = require('wx-server-sdk');
cloud.init({ env: cloud.DYNAMIC_CURRENT_ENV });
const db = cloud.database();
const _ = db.command;

exports.main = async (event) => {
  const todos = db.collection('todos');
  if (event.step === 'create') return db.createCollection('todos');
  if (event.step === 'fill') {
    const ids = [];
    for (let i = 0; i < 5; i++) {
      const r = await todos.add({ data: { title: `task ${i}`, n: i, done: i % 2 === 0, tags: ['t' + i],
                                          due: new Date(Date.UTC(2030, 0, i + 1)), at: db.serverDate() } });
      ids.push(r._id);
    }
    return ids;
  }
  if (event.step === 'query') {
    const page = await todos.where({ done: true, n: _.gt(0).and(_.lte(4)) }).orderBy('n', 'desc')
      .field({ title: true, due: true }).get();
    const count = await todos.where(_.or([{ n: 0 }, { tags: _.in(['t3']) }])).count();
    const re = await todos.where({ title: db.RegExp({ regexp: '^TASK [12]$', options: 'i' }) }).orderBy('n', 'asc').get();
    const early = await todos.where({ due: _.lt(new Date(Date.UTC(2030, 0, 2, 12))) }).count();
    const one = await todos.doc(event.id).get();
    return { page, count, re: re.data.map((d) => d.n), early: early.total, one: one.data,
             dueIsDate: one.data.due instanceof Date, atIsDate: one.data.at instanceof Date };
  }
  if (event.step === 'update') {
    const u = await todos.doc(event.id).update({ data: { n: _.inc(10), tags: _.push(['x']), meta: { by: 'fn' } } });
    const s = await todos.doc('custom-id').set({ data: { title: 'set', n: 99 } });
    const w = await todos.where({ done: false }).update({ data: { done: true } });
    const r = await todos.where({ n: _.gte(99) }).remove();
    const d = await todos.doc(event.id).get();
    return { u, s, w, r, d: d.data, total: (await todos.count()).total };
  }
  if (event.step === 'errors') {
    const out = {};
    try { await db.collection('nope').get(); } catch (e) { out.missing = { errCode: e.errCode, errMsg: e.errMsg }; }
    try { await todos.doc('no-such-doc').get(); } catch (e) { out.notFound = e.errMsg; }
    try { await todos.where({ n: { $near: 1 } }).get(); } catch (e) { out.command = e.errCode; }
    try { await db.collection('secret').get(); } catch (e) { out.denied = e.errCode; }
    out.quiet = (await cloud.database({ throwOnNotFound: false }).collection('todos').doc('no-such-doc').get()).data;
    return out;
  }
  return null;
};
"""


def call(server: Server, fn: str, **event: Any) -> Any:
    r = server.http.post(f"/fn/{fn}", json=event)
    assert r.status_code == 200, r.text
    return r.json()


def test_wechat_function_uses_the_cloud_database(server: Server) -> None:
    server.deploy("wx-todos", {"index.js": TODO_FN}, flavor="wechat", handler="index.main")
    server.cli("db", "grant", "wx-todos", "todos", check=True)
    assert call(server, "wx-todos", step="create")["errMsg"] == "database.createCollection:ok"
    ids = call(server, "wx-todos", step="fill")
    assert len(ids) == 5 and all(len(i) == 32 for i in ids)
    out = call(server, "wx-todos", step="query", id=ids[1])
    assert out["page"]["errMsg"] == "collection.get:ok"
    assert [d["title"] for d in out["page"]["data"]] == ["task 4", "task 2"]
    assert set(out["page"]["data"][0]) == {"_id", "title", "due"}
    assert out["count"]["total"] == 2 and out["re"] == [1, 2] and out["early"] == 2
    assert out["one"]["title"] == "task 1" and out["dueIsDate"] and out["atIsDate"]
    out = call(server, "wx-todos", step="update", id=ids[1])
    assert out["u"] == {"stats": {"updated": 1}, "errMsg": "document.update:ok"}
    assert out["s"]["stats"] == {"updated": 0, "created": 1} and out["s"]["errMsg"] == "document.set:ok"
    assert out["w"]["stats"]["updated"] == 2  # tasks 1 and 3
    assert out["r"]["stats"]["removed"] == 1
    assert out["d"]["n"] == 11 and out["d"]["tags"] == ["t1", "x"] and out["d"]["meta"] == {"by": "fn"}
    assert out["total"] == 5
    errors = call(server, "wx-todos", step="errors")
    assert errors["missing"]["errCode"] == -502003  # not granted (and absent): permission first
    assert errors["notFound"].startswith("document.get:fail")
    assert errors["command"] == -502002 and errors["denied"] == -502003 and errors["quiet"] is None


def test_http_api_with_an_api_key(server: Server) -> None:
    api = server.api
    r = api.post("/wx/database/collection.get", json={"collection": "absent"})
    assert r.status_code == 404
    assert r.json() == {"errCode": -502005,
                        "errMsg": "collection.get:fail -502005 database collection not exists: absent"}
    assert api.post("/wx/database/database.createCollection", json={"collection": "notes"}).status_code == 200
    r = api.post("/wx/database/collection.add", json={"collection": "notes", "data": {"_id": "n1", "t": "hi"}})
    assert r.json() == {"_id": "n1", "errMsg": "collection.add:ok"}
    r = api.post("/wx/database/collection.add", json={"collection": "notes", "data": {"_id": "n1"}})
    assert r.status_code == 400 and r.json()["errCode"] == -502001
    r = server.http.post("/wx/database/collection.get", json={"collection": "notes"})
    assert r.status_code == 401 and r.json()["errCode"] == -401001
    r = api.post("/wx/database/collection.get", content=b"{not json")
    assert r.status_code == 400 and r.json()["errCode"] == -501007
    r = api.post("/wx/database/collection.get", json={"collection": "notes", "limit": 0})
    assert r.status_code == 400 and "limit" in r.json()["errMsg"]
    r = api.post("/wx/database/collection.frobnicate", json={})
    assert r.status_code == 400 and r.json()["errMsg"].startswith("collection.frobnicate:fail -501007 unknown action")
    r = api.post("/wx/database/document.get", json={"collection": "notes", "id": "n1"})
    assert r.json()["data"] == {"_id": "n1", "t": "hi"}
    # one store, two faces: the collection is a table to boto3
    ddb = boto3.client("dynamodb", endpoint_url=server.url, region_name="us-east-1",
                       aws_access_key_id="polyfn-admin", aws_secret_access_key=server.key)
    assert ddb.get_item(TableName="notes", Key={"_id": {"S": "n1"}})["Item"] == {"_id": {"S": "n1"}, "t": {"S": "hi"}}


def test_watch_streams_server_sent_events(server: Server) -> None:
    import json

    import httpx

    api = server.api
    api.post("/wx/database/database.createCollection", json={"collection": "live"})
    api.post("/wx/database/collection.add", json={"collection": "live", "data": {"_id": "a", "on": True}})
    with httpx.Client(base_url=server.url, timeout=30, headers=api.headers) as c, \
            c.stream("POST", "/wx/database/collection.watch", json={"collection": "live", "query": {"on": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        events = (json.loads(line[len("data: "):]) for line in r.iter_lines() if line.startswith("data: "))
        first = next(events)
        assert first["type"] == "init" and first["docs"] == [{"_id": "a", "on": True}]
        api.post("/wx/database/collection.add", json={"collection": "live", "data": {"_id": "b", "on": True}})
        nxt = next(events)
        assert nxt["docChanges"][0]["docId"] == "b" and len(nxt["docs"]) == 2
    r = api.post("/wx/database/collection.watch", json={"collection": "nope"})
    assert r.status_code == 404 and r.json()["errCode"] == -502005
