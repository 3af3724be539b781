"""Temporary credentials (an STS-like AssumeRole): a function hands a browser or a mini-program a key that
works only on one bucket and key prefix, only for reading and/or writing, and only for minutes.

    boto3.client("sts").assume_role(RoleArn=…, RoleSessionName=…, DurationSeconds=900, Policy=json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": ["oss:PutObject"], "Resource": ["acs:oss:*:*:photos/u1/*"]}]}))

The policy names one bucket and prefix (`arn:aws:s3:::BUCKET/PREFIX*` or Aliyun's `acs:oss:*:*:BUCKET/PREFIX*`)
and the actions (`s3:`/`oss:` Get*/List*/Head* read, Put*/Delete*/…Multipart* write, `*` both). The caller's
own key bounds it: a read-only caller gets read-only credentials, and revoking the caller's key ends them.

The credentials are self-contained, so any node of a cluster verifies them without a database: the access
key id carries the limits (expiry, bucket, prefix, rights, the parent key) and an HMAC tag under a key
derived from the node key; the secret is an HMAC of the access key id; the session token another. Clients
send the token (`x-oss-security-token`, `X-Amz-Security-Token`) as their SDKs do; the signature made with the
secret is what proves possession.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from collections.abc import Callable
from typing import Any

import msgspec

from polyfn.store.security import KeyRecord

PREFIX = "PFTS"  # access key ids of temporary credentials
MIN_TTL, MAX_TTL, DEFAULT_TTL = 60, 12 * 3600, 900
_READ = ("get", "list", "head")
_WRITE = ("put", "delete", "abort", "createmultipart", "completemultipart", "uploadpart", "restore", "postobject")


class StsError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class Limits(msgspec.Struct, frozen=True):
    bucket: str
    prefix: str
    read: bool
    write: bool
    expires: int  # epoch seconds
    parent: str  # the access key id of the key that asked

    def allows(self, bucket: str, key: str, write: bool, list_prefix: str | None = None) -> bool:
        """May a request on `bucket`/`key` (a listing: `key` empty, `list_prefix` its prefix) go ahead?"""
        if bucket != self.bucket or (write and not self.write) or (not write and not self.read):
            return False
        if key:
            return key.startswith(self.prefix)
        return list_prefix is not None and list_prefix.startswith(self.prefix)


class TemporaryKey(KeyRecord, kw_only=True):
    """What the key ring hands the storage API for temporary credentials: a key record with its limits and
    the session token its requests must carry."""

    limits: Limits
    token: str


def parse_policy(policy: str) -> tuple[str, str, bool, bool]:
    """(bucket, prefix, read, write) of an IAM/RAM-style policy document limited to one bucket and prefix."""
    try:
        doc = json.loads(policy)
        statements = doc["Statement"]
        statements = statements if isinstance(statements, list) else [statements]
    except (ValueError, KeyError, TypeError):
        raise StsError("MalformedPolicyDocument", "the policy is not a JSON policy document with a Statement") from None
    places: set[tuple[str, str]] = set()
    read = write = False
    for st in statements:
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            raise StsError("MalformedPolicyDocument", "only Allow statements are supported")
        actions = st.get("Action") or []
        resources = st.get("Resource") or []
        for action in actions if isinstance(actions, list) else [actions]:
            service, _, verb = str(action).lower().partition(":")
            if service not in ("s3", "oss") or not verb:
                raise StsError("MalformedPolicyDocument", f"action {action!r} is not an s3: or oss: action")
            read |= verb == "*" or verb.startswith(_READ)
            write |= verb == "*" or verb.startswith(_WRITE)
        for res in resources if isinstance(resources, list) else [resources]:
            res = str(res)
            for head in ("arn:aws:s3:::", "acs:oss:*:*:"):
                if res.startswith(head):
                    res = res[len(head):]
                    break
            else:
                raise StsError("MalformedPolicyDocument", f"resource {res!r}: use arn:aws:s3:::BUCKET/PREFIX* or "
                                                          "acs:oss:*:*:BUCKET/PREFIX*")
            bucket, _, pattern = res.partition("/")
            if not bucket or any(c in bucket for c in "*?") or (pattern and "*" in pattern[:-1]) or \
                    (pattern and not pattern.endswith("*")):
                raise StsError("MalformedPolicyDocument", f"resource {res!r}: one bucket and a prefix ending in '*'")
            places.add((bucket, pattern[:-1] if pattern.endswith("*") else pattern))
    if len(places) != 1 or not (read or write):
        raise StsError("MalformedPolicyDocument", "the policy must allow s3:/oss: actions on exactly one "
                                                  "BUCKET/PREFIX*")
    bucket, prefix = places.pop()
    return bucket, prefix, read, write


class Issuer:
    """Mints and checks temporary credentials with keys derived from the node key (`SecretBox.derive`)."""

    def __init__(self, derive: Callable[[bytes], bytes], parent_alive: Callable[[str], Any],
                 clock: Callable[[], float]):
        self._tag_key = derive(b"polyfn sts access key ids")
        self._secret_key = derive(b"polyfn sts secrets")
        self._token_key = derive(b"polyfn sts session tokens")
        self.parent_alive = parent_alive  # access key id → live KeyRecord or None
        self.clock = clock

    def assume(self, parent: KeyRecord, policy: str, ttl: int) -> dict[str, Any]:
        if not MIN_TTL <= ttl <= MAX_TTL:
            raise StsError("ValidationError", f"DurationSeconds={ttl} is out of range: {MIN_TTL}..{MAX_TTL}")
        if parent.scope == "ingest":
            raise StsError("AccessDenied", f"key {parent.id} may only ingest log lines: it cannot hand out storage "
                           "credentials", 403)
        bucket, prefix, read, write = parse_policy(policy)
        if parent.scope == "read":
            write = False
            if not read:
                raise StsError("AccessDenied", f"key {parent.id} may only read: it cannot hand out writes", 403)
        expires = int(self.clock()) + ttl
        limits = Limits(bucket, prefix, read, write, expires, parent.id)
        akid = self._akid(limits)
        return {"AccessKeyId": akid, "SecretAccessKey": self._secret(akid), "SessionToken": self._token(akid),
                "Expiration": expires, "limits": limits}

    def resolve(self, akid: str) -> tuple[str, TemporaryKey] | None:
        """(secret, key) of live temporary credentials; None when forged, expired or their parent was revoked."""
        limits = self._limits(akid)
        if limits is None or limits.expires <= self.clock() or self.parent_alive(limits.parent) is None:
            return None
        parent = self.parent_alive(limits.parent)
        key = TemporaryKey(id=akid, secret_sha256="", scope="invoke" if limits.write else "read", owner=None,
                           function=None, description=f"temporary credentials of {parent.id}", limits=limits,
                           token=self._token(akid), namespace=getattr(parent, "namespace", "default"))
        return self._secret(akid), key

    def _akid(self, limits: Limits) -> str:
        body = struct.pack(">IBB", limits.expires, limits.read | limits.write << 1, len(limits.bucket)) + os.urandom(6)
        body += limits.bucket.encode() + limits.parent.encode() + b"\0" + limits.prefix.encode()
        tag = hmac.new(self._tag_key, body, hashlib.sha256).digest()[:12]
        return PREFIX + base64.b32encode(body + tag).decode().rstrip("=")

    def _limits(self, akid: str) -> Limits | None:
        if not akid.startswith(PREFIX) or len(akid) > 1024:
            return None
        raw = akid[len(PREFIX):]
        try:
            data = base64.b32decode(raw + "=" * (-len(raw) % 8))
        except ValueError:
            return None
        body, tag = data[:-12], data[-12:]
        if len(body) < 12 or not hmac.compare_digest(hmac.new(self._tag_key, body, hashlib.sha256).digest()[:12], tag):
            return None
        expires, rights, blen = struct.unpack(">IBB", body[:6])
        rest = body[12:]
        bucket = rest[:blen].decode()
        parent, _, prefix = rest[blen:].decode().partition("\0")
        return Limits(bucket, prefix, bool(rights & 1), bool(rights & 2), expires, parent)

    def _secret(self, akid: str) -> str:
        return base64.b64encode(hmac.new(self._secret_key, akid.encode(), hashlib.sha256).digest()[:30]).decode()

    def _token(self, akid: str) -> str:
        return "pfst_" + base64.urlsafe_b64encode(hmac.new(self._token_key, akid.encode(), hashlib.sha256).digest()
                                                  ).decode().rstrip("=")


def refusal(key: Any, method: str, bucket: str, object_key: str, query: dict[str, str],
            headers: dict[str, str]) -> str | None:
    """Why the storage API refuses a request signed with temporary credentials (None: allowed; other keys
    are never refused here). `headers` lower-case; the token may also come as a query parameter."""
    limits = getattr(key, "limits", None)
    if limits is None:
        return None
    token = headers.get("x-amz-security-token") or headers.get("x-oss-security-token") or \
        query.get("X-Amz-Security-Token") or query.get("security-token")
    if token is None or not hmac.compare_digest(token, key.token):
        return "temporary credentials need their session token (x-amz-security-token / x-oss-security-token)"
    write = method not in ("GET", "HEAD")
    if not limits.allows(bucket, object_key, write, query.get("prefix", "") if not object_key else None):
        what = "write" if write else "read"
        return f"these temporary credentials may not {what} {bucket}/{object_key or query.get('prefix', '')}: " \
               f"they are limited to {limits.bucket}/{limits.prefix}* ({'read' if limits.read else ''}" \
               f"{'+' if limits.read and limits.write else ''}{'write' if limits.write else ''})"
    return None

