"""Bucket policies (Put/Get/DeleteBucketPolicy, GetBucketPolicyStatus) and their evaluation (pure).

Every key of this node acts as the bucket owner, so a policy decides two things, on every request to the
bucket: an explicit `Deny` that matches refuses it (403), even for the owner, as on S3; an `Allow` whose
principal is everyone (`"*"`) lets an unsigned request do what the statement allows (beside public ACLs).
Statements match by principal, action (`s3:GetObject`, wildcards), resource (`arn:aws:s3:::bucket/key`,
wildcards) and conditions: the String*, Null, Bool and Numeric operators (with `IfExists`, `ForAnyValue:`,
`ForAllValues:`) over the request's keys (`s3:x-amz-acl`, `s3:x-amz-server-side-encryption`,
`s3:ExistingObjectTag/…`, `s3:RequestObjectTag/…`, `s3:prefix`, `aws:SecureTransport` …). A key the
request does not have makes a condition false (true for the `…IfExists` and `Null: true` forms).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

from polyfn import jsontext
from polyfn.storage.errors import S3Error

#: S3 action of each operation whose name is not simply `s3:<operation>`.
ACTIONS = {
    "HeadObject": "s3:GetObject", "CopyObject": "s3:PutObject", "PostObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject", "UploadPart": "s3:PutObject", "UploadPartCopy": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject", "ListObjects": "s3:ListBucket", "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions", "ListParts": "s3:ListMultipartUploadParts",
    "GetObjectAttributes": "s3:GetObject", "DeleteObjects": "s3:DeleteObject",
    "GetBucketCors": "s3:GetBucketCORS", "PutBucketCors": "s3:PutBucketCORS", "DeleteBucketCors": "s3:PutBucketCORS",
    "DeleteBucketTagging": "s3:PutBucketTagging", "DeleteObjectTagging": "s3:DeleteObjectTagging",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration", "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "DeleteBucketEncryption": "s3:PutEncryptionConfiguration", "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock", "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
}
_VERSIONED = {"s3:GetObject": "s3:GetObjectVersion", "s3:DeleteObject": "s3:DeleteObjectVersion",
              "s3:GetObjectTagging": "s3:GetObjectVersionTagging", "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
              "s3:GetObjectAcl": "s3:GetObjectVersionAcl", "s3:PutObjectAcl": "s3:PutObjectVersionAcl"}

Context = Mapping[str, Callable[[], Any]]  # condition key (lower case) → its value(s), computed when asked


def malformed_policy(message: str) -> S3Error:
    return S3Error(400, "MalformedPolicy", message)


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def parse(text: str) -> dict[str, Any]:
    """Validate a policy document; the parsed document (statements as a list)."""
    try:
        doc = jsontext.loads_text(text)
    except ValueError:
        raise malformed_policy("Policies must be valid JSON") from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise malformed_policy("Missing required field Statement")
    statements = _list(doc["Statement"])
    for s in statements:
        if not isinstance(s, dict) or s.get("Effect") not in ("Allow", "Deny"):
            raise malformed_policy("Each statement needs an Effect of Allow or Deny")
        if "Action" not in s and "NotAction" not in s:
            raise malformed_policy("Missing required field Action")
        if "Principal" not in s and "NotPrincipal" not in s:
            raise malformed_policy("Missing required field Principal")
        if "Resource" not in s and "NotResource" not in s:
            raise malformed_policy("Missing required field Resource")
        for r in _list(s.get("Resource", s.get("NotResource"))):
            if not isinstance(r, str) or not r.startswith("arn:aws:s3:::"):
                raise malformed_policy(f"Policy has invalid resource: {r!r}")
        if not isinstance(s.get("Condition", {}), dict):
            raise malformed_policy("Condition must be an object")
    return {**doc, "Statement": statements}


def action_of(operation: str, versioned: bool) -> str:
    action = ACTIONS.get(operation, "s3:" + operation)
    return _VERSIONED.get(action, action) if versioned else action


def _like(pattern: str, value: str, case: bool = True) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _principal_matches(p: Any, anonymous: bool) -> bool:
    """`*` is everyone; any named principal is taken as this node's owner (every signed request)."""
    if p == "*":
        return True
    if isinstance(p, dict):
        names = [n for v in p.values() for n in _list(v)]
        return "*" in names or (not anonymous and bool(names))
    return not anonymous


