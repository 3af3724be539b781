"""Apps, static sites and `/v1/storage` per namespace against a real node: another namespace's app, site, storage
key or storage trigger answers exactly as one that does not exist; an app's end users, their data, their files
and the functions they call are its namespace's; deleting a namespace removes its apps and sites."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import Server, error_code, start_server

WHO = 'def handler(event, context):\n    return {"who": "%s"}\n'


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("nsapps") / "data")
    yield s
    s.stop()


def _tenant(node: Server, ns: str) -> tuple[str, httpx.Client]:
    r = node.api.post("/v1/namespaces", json={"name": ns})
    assert r.status_code == 201, r.text
    r = node.api.post("/v1/keys", json={"scope": "deploy", "namespace": ns})
    key = f"{r.json()['access_key_id']}:{r.json()['secret_access_key']}"
    return key, httpx.Client(base_url=node.url, timeout=120, headers={"authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def tenants(node: Server) -> dict[str, Any]:
    ka, a = _tenant(node, "app-a")
    kb, b = _tenant(node, "app-b")
    return {"a": a, "b": b, "ka": ka, "kb": kb}


def test_an_app_is_its_namespaces(node: Server, tenants: dict[str, Any]) -> None:
    a, b = tenants["a"], tenants["b"]
    r = a.post("/v1/apps", json={"id": "shop-a"})
    assert r.status_code == 201 and r.json()["namespace"] == "app-a", r.text
    assert [x["id"] for x in a.get("/v1/apps").json()["apps"]] == ["shop-a"]
    assert "shop-a" not in {x["id"] for x in b.get("/v1/apps").json()["apps"]}
    assert "shop-a" not in {x["id"] for x in node.api.get("/v1/apps").json()["apps"]}  # (the admin: default)
    for method, path in (("GET", "/v1/apps/shop-a"), ("PATCH", "/v1/apps/shop-a"), ("DELETE", "/v1/apps/shop-a"),
                         ("GET", "/v1/apps/shop-a/users"), ("POST", "/v1/apps/shop-a/users/u1/revoke")):
        r = b.request(method, path, json={} if method == "PATCH" else None)
        assert r.status_code == 404 and error_code(r) == "app_not_found", (method, path, r.text)
    r = b.post("/v1/apps", json={"id": "shop-a"})  # ids are global (they are the app's URLs)
    assert r.status_code == 409 and error_code(r) == "app_exists"
    r = node.api.get("/v1/apps/shop-a", headers={"x-polyfn-namespace": "app-a"})
    assert r.status_code == 200 and r.json()["id"] == "shop-a"


def test_an_apps_users_call_and_store_in_its_namespace(node: Server, tenants: dict[str, Any]) -> None:
    a, ka = tenants["a"], tenants["ka"]
    a.post("/v1/apps", json={"id": "notes-a", "rules": {"notes": {"read": "true", "write": "true"}}}
           ).raise_for_status()
    assert a.post("/v1/functions", json={"name": "who", "files": {"handler.py": WHO % "app-a"}}).status_code == 201
    node.deploy("who", {"handler.py": WHO % "default"})
    tokens = node.http.post("/app/notes-a/auth/anonymous").json()
    auth = {"authorization": f"Bearer {tokens['access_token']}"}
    r = node.http.post("/app/notes-a/call/who", json={}, headers=auth)
    assert r.status_code == 200 and r.json() == {"who": "app-a"}, r.text  # the app's namespace's `who`
    r = node.cli("db", "create-collection", "notes", env={"POLYFN_API_KEY": ka})
    assert r.returncode == 0, r.stderr
    r = node.http.post("/app/notes-a/db/collection.add", json={"collection": "notes", "data": {"t": "hi"}},
                       headers=auth)
    assert r.status_code == 200, r.text
    import boto3

    def tables(key: str) -> list[str]:
        kid, _, secret = key.partition(":")
        ddb = boto3.client("dynamodb", endpoint_url=node.url, region_name="us-east-1", aws_access_key_id=kid,
                           aws_secret_access_key=secret)
        return list(ddb.list_tables()["TableNames"])

    assert "notes" in tables(ka) and "notes" not in tables(tenants["kb"])
    assert "notes" not in tables(f"polyfn-admin:{node.key}")  # (not the default namespace's)
    # the app's files go to a bucket of its namespace
    r = node.http.post("/app/notes-a/storage/upload", json={"cloudPath": "x.txt"}, headers=auth)
    assert r.status_code == 200, r.text
    assert "app-notes-a" in {b["bucket"] for b in a.get("/v1/storage/usage").json()["buckets"]}
    assert "app-notes-a" not in {b["bucket"] for b in node.api.get("/v1/storage/usage").json()["buckets"]}


def test_sites_per_namespace(node: Server, tenants: dict[str, Any]) -> None:
    a, b = tenants["a"], tenants["b"]
    for c, who in ((a, "a"), (b, "b")):
        r = c.put("/v1/sites/blog", json={"files": {"index.html": f"<h1>{who}</h1>"}})
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "blog" and r.json()["url"] == f"/sites/app-{who}/blog/"
    assert node.http.get("/sites/app-a/blog/").text == "<h1>a</h1>"
    assert node.http.get("/sites/app-b/blog/").text == "<h1>b</h1>"
    assert node.http.get("/sites/blog/").status_code == 404  # (the default namespace has none)
    r = node.http.get("/sites/app-a/blog", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/sites/app-a/blog/"
    assert [s["name"] for s in a.get("/v1/sites").json()["sites"]] == ["blog"]
    assert "blog" not in {s["name"] for s in node.api.get("/v1/sites").json()["sites"]}
    assert b.delete("/v1/sites/blog").status_code == 200
    assert node.http.get("/sites/app-a/blog/").text == "<h1>a</h1>"
    assert b.delete("/v1/sites/blog").status_code == 404


def test_storage_control_per_namespace(node: Server, tenants: dict[str, Any]) -> None:
    a, b = tenants["a"], tenants["b"]
    r = node.api.post("/v1/keys", json={"scope": "admin", "namespace": "app-a"})  # (an admin of app-a only)
    admin_a = httpx.Client(base_url=node.url, headers={
        "authorization": f"Bearer {r.json()['access_key_id']}:{r.json()['secret_access_key']}"})
    r = admin_a.post("/v1/storage/keys", json={"name": "uploader"})
    assert r.status_code == 201 and r.json()["namespace"] == "app-a", r.text
    kid = r.json()["access_key_id"]
    r = node.api.post("/v1/keys", json={"scope": "admin", "namespace": "app-b"})
    admin_b = httpx.Client(base_url=node.url, headers={
        "authorization": f"Bearer {r.json()['access_key_id']}:{r.json()['secret_access_key']}"})
    assert kid in {k["access_key_id"] for k in admin_a.get("/v1/storage/keys").json()["keys"]}
    assert kid not in {k["access_key_id"] for k in admin_b.get("/v1/storage/keys").json()["keys"]}
    assert kid not in {k["access_key_id"] for k in node.api.get("/v1/storage/keys").json()["keys"]}
    r = admin_b.delete(f"/v1/storage/keys/{kid}")
    assert r.status_code == 404 and error_code(r) == "key_not_found"
    import boto3

    ka_id, _, ka_secret = tenants["ka"].partition(":")
    s3 = boto3.client("s3", endpoint_url=a.get("/v1/storage").json()["endpoint"], region_name="us-east-1",
                      aws_access_key_id=ka_id, aws_secret_access_key=ka_secret)
    s3.create_bucket(Bucket="app-a-inbox")
    a.post("/v1/functions", json={"name": "on-upload", "files": {"handler.py": WHO % "a"}}).raise_for_status()
    b.post("/v1/functions", json={"name": "on-upload", "files": {"handler.py": WHO % "b"}}).raise_for_status()
    r = a.post("/v1/storage/triggers", json={"function": "on-upload", "bucket": "app-a-inbox"})
    assert r.status_code == 201 and r.json()["function"] == "on-upload", r.text
    tid = r.json()["id"]
    r = b.post("/v1/storage/triggers", json={"function": "on-upload", "bucket": "app-a-inbox"})
    assert r.status_code == 404 and error_code(r) == "bucket_not_found", r.text
    assert [t["id"] for t in a.get("/v1/storage/triggers").json()["triggers"]] == [tid]
    assert b.get("/v1/storage/triggers").json()["triggers"] == []
    assert tid not in {t["id"] for t in node.api.get("/v1/storage/triggers").json()["triggers"]}
    r = b.delete(f"/v1/storage/triggers/{tid}")
    assert r.status_code == 404 and error_code(r) == "trigger_not_found"
    assert a.delete(f"/v1/storage/triggers/{tid}").status_code == 200


def test_deleting_a_namespace_removes_its_apps_and_sites(node: Server) -> None:
    _key, c = _tenant(node, "app-gone")
    c.post("/v1/apps", json={"id": "gone-app"}).raise_for_status()
    c.put("/v1/sites/page", json={"files": {"index.html": "x"}}).raise_for_status()
    r = node.api.delete("/v1/namespaces/app-gone")
    assert r.status_code == 200, r.text
    assert r.json()["apps"] == ["gone-app"] and r.json()["sites"] == ["page"]
    assert node.http.get("/sites/app-gone/page/").status_code == 404
    assert node.http.post("/app/gone-app/auth/anonymous").status_code == 404
    r = node.api.post("/v1/apps", json={"id": "gone-app"})  # the id is free again
    assert r.status_code == 201, r.text
