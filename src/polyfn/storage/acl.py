"""Access control lists as S3 writes them: canned ACLs, `x-amz-grant-*` headers, AccessControlPolicy XML.

A stored ACL is the full grant list (the owner's FULL_CONTROL included); an empty one means the default,
owner-only. Every key of this node acts as the one owner (`wire.OWNER_ID`): ACLs decide what unsigned
requests may do (a public-read object or bucket is readable without a signature) and are answered back as
S3 does. A bucket with ownership `BucketOwnerEnforced` refuses ACLs other than the owner-only ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from polyfn.storage.errors import S3Error, invalid_argument
from polyfn.storage.model import ALL_USERS, AUTH_USERS, BucketInfo, Grant
from polyfn.storage.wire import OWNER, OWNER_ID, e, malformed, parse_xml

LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
OWNER_FULL: Grant = ("id", OWNER_ID, "FULL_CONTROL")
PERMISSIONS = ("READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL")
CANNED: dict[str, list[Grant]] = {
    "private": [OWNER_FULL],
    "public-read": [("uri", ALL_USERS, "READ"), OWNER_FULL],
    "public-read-write": [("uri", ALL_USERS, "READ"), ("uri", ALL_USERS, "WRITE"), OWNER_FULL],
    "authenticated-read": [("uri", AUTH_USERS, "READ"), OWNER_FULL],
    "bucket-owner-read": [OWNER_FULL, ("id", OWNER_ID, "READ")],
    "bucket-owner-full-control": [OWNER_FULL, ("id", OWNER_ID, "FULL_CONTROL")],
    "aws-exec-read": [OWNER_FULL],
    "log-delivery-write": [("uri", LOG_DELIVERY, "WRITE"), ("uri", LOG_DELIVERY, "READ_ACP"), OWNER_FULL],
}
_GRANT_HEADERS = {f"x-amz-grant-{p.lower().replace('_', '-')}": p for p in PERMISSIONS}
_GRANTEE = re.compile(r'\s*(id|uri|emailAddress)\s*=\s*"?([^",]*)"?\s*', re.I)
_XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def from_headers(h: Mapping[str, str], ownership: str = "") -> list[Grant] | None:
    """The ACL a request sets with `x-amz-acl` or `x-amz-grant-*` headers, None when it sets none."""
    canned = h.get("x-amz-acl")
    grants_given = [name for name in _GRANT_HEADERS if name in h]
    if canned is not None and grants_given:
        raise invalid_argument("Specifying both Canned ACLs and Header Grants is not allowed")
    if canned is not None:
        if canned not in CANNED:
            raise invalid_argument(f"Unknown canned ACL {canned!r}")
        enforce(ownership, CANNED[canned])
        return list(CANNED[canned])
    if not grants_given:
        return None
    grants: list[Grant] = []
    for name in grants_given:
        for part in h[name].split(","):
            m = _GRANTEE.fullmatch(part)
            if m is None:
                raise invalid_argument(f"malformed grantee in {name}: {part.strip()!r}")
            kind = {"id": "id", "uri": "uri", "emailaddress": "email"}[m.group(1).lower()]
            grants.append((kind, m.group(2), _GRANT_HEADERS[name]))
    enforce(ownership, grants)
    return grants


def from_xml(body: bytes, ownership: str = "") -> list[Grant]:
    root = parse_xml(body)
    acl = root.find("AccessControlList")
    if acl is None:
        raise malformed()
    grants: list[Grant] = []
    for g in acl.findall("Grant"):
        grantee, perm = g.find("Grantee"), g.findtext("Permission") or ""
        if grantee is None or perm not in PERMISSIONS:
            raise malformed()
        if grantee.findtext("ID"):
            grants.append(("id", grantee.findtext("ID") or "", perm))
        elif grantee.findtext("URI"):
            grants.append(("uri", grantee.findtext("URI") or "", perm))
        elif grantee.findtext("EmailAddress"):
            grants.append(("email", grantee.findtext("EmailAddress") or "", perm))
        else:
            raise malformed()
    enforce(ownership, grants)
    return grants


def from_request(h: Mapping[str, str], body: bytes, ownership: str = "") -> list[Grant]:
    """The ACL a Put(Bucket|Object)Acl sets: its headers, else its AccessControlPolicy body."""
    grants = from_headers(h, ownership)
    if grants is not None:
        return grants
    if not body.strip():
        raise malformed()
    return from_xml(body, ownership)


def enforce(ownership: str, grants: list[Grant]) -> None:
    for kind, who, _ in grants:
        if kind == "id" and who != OWNER_ID:
            raise invalid_argument(f"Invalid id: {who!r} is not a canonical user of this store (its one owner is "
                                   f"{OWNER_ID!r})")
        if kind == "email":
            raise S3Error(400, "UnresolvableGrantByEmailAddress", "The email address you provided does not match "
                          "any account on record.")
    if ownership == "BucketOwnerEnforced" and any(g != OWNER_FULL for g in grants):
        raise S3Error(400, "AccessControlListNotSupported", "The bucket does not allow ACLs")


def granted(grants: list[Grant], permission: str, ident: object | None) -> bool:
    """Does an ACL grant `permission` to this caller (None: anonymous) beyond the owner's full control?"""
    groups = (ALL_USERS,) if ident is None else (ALL_USERS, AUTH_USERS)
    return any(kind == "uri" and who in groups and perm in (permission, "FULL_CONTROL") for kind, who, perm in grants)


def public_grant(bucket: BucketInfo, grants: list[Grant], permission: str) -> bool:
    """Does an ACL grant `permission` to an unsigned caller, unless the bucket's public access block says
    IgnorePublicAcls (then public grants count for nothing, as on S3)?"""
    return not bucket.public_access_block.get("IgnorePublicAcls") and granted(grants, permission, None)


def is_public(grants: list[Grant]) -> bool:
    """Does an ACL grant anything to everyone or to every authenticated user (what BlockPublicAcls refuses)?"""
    return any(kind == "uri" and who in (ALL_USERS, AUTH_USERS) for kind, who, _ in grants)


def refuse_public(bucket: BucketInfo, grants: list[Grant]) -> None:
    """A bucket whose public access block says BlockPublicAcls refuses ACLs that grant to everyone (403), whether
    set by the ACL calls or with a write (PutObject, CopyObject, CreateMultipartUpload, a POST upload)."""
    if bucket.public_access_block.get("BlockPublicAcls") and is_public(grants):
        raise S3Error(403, "AccessDenied", "Access Denied: the bucket's public access block refuses public ACLs")


def to_xml(grants: list[Grant]) -> str:
    out = []
    for kind, who, perm in sorted(grants, key=lambda g: g[0] != "uri"):  # groups first, as S3 lists them
        if kind == "id":
            grantee = (f'<Grantee {_XSI} xsi:type="CanonicalUser"><ID>{e(who)}</ID>'
                       f"<DisplayName>{e(who)}</DisplayName></Grantee>")
        elif kind == "uri":
            grantee = f'<Grantee {_XSI} xsi:type="Group"><URI>{e(who)}</URI></Grantee>'
        else:
            grantee = f'<Grantee {_XSI} xsi:type="AmazonCustomerByEmail"><EmailAddress>{e(who)}</EmailAddress></Grantee>'
        out.append(f"<Grant>{grantee}<Permission>{perm}</Permission></Grant>")
    return f"{OWNER}<AccessControlList>{''.join(out)}</AccessControlList>"
