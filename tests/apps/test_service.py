"""The identity service on a real store (SQLite and PostgreSQL): apps, sign-in methods, sessions, refresh
rotation, revocation, rate limits. The clock is a fake one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyfn.apps import passwords
from polyfn.apps.service import AppError, AppService
from polyfn.apps.store import AppStore
from polyfn.apps.tokens import TokenError, TokenSigner
from polyfn.auth.ratelimit import Limiter
from polyfn.auth.secrets import SecretBox
from polyfn.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "N", 2**10)  # the tests are about the flow, not the hash's cost


@pytest.fixture
async def svc(store: Store, tmp_path: Path) -> AppService:
    calls: list[tuple[str, bytes]] = []

    async def call_function(name: str, payload: bytes) -> tuple[int, bytes]:
        calls.append((name, payload))
        data = json.loads(payload)["data"]
        if data.get("code") == "bad":
            return 200, json.dumps({"error": "code2Session: invalid code"}).encode()
        if data.get("code") == "crash":
            return 500, b'{"errorMessage": "boom"}'
        return 200, json.dumps({"openid": "wx-" + data["code"], "unionid": "un-1", "claims": {"role": "vip"}}).encode()

    s = AppService(AppStore(store), TokenSigner(SecretBox(tmp_path / "node.key").derive), Limiter(),
                   call_function, clock=Clock())
    s.calls = calls  # type: ignore[attr-defined]
    await s.load()
    return s


async def code_of(coro) -> str:  # type: ignore[no-untyped-def]
    try:
        await coro
    except AppError as e:
        return e.code
    raise AssertionError("no AppError")


async def test_apps_are_validated_and_unique(svc: AppService) -> None:
    app = await svc.create_app("my-env-id", {"origins": ["https://shop.example"]})
    assert app.appid == "my-env-id" and app.bucket == "app-my-env-id"
    assert await code_of(svc.create_app("my-env-id", {})) == "app_exists"
    assert await code_of(svc.create_app("Bad_Id", {})) == "invalid_app"
    assert await code_of(svc.create_app("console", {})) == "invalid_app"
    assert await code_of(svc.create_app("ok-app", {"origins": ["https://x.example/path"]})) == "invalid_app"
    assert await code_of(svc.create_app("ok-app", {"rules": {"notes": {"read": "doc.x = 1", "write": "true"}}})) \
        == "invalid_app"
    assert await code_of(svc.create_app("ok-app", {"token_ttl": 10})) == "invalid_app"
    assert await code_of(svc.create_app("ok-app", {"nonsense": 1})) == "invalid_app"
    updated = await svc.update_app("my-env-id", {"appid": "wx1234", "rules": {"notes": {"read": "true",
                                                                                        "write": "auth != null"}}})
    assert updated.appid == "wx1234" and updated.config.origins == ["https://shop.example"]
    assert updated.rule("notes").read == "true" and updated.rule("other").read == "doc._openid == auth.openid"


async def test_anonymous_sign_in_verify_and_refresh(svc: AppService) -> None:
    await svc.create_app("shop", {})
    tokens = await svc.signin.sign_in_anonymous("shop", "127.0.0.1")
    ident = svc.verify("shop", tokens["access_token"])
    assert ident.uid == tokens["user"]["uid"] == ident.openid and ident.provider == "anonymous"
    assert svc.verify("shop", tokens["access_token"]) is ident  # cached
    svc.clock.now += 3601  # type: ignore[attr-defined]
    with pytest.raises(TokenError) as e:
        svc.verify("shop", tokens["access_token"])
    assert e.value.code == "token_expired"
    again = await svc.refresh("shop", tokens["refresh_token"])
    assert svc.verify("shop", again["access_token"]).uid == ident.uid
    # the old refresh token was rotated away: using it again revokes the session (theft detection)
    assert await code_of(svc.refresh("shop", tokens["refresh_token"])) == "token_revoked"
    with pytest.raises(TokenError) as e:
        svc.verify("shop", again["access_token"])
    assert e.value.code == "token_revoked"
    assert await code_of(svc.refresh("shop", again["refresh_token"])) == "token_revoked"


async def test_wrong_app_and_sign_out(svc: AppService) -> None:
    await svc.create_app("shop", {})
    await svc.create_app("blog", {})
    tokens = await svc.signin.sign_in_anonymous("shop", "c")
    with pytest.raises(TokenError) as e:
        svc.verify("blog", tokens["access_token"])
    assert e.value.code == "token_wrong_app"
    assert await code_of(svc.refresh("blog", tokens["refresh_token"])) == "token_wrong_app"
    ident = svc.verify("shop", tokens["access_token"])
    await svc.sign_out("shop", ident)
    with pytest.raises(TokenError) as e:
        svc.verify("shop", tokens["access_token"])
    assert e.value.code == "token_revoked"


async def test_revocation_reaches_another_node(store: Store, svc: AppService, tmp_path: Path) -> None:
    """Two services on one database (a cluster): a revocation on one is seen by the other at its next load."""
    other = AppService(AppStore(store), TokenSigner(SecretBox(tmp_path / "node.key").derive), Limiter(),
                       clock=svc.clock)
    await svc.create_app("shop", {})
    await other.load()
    tokens = await svc.signin.sign_in_anonymous("shop", "c")
    assert other.verify("shop", tokens["access_token"]).uid == tokens["user"]["uid"]
    assert await svc.revoke_user("shop", tokens["user"]["uid"], disable=True) == 1
    svc.clock.now += 10  # type: ignore[attr-defined]
    await other.load()
    with pytest.raises(TokenError) as e:
        other.verify("shop", tokens["access_token"])
    assert e.value.code == "token_revoked"


async def test_password_sign_up_sign_in_and_brute_force(svc: AppService) -> None:
    await svc.create_app("shop", {"signin_rate": 0.01, "signin_burst": 3})
    assert await code_of(svc.signin.sign_up("shop", "not-an-email", "long enough pw", "c")) == "invalid_email"
    assert await code_of(svc.signin.sign_up("shop", "a@x.io", "short", "c")) == "weak_password"
    first = await svc.signin.sign_up("shop", "A@x.io", "correct horse", "c")
    assert first["user"]["email"] == "a@x.io" and first["user"]["provider"] == "password"
    assert "password_hash" not in first["user"]
    assert await code_of(svc.signin.sign_up("shop", "a@x.io", "another one", "c")) == "email_exists"
    ok = await svc.signin.sign_in_password("shop", "a@x.io", "correct horse", "c")
    assert svc.verify("shop", ok["access_token"]).email == "a@x.io"
    assert await code_of(svc.signin.sign_in_password("shop", "a@x.io", "wrong guess", "c")) == "invalid_credentials"
    assert await code_of(svc.signin.sign_in_password("shop", "nobody@x.io", "wrong guess", "c")) == "invalid_credentials"
    assert await code_of(svc.signin.sign_in_password("shop", "a@x.io", "wrong again", "c")) == "invalid_credentials"
    # the account's bucket (3 at once) is spent: even the right password waits now, from anywhere
    assert await code_of(svc.signin.sign_in_password("shop", "a@x.io", "wrong guess", "c")) == "too_many_attempts"
    assert await code_of(svc.signin.sign_in_password("shop", "a@x.io", "correct horse", "d")) == "too_many_attempts"


async def test_sign_in_methods_are_per_app(svc: AppService) -> None:
    await svc.create_app("closed", {"anonymous": False, "password": False})
    assert await code_of(svc.signin.sign_in_anonymous("closed", "c")) == "method_not_allowed"
    assert await code_of(svc.signin.sign_up("closed", "a@x.io", "long enough", "c")) == "method_not_allowed"
    assert await code_of(svc.signin.sign_in_custom("closed", {"code": "x"}, "c")) == "method_not_allowed"
    assert await code_of(svc.signin.sign_in_anonymous("nope", "c")) == "app_not_found"


async def test_custom_sign_in_through_a_function(svc: AppService) -> None:
    await svc.create_app("mini", {"custom": "wxlogin", "appid": "wx77"})
    tokens = await svc.signin.sign_in_custom("mini", {"code": "abc"}, "c")
    ident = svc.verify("mini", tokens["access_token"])
    assert (ident.openid, ident.unionid, ident.appid, ident.provider) == ("wx-abc", "un-1", "wx77", "custom")
    assert ident.claims["role"] == "vip"
    again = await svc.signin.sign_in_custom("mini", {"code": "abc"}, "c")
    assert again["user"]["uid"] == tokens["user"]["uid"]  # the same openid is the same user
    assert svc.calls[0][0] == "wxlogin"  # type: ignore[attr-defined]
    assert await code_of(svc.signin.sign_in_custom("mini", {"code": "bad"}, "c")) == "signin_refused"
    assert await code_of(svc.signin.sign_in_custom("mini", {"code": "crash"}, "c")) == "signin_refused"


async def test_signup_flood_is_limited(svc: AppService) -> None:
    await svc.create_app("shop", {"signup_rate": 0.01, "signup_burst": 2})
    await svc.signin.sign_in_anonymous("shop", "c")
    await svc.signin.sign_in_anonymous("shop", "c")
    assert await code_of(svc.signin.sign_in_anonymous("shop", "c")) == "too_many_attempts"
    await svc.signin.sign_in_anonymous("shop", "another-client")


async def test_deleted_user_cannot_refresh(svc: AppService) -> None:
    await svc.create_app("shop", {})
    tokens = await svc.signin.sign_in_anonymous("shop", "c")
    await svc.delete_user("shop", tokens["user"]["uid"])
    assert await code_of(svc.refresh("shop", tokens["refresh_token"])) in ("token_revoked", "token_invalid")
    with pytest.raises(TokenError):
        svc.verify("shop", tokens["access_token"])
