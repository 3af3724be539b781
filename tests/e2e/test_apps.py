"""The app platform end to end on a real node: `polyfn apps`, sign-in over HTTP, callFunction with the caller's
identity in each vendor's place, and the attacks: bad tokens (a code for each), forged identity headers,
foreign origins, functions for signed-in users only."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from polyfn.apps.tokens import TokenSigner
from polyfn.auth.secrets import SecretBox

from .conftest import Server, error_code, start_server

WHOAMI_WX = """
const cloud = require('wx-server-sdk');
cloud.init({ env: cloud.DYNAMIC_CURRENT_ENV });
exports.main = async (event, context) => {
  const wx = cloud.getWXContext();
  return { openid: wx.OPENID, appid: wx.APPID, unionid: wx.UNIONID, env: wx.ENV, source: wx.SOURCE,
           userInfo: event.userInfo, data: event.n };
};
"""

WX_CALLER = """
const cloud = require('wx-server-sdk');
cloud.init({ env: cloud.DYNAMIC_CURRENT_ENV });
exports.main = async (event) => {
  const res = await cloud.callFunction({ name: 'whoami-wx', data: { n: 7 } });
  return { mine: cloud.getWXContext().OPENID, theirs: res.result.openid, ok: res.errMsg };
};
"""

WHOAMI_PY = """
def handler(event, context):
    return {"identity": context.identity.cognito_identity_id, "pool": context.identity.cognito_identity_pool_id}
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-apps"))
    s.cli("apps", "create", "shop", "--origin", "http://shop.example", "--appid", "wx-shop-1", check=True)
    s.cli("apps", "create", "blog", check=True)
    s.deploy("whoami-wx", {"index.js": WHOAMI_WX}, flavor="wechat", handler="index.main")
    s.deploy("wx-caller", {"index.js": WX_CALLER}, flavor="wechat", handler="index.main")
    s.deploy("whoami-aws", {"handler.py": WHOAMI_PY}, flavor="aws", handler="handler.handler")
    s.deploy("members-only", {"handler.py": "def handler(event, context):\n    return context.identity.cognito_identity_id\n"},
             flavor="aws", handler="handler.handler", auth="app")
    yield s
    s.stop()


def sign_in(node: Server, app: str = "shop") -> dict:
    r = node.http.post(f"/app/{app}/auth/anonymous")
    assert r.status_code == 200, r.text
    return r.json()


def bearer(tokens: dict) -> dict[str, str]:
    return {"authorization": f"Bearer {tokens['access_token']}"}


def test_cli_shows_the_app(node: Server) -> None:
    r = node.cli("apps", "show", "shop", check=True)
    assert "wx-shop-1" in r.stdout and "http://shop.example" in r.stdout and "anonymous, password" in r.stdout
    r = node.cli("apps", "create", "shop")
    assert r.returncode != 0 and "app_exists" in r.stderr
    listed = json.loads(node.cli("apps", "list", "--json", check=True).stdout)
    assert {a["id"] for a in listed} >= {"shop", "blog"}


def test_call_function_puts_the_user_in_getwxcontext(node: Server) -> None:
    tokens = sign_in(node)
    uid = tokens["user"]["uid"]
    r = node.http.post("/app/shop/call/whoami-wx", json={"n": 1}, headers=bearer(tokens))
    assert r.status_code == 200, r.text
    assert len(r.headers["x-polyfn-activation-id"]) == 32
    assert r.json() == {"openid": uid, "appid": "wx-shop-1", "unionid": "", "env": "shop", "source": "wx_client",
                        "userInfo": {"appId": "wx-shop-1", "openId": uid}, "data": 1}
    # wx-server-sdk's callFunction from inside a function calls as the same user
    r = node.http.post("/app/shop/call/wx-caller", json={}, headers=bearer(tokens))
    assert r.json() == {"mine": uid, "theirs": uid, "ok": "cloud.callFunction:ok"}


def test_aws_code_sees_a_cognito_identity(node: Server) -> None:
    tokens = sign_in(node)
    r = node.http.post("/app/shop/call/whoami-aws", json={}, headers=bearer(tokens))
    assert r.json() == {"identity": tokens["user"]["uid"], "pool": "shop"}