def _test(op: str, want: list[Any], have: list[str]) -> bool:
    base = op.removesuffix("IfExists")
    if base == "Null":
        return (str(want[0]).lower() == "true") == (not have)
    if not have:
        return op.endswith("IfExists") or base.startswith(("StringNot", "ArnNot"))
    w = [str(x) for x in want]
    if base in ("StringEquals", "ArnEquals"):
        return any(h in w for h in have)
    if base in ("StringNotEquals", "ArnNotEquals"):
        return not any(h in w for h in have)
    if base == "StringEqualsIgnoreCase":
        return any(h.lower() in [x.lower() for x in w] for h in have)
    if base == "StringNotEqualsIgnoreCase":
        return not any(h.lower() in [x.lower() for x in w] for h in have)
    if base in ("StringLike", "ArnLike"):
        return any(_like(x, h) for x in w for h in have)
    if base in ("StringNotLike", "ArnNotLike"):
        return not any(_like(x, h) for x in w for h in have)
    if base == "Bool":
        return any(h.lower() == x.lower() for x in w for h in have)
    if base.startswith("Numeric"):
        try:
            a, b = float(have[0]), float(w[0])
        except ValueError:
            return False
        return {"NumericEquals": a == b, "NumericNotEquals": a != b, "NumericLessThan": a < b,
                "NumericLessThanEquals": a <= b, "NumericGreaterThan": a > b,
                "NumericGreaterThanEquals": a >= b}.get(base, False)
    return False  # an operator this store does not know never matches


def _conditions_hold(cond: dict[str, Any], ctx: Context) -> bool:
    for op, pairs in cond.items():
        if not isinstance(pairs, dict):
            return False
        qualifier, _, bare = op.rpartition(":")
        for key, want in pairs.items():
            get = ctx.get(key.lower())
            value = get() if get is not None else None
            have = [str(v) for v in _list(value)] if value is not None else []
            want_l = _list(want)
            if qualifier == "ForAllValues":
                ok = all(_test(bare, want_l, [h]) for h in have)
            else:
                ok = _test(bare, want_l, have)
            if not ok:
                return False
    return True


def _matches(s: dict[str, Any], action: str, resource: str, anonymous: bool, ctx: Context) -> bool:
    if "Principal" in s:
        if not _principal_matches(s["Principal"], anonymous):
            return False
    elif _principal_matches(s["NotPrincipal"], anonymous):
        return False
    if "Action" in s:
        if not any(_like(a, action, case=False) for a in _list(s["Action"])):
            return False
    elif any(_like(a, action, case=False) for a in _list(s["NotAction"])):
        return False
    if "Resource" in s:
        if not any(_like(r, resource) for r in _list(s["Resource"])):
            return False
    elif any(_like(r, resource) for r in _list(s["NotResource"])):
        return False
    return _conditions_hold(s.get("Condition", {}), ctx)


def evaluate(doc: dict[str, Any], action: str, resource: str, anonymous: bool, ctx: Context) -> str:
    """"deny", "allow" or "" (the policy says nothing about this request)."""
    verdict = ""
    for s in doc["Statement"]:
        if _matches(s, action, resource, anonymous, ctx):
            if s["Effect"] == "Deny":
                return "deny"
            verdict = "allow"
    return verdict


def is_public(doc: dict[str, Any]) -> bool:
    """Does an Allow reach everyone without a narrowing condition (GetBucketPolicyStatus, BlockPublicPolicy)?"""
    return any(s["Effect"] == "Allow" and "Principal" in s and _principal_matches(s["Principal"], True)
               and not s.get("Condition") for s in doc["Statement"])
