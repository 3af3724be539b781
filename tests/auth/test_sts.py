"""Temporary credentials (auth/sts.py): policies, limits, expiry, forgery, the parent key's revocation."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfn.auth.secrets import SecretBox
from polyfn.auth.sts import Issuer, StsError, parse_policy, refusal
from polyfn.store.security import KeyRecord


def policy(action: str, resource: str) -> str:
    import json

    return json.dumps({"Statement": [{"Effect": "Allow", "Action": [action], "Resource": [resource]}]})


@pytest.mark.parametrize(("doc", "want"), [
    (policy("oss:PutObject", "acs:oss:*:*:photos/u1/*"), ("photos", "u1/", False, True)),
    (policy("s3:GetObject", "arn:aws:s3:::photos/u1/*"), ("photos", "u1/", True, False)),
    (policy("s3:*", "arn:aws:s3:::photos/*"), ("photos", "", True, True)),
    (policy("s3:ListBucket", "arn:aws:s3:::photos/a/b/*"), ("photos", "a/b/", True, False)),
])
def test_policies(doc: str, want: tuple) -> None:
    assert parse_policy(doc) == want


@pytest.mark.parametrize("doc", [
    policy("s3:*", "arn:aws:s3:::*"), policy("s3:*", "arn:aws:s3:::photos/*/x*"), policy("iam:*", "arn:aws:s3:::b/p*"),
    policy("s3:GetObject", "arn:aws:s3:::b/exact-key"), '{"Statement": [{"Effect": "Deny"}]}', "[]", "{",
])
def test_policies_that_cannot_be_limited(doc: str) -> None:
    with pytest.raises(StsError):
        parse_policy(doc)


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_issue_resolve_expire_forge_and_revoke(tmp_path: Path) -> None:
    parent = KeyRecord(id="PFAKPARENT", secret_sha256="x", scope="invoke")
    live = {"PFAKPARENT": parent}
    clock = Clock()
    issuer = Issuer(SecretBox(tmp_path / "node.key").derive, live.get, clock)
    creds = issuer.assume(parent, policy("oss:PutObject", "acs:oss:*:*:photos/u1/*"), 900)
    akid = creds["AccessKeyId"]
    secret, key = issuer.resolve(akid)  # type: ignore[misc]
    assert secret == creds["SecretAccessKey"] and key.limits.prefix == "u1/" and key.scope == "invoke"
    token = {"x-amz-security-token": creds["SessionToken"]}
    assert refusal(key, "PUT", "photos", "u1/a.png", {}, token) is None
    assert "may not write" in refusal(key, "PUT", "photos", "u2/a.png", {}, token)
    assert "may not write" in refusal(key, "PUT", "other", "u1/a.png", {}, token)
    assert "may not read" in refusal(key, "GET", "photos", "u1/a.png", {}, token)
    assert "session token" in refusal(key, "PUT", "photos", "u1/a.png", {}, {})
    assert "session token" in refusal(key, "PUT", "photos", "u1/a.png", {}, {"x-oss-security-token": "pfst_x"})
    # a changed character of the key id: unknown (one inside it: base32's last character may carry only
    # padding bits, which decoding drops); another node with the same node key: known
    i = len(akid) // 2
    assert issuer.resolve(akid[:i] + ("A" if akid[i] != "A" else "B") + akid[i + 1:]) is None
    assert Issuer(SecretBox(tmp_path / "node.key").derive, live.get, clock).resolve(akid) is not None
    assert Issuer(SecretBox(tmp_path / "other.key").derive, live.get, clock).resolve(akid) is None
    clock.now += 901
    assert issuer.resolve(akid) is None  # expired
    clock.now -= 901
    del live["PFAKPARENT"]
    assert issuer.resolve(akid) is None  # the parent key was revoked
    with pytest.raises(StsError):
        issuer.assume(parent, policy("s3:*", "arn:aws:s3:::b/p*"), 10)  # too short
    reader = KeyRecord(id="PFAKREADER", secret_sha256="x", scope="read")
    ro = issuer.assume(reader, policy("s3:*", "arn:aws:s3:::b/p*"), 900)
    assert ro["limits"].write is False and ro["limits"].read is True