def test_identity_headers_from_outside_are_ignored(node: Server) -> None:
    forged = {"x-wx-openid": "victim", "x-wx-appid": "wx-shop-1", "x-wx-unionid": "u", "x-wx-source": "wx_client",
              "X-MS-CLIENT-PRINCIPAL-ID": "victim", "x-polyfn-identity": '{"uid": "victim"}'}
    for path in ("/fn/whoami-wx", "/app/shop/call/whoami-wx", "/function/whoami-wx"):
        r = node.http.post(path, json={}, headers=forged)
        assert r.status_code == 200, (path, r.text)
        assert r.json()["openid"] == "" and r.json()["userInfo"] == {"appId": "", "openId": ""}, path
    tokens = sign_in(node)  # a signed-in caller cannot override their identity with headers either
    r = node.http.post("/app/shop/call/whoami-wx", json={}, headers={**forged, **bearer(tokens)})
    assert r.json()["openid"] == tokens["user"]["uid"]
    r = node.http.post("/fn/whoami-aws", json={}, headers={"x-ms-client-principal-id": "victim"})
    assert r.status_code == 200


def forge(token: str, **changes: object) -> str:
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    return head + "." + base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode() + "." + sig


def test_bad_tokens_are_refused_with_a_code_each(node: Server) -> None:
    tokens = sign_in(node)
    cases = {
        "token_invalid": forge(tokens["access_token"], sub="someone-else"),
        "token_wrong_app": sign_in(node, "blog")["access_token"],
    }
    for want, token in cases.items():
        r = node.http.post("/app/shop/call/whoami-wx", json={}, headers={"authorization": f"Bearer {token}"})
        assert (r.status_code, error_code(r)) == (401, want), r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
    revoked = sign_in(node)
    r = node.http.post("/app/shop/auth/signout", json={}, headers=bearer(revoked))
    assert r.status_code == 200, r.text
    r = node.http.post("/app/shop/call/whoami-wx", json={}, headers=bearer(revoked))
    assert (r.status_code, error_code(r)) == (401, "token_revoked")
    r = node.http.post("/app/shop/auth/refresh", json={"refresh_token": revoked["refresh_token"]})
    assert (r.status_code, error_code(r)) == (401, "token_revoked")
    r = node.http.get("/app/shop/auth/user")
    assert (r.status_code, error_code(r)) == (401, "token_missing")


