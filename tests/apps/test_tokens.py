"""Access tokens: signed with derived, rotated keys; refused with a code that says why."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import pytest

from polyfn.apps.tokens import TokenError, TokenSigner, new_refresh, split_refresh
from polyfn.auth.secrets import SecretBox

DAY = 24 * 3600.0
T0 = 1_800_000_000.0


@pytest.fixture
def signer(tmp_path: Path) -> TokenSigner:
    return TokenSigner(SecretBox(tmp_path / "node.key").derive, rotation=7 * DAY)


def claims(now: float, ttl: float = 3600, app: str = "shop") -> dict:
    return {"aud": app, "sub": "u1", "iat": int(now), "exp": int(now + ttl)}


def test_round_trip_and_kid(signer: TokenSigner) -> None:
    token = signer.issue(claims(T0), T0)
    assert jwt.get_unverified_header(token)["kid"] == signer.kid(T0)
    assert signer.decode(token, "shop", T0 + 10)["sub"] == "u1"


def test_refusals_name_the_reason(signer: TokenSigner) -> None:
    token = signer.issue(claims(T0), T0)
    with pytest.raises(TokenError) as e:
        signer.decode(token, "other", T0)
    assert e.value.code == "token_wrong_app"
    with pytest.raises(TokenError) as e:
        signer.decode(token, "shop", T0 + 3600)
    assert e.value.code == "token_expired"
    head, body, sig = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(body + "=="))
    forged["sub"] = "admin"
    body2 = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    for bad in (f"{head}.{body2}.{sig}", token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "x.y.z", ""):
        with pytest.raises(TokenError) as e:
            signer.decode(bad, "shop", T0)
        assert e.value.code == "token_invalid", bad


def test_keys_come_from_the_node_key(tmp_path: Path, signer: TokenSigner) -> None:
    token = signer.issue(claims(T0), T0)
    same = TokenSigner(SecretBox(signer.derive.__self__.key_path).derive)  # another node, same node key
    assert same.decode(token, "shop", T0)["sub"] == "u1"
    other = TokenSigner(SecretBox(tmp_path / "other.key").derive)
    with pytest.raises(TokenError) as e:
        other.decode(token, "shop", T0)
    assert e.value.code == "token_invalid"
    # an alg=none token or one signed with a guessable key is not accepted
    unsigned = jwt.encode(claims(T0), key=None, algorithm="none", headers={"kid": signer.kid(T0)})
    with pytest.raises(TokenError):
        signer.decode(unsigned, "shop", T0)


def test_rotation_keeps_one_previous_period(signer: TokenSigner) -> None:
    late = T0 - T0 % (7 * DAY) + 7 * DAY - 60  # a minute before the period ends
    token = signer.issue(claims(late, ttl=7 * DAY), late)
    after = late + 120
    assert signer.kid(after) != signer.kid(late)
    assert signer.decode(token, "shop", after)["sub"] == "u1"  # the previous period's key still verifies
    fresh = signer.issue(claims(after), after)
    assert jwt.get_unverified_header(fresh)["kid"] == signer.kid(after)
    # two periods on, that key is retired whatever the token's own expiry says
    long_lived = signer.issue(claims(late, ttl=30 * DAY), late)
    with pytest.raises(TokenError) as e:
        signer.decode(long_lived, "shop", late + 8 * DAY)
    assert e.value.code == "token_invalid"
    # a kid from the future is refused
    future = jwt.encode({"iss": "polyfn", **claims(T0)}, signer.derive(b"polyfn app tokens 999999"),
                        algorithm="HS256", headers={"kid": "k999999"})
    with pytest.raises(TokenError):
        signer.decode(future, "shop", T0)


def test_refresh_tokens() -> None:
    token, sha = new_refresh("abc")
    assert split_refresh(token) == ("abc", sha)
    assert split_refresh("pfr_abc") is None and split_refresh("nope") is None and split_refresh(None) is None  # type: ignore[arg-type]
