"""Static hosting: `polyfn sites deploy` and what the node answers at /sites/NAME/ (cache headers, ETags,
SPA fallback, no way out of the site's directory)."""

from __future__ import annotations

from pathlib import Path

from .conftest import Server


def build(tmp_path: Path, version: str) -> Path:
    d = tmp_path / f"dist-{version}"
    (d / "assets").mkdir(parents=True)
    (d / "about").mkdir()
    (d / "index.html").write_text(f"<!doctype html><title>shop {version}</title><script src='assets/app.3f9a1c2e.js'></script>")
    (d / "assets" / "app.3f9a1c2e.js").write_text("console.log('app');")
    (d / "style.css").write_text("body { color: red }")
    (d / "about" / "index.html").write_text("<p>about</p>")
    (d / ".env").write_text("SECRET=never-uploaded")
    return d


def test_deploy_serve_cache_and_fallback(server: Server, tmp_path: Path) -> None:
    r = server.cli("sites", "deploy", str(build(tmp_path, "v1")), "--name", "shop", check=True)
    assert "/sites/shop/" in r.stdout
    h = server.http
    r = h.get("/sites/shop", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/sites/shop/"
    r = h.get("/sites/shop/")
    assert r.status_code == 200 and "shop v1" in r.text and r.headers["cache-control"] == "no-cache"
    assert r.headers["content-type"].startswith("text/html")
    assert h.get("/sites/shop/", headers={"if-none-match": r.headers["etag"]}).status_code == 304
    js = h.get("/sites/shop/assets/app.3f9a1c2e.js")
    assert js.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "javascript" in js.headers["content-type"]
    assert h.get("/sites/shop/style.css").headers["cache-control"] == "public, max-age=300"
    assert h.get("/sites/shop/about/").text == "<p>about</p>"
    spa = h.get("/sites/shop/orders/42")  # a client-side route: the app's index.html
    assert spa.status_code == 200 and "shop v1" in spa.text
    assert h.get("/sites/shop/assets/missing.js").status_code == 404
    assert h.get("/sites/shop/.env").status_code == 404  # dot files are not uploaded
    for bad in ("/sites/shop/..%2f..%2fadmin.key", "/sites/shop/%2e%2e/%2e%2e/admin.key", "/sites/shop//etc/passwd"):
        r = h.get(bad)
        assert r.status_code in (200, 404) and "pfk_" not in r.text and "root:" not in r.text, bad
    assert h.post("/sites/shop/").status_code == 405
    assert h.head("/sites/shop/style.css").status_code == 200

    # a new deploy replaces the files at once
    server.cli("sites", "deploy", str(build(tmp_path, "v2")), "--name", "shop", "--no-spa", check=True)
    assert "shop v2" in h.get("/sites/shop/").text
    assert h.get("/sites/shop/orders/42").status_code == 404  # no SPA fallback now
    listed = server.cli("sites", "list", check=True).stdout
    assert "shop" in listed
    server.cli("sites", "delete", "shop", check=True)
    assert h.get("/sites/shop/").status_code == 404


def test_bad_sites_are_refused(server: Server, tmp_path: Path) -> None:
    d = tmp_path / "noindex"
    d.mkdir()
    (d / "a.txt").write_text("x")
    r = server.cli("sites", "deploy", str(d), "--name", "bad")
    assert r.returncode != 0 and "index.html" in r.stderr
    r = server.api.put("/v1/sites/Bad_Name", json={"files": {"index.html": "x"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_name"
    r = server.api.put("/v1/sites/ok", json={"files": {"../index.html": "x"}})
    assert r.status_code == 400
    assert server.http.put("/v1/sites/ok", json={"files": {"index.html": "x"}}).status_code == 401