def test_expired_tokens_are_refused(node: Server) -> None:
    tokens = sign_in(node)
    # A genuine token of this node that expired a minute ago: signed with the node's own key (derived from
    # the data dir's node.key exactly as the node does), so only its expiry is wrong.
    signer = TokenSigner(SecretBox(node.data_dir / "node.key").derive)
    then = time.time() - 120
    claims = {"aud": "shop", "sub": tokens["user"]["uid"], "iat": int(then), "exp": int(then) + 60, "sid": "x"}
    expired = signer.issue(claims, then)
    r = node.http.get("/app/shop/auth/user", headers={"authorization": f"Bearer {expired}"})
    assert (r.status_code, error_code(r)) == (401, "token_expired")
    fresh = signer.issue({**claims, "exp": int(time.time()) + 60}, time.time())
    assert node.http.get("/app/shop/auth/user", headers={"authorization": f"Bearer {fresh}"}).status_code == 200
    again = node.http.post("/app/shop/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
    assert node.http.get("/app/shop/auth/user", headers=bearer(again)).json()["uid"] == tokens["user"]["uid"]


def test_origins_the_app_does_not_allow_get_no_cors_grant(node: Server) -> None:
    good = node.http.options("/app/shop/auth/anonymous", headers={"origin": "http://shop.example",
                                                                  "access-control-request-method": "POST"})
    assert good.status_code == 204 and good.headers["access-control-allow-origin"] == "http://shop.example"
    assert "authorization" in good.headers["access-control-allow-headers"]
    for method in ("OPTIONS", "POST"):
        bad = node.http.request(method, "/app/shop/auth/anonymous",
                                headers={"origin": "http://evil.example", "access-control-request-method": "POST"})
        assert bad.status_code == 403 and error_code(bad) == "origin_not_allowed"
        assert "access-control-allow-origin" not in bad.headers
    r = node.http.post("/app/shop/auth/anonymous", headers={"origin": "http://shop.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://shop.example"


def test_functions_for_signed_in_users_only(node: Server) -> None:
    for path in ("/fn/members-only", "/function/members-only"):
        r = node.http.post(path, json={})
        assert (r.status_code, error_code(r)) == (401, "app_token_required"), path
    r = node.http.post("/app/shop/call/members-only", json={})
    assert (r.status_code, error_code(r)) == (401, "token_missing")
    tokens = sign_in(node)
    r = node.http.post("/app/shop/call/members-only", json={}, headers=bearer(tokens))
    assert r.status_code == 200 and r.json() == tokens["user"]["uid"]
    # the admin still invokes it through the control API (trusted, no user)
    assert node.api.post("/v1/functions/members-only/invoke", json={}).status_code == 200


def test_password_users_and_brute_force_limit(node: Server) -> None:
    node.api.patch("/v1/apps/blog", json={"signin_burst": 3, "signin_rate": 0.01}).raise_for_status()
    r = node.http.post("/app/blog/auth/signup", json={"email": "ann@example.com", "password": "correct horse"})
    assert r.status_code == 201, r.text
    codes = [error_code(node.http.post("/app/blog/auth/signin", json={"email": "ann@example.com",
                                                                         "password": f"guess {i}"}))
             for i in range(4)]
    assert codes == ["invalid_credentials"] * 3 + ["too_many_attempts"]
    r = node.http.post("/app/blog/auth/signin", json={"email": "ann@example.com", "password": "correct horse"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    users = json.loads(node.cli("apps", "users", "blog", "--json", check=True).stdout)
    ann = next(u for u in users if u["email"] == "ann@example.com")
    assert "password_hash" not in ann
    r = node.cli("apps", "revoke", "blog", ann["uid"], "--disable", check=True)
    assert "revoked" in r.stdout


def test_unknown_apps_and_endpoints(node: Server) -> None:
    assert error_code(node.http.post("/app/nope/auth/anonymous")) == "app_not_found"
    assert error_code(node.http.post("/app/shop/auth/teleport")) == "not_found"
    r = node.http.post("/app/shop/call/whoami-wx", content=b"{not json", headers=bearer(sign_in(node)))
    assert (r.status_code, error_code(r)) == (400, "invalid_json")
    r = node.http.post("/app/shop/auth/signin", content=b"x" * (70 * 1024))
    assert r.status_code == 413


def test_sdk_is_served(node: Server) -> None:
    for name in ("polyfn-cloud.js", "polyfn-cloud.mjs"):
        r = httpx.get(f"{node.url}/sdk/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        assert "polyfnCloud" in r.text
    for bad in ("nope.js", "..%2fpackage.json", ".hidden.js", "polyfn-cloud.js/x"):
        assert httpx.get(f"{node.url}/sdk/{bad}").status_code == 404, bad
    assert httpx.post(f"{node.url}/sdk/polyfn-cloud.js").status_code == 405


def db(node: Server, action: str, body: dict, tokens: dict | None = None, **headers: str) -> httpx.Response:
    return node.http.post(f"/app/shop/db/{action}", json=body, headers={**(bearer(tokens) if tokens else {}), **headers})


def test_the_database_face_under_security_rules(node: Server) -> None:
    """End users reach collections only as their rules say; identity headers and foreign tokens count for
    nothing; a refused document is a 403 with WeChat's errCode."""
    node.cli("db", "create-collection", "carts", check=True)
    again = node.cli("db", "create-collection", "carts")
    assert again.returncode != 0 and "collection carts already exists" in again.stderr, again.stderr
    ann, bob = sign_in(node), sign_in(node)
    r = db(node, "collection.add", {"collection": "carts", "data": {"items": 2}}, ann,
           **{"x-wx-openid": bob["user"]["uid"]})
    assert r.status_code == 200 and r.json()["errMsg"] == "collection.add:ok", r.text
    doc_id = r.json()["_id"]
    got = db(node, "document.get", {"collection": "carts", "id": doc_id}, ann).json()
    assert got["data"]["_openid"] == ann["user"]["uid"]  # stamped from the token, not the header
    r = db(node, "document.get", {"collection": "carts", "id": doc_id}, bob)
    assert r.status_code == 403 and r.json()["errCode"] == -502003, r.text
    assert db(node, "collection.get", {"collection": "carts"}, bob).json()["data"] == []
    r = db(node, "collection.get", {"collection": "carts"})
    assert (r.status_code, error_code(r)) == (401, "token_missing")
    r = db(node, "collection.get", {"collection": "carts"}, sign_in(node, "blog"))
    assert (r.status_code, error_code(r)) == (401, "token_wrong_app")
    r = db(node, "collection.get", {"collection": "carts"}, ann, origin="http://evil.example")
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    r = db(node, "database.createCollection", {"collection": "mine"}, ann)
    assert r.status_code == 403 and r.json()["errCode"] == -502003
    r = db(node, "collection.nope", {"collection": "carts"}, ann)
    assert r.status_code == 404 and error_code(r) == "not_found"


def test_watch_over_server_sent_events_sees_only_ones_own_documents(node: Server) -> None:
    node.cli("db", "create-collection", "inbox", check=True)
    ann, bob = sign_in(node), sign_in(node)
    db(node, "collection.add", {"collection": "inbox", "data": {"_id": "bob-1", "text": "bob's"}}, bob)
    headers = {**bearer(ann), "origin": "http://shop.example"}
    with httpx.Client(base_url=node.url, timeout=30) as c, \
            c.stream("POST", "/app/shop/db/collection.watch", json={"collection": "inbox"}, headers=headers) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        assert r.headers["access-control-allow-origin"] == "http://shop.example"
        events = (json.loads(line[len("data: "):]) for line in r.iter_lines() if line.startswith("data: "))
        assert next(events)["docs"] == []
        db(node, "collection.add", {"collection": "inbox", "data": {"_id": "bob-2", "text": "bob's"}}, bob)
        db(node, "collection.add", {"collection": "inbox", "data": {"_id": "ann-1", "text": "ann's"}}, ann)
        change = next(events)
        assert [c["docId"] for c in change["docChanges"]] == ["ann-1"]
        assert [d["_id"] for d in change["docs"]] == ["ann-1"]
    r = db(node, "collection.watch", {"collection": "nope"}, ann)
    assert r.status_code == 404 and r.json()["errCode"] == -502005


def test_a_watch_ends_when_its_session_is_signed_out(node: Server) -> None:
    node.cli("db", "create-collection", "diary", check=True)
    email = f"watcher-{time.time_ns()}@example.com"
    first = node.http.post("/app/shop/auth/signup", json={"email": email, "password": "correct horse battery"}).json()
    second = node.http.post("/app/shop/auth/signin", json={"email": email, "password": "correct horse battery"}).json()
    with httpx.Client(base_url=node.url, timeout=30) as c, \
            c.stream("POST", "/app/shop/db/collection.watch", json={"collection": "diary"}, headers=bearer(first)) as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))  # the initial snapshot
        assert node.http.post("/app/shop/auth/signout", json={}, headers=bearer(first)).status_code == 200
        r2 = db(node, "collection.add", {"collection": "diary", "data": {"text": "after sign-out"}}, second)
        assert r2.status_code == 200, r2.text  # the same user's other session still writes …
        assert [line for line in lines if line.startswith("data: ")] == []  # … the signed-out watch ends, unfed


def test_a_user_may_hold_only_so_many_watches(node: Server) -> None:
    import contextlib

    node.cli("db", "create-collection", "busy", check=True)
    ann = sign_in(node)
    readers = []  # each open stream's line iterator: dropping one closes its stream
    with httpx.Client(base_url=node.url, timeout=30) as c, contextlib.ExitStack() as stack:
        def watch() -> httpx.Response:
            r = stack.enter_context(c.stream("POST", "/app/shop/db/collection.watch", json={"collection": "busy"},
                                             headers=bearer(ann)))
            if r.status_code == 200:
                readers.append(r.iter_lines())
                assert next(line for line in readers[-1] if line.startswith("data: "))  # it is open
            return r

        opened = [watch() for _ in range(20)]
        assert all(r.status_code == 200 for r in opened)
        refused = watch()
        refused.read()
        assert (refused.status_code, error_code(refused)) == (429, "too_many_watches")
        assert watch_status(node, sign_in(node)) == 200  # another user is not held back by ann's
        opened[0].close()  # the node learns of it when the client goes: then ann may open another
        deadline = time.monotonic() + 30
        while (status := watch_status(node, ann)) == 429 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 200


def watch_status(node: Server, tokens: dict) -> int:
    with httpx.Client(base_url=node.url, timeout=30) as c, \
            c.stream("POST", "/app/shop/db/collection.watch", json={"collection": "busy"}, headers=bearer(tokens)) as r:
        return r.status_code
