"""The S3 API's one route table: method × level (service, bucket, object) × sub-resource → operation.

A request's sub-resource is the one query parameter that names an operation (`?acl`, `?tagging`,
`?uploadId` …). Every request resolves here, once, before anything is read or written:

* a route in the table → its handler, with what the route needs (a write scope; whether an unsigned
  request may use it on a public resource);
* an S3 sub-resource this store does not implement → `501 NotImplemented` (an explicit entry below);
* a sub-resource S3 has but not with this method → `405 MethodNotAllowed`;
* a query parameter S3 does not know, or two sub-resources at once → `400 InvalidArgument`.

Nothing falls through: `PUT /b/k?tagging` can only ever be PutObjectTagging, never PutObject.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from polyfn.storage import (
    bucket_config,
    bucket_ops,
    list_ops,
    multipart_ops,
    object_meta,
    object_ops,
    post_upload,
)
from polyfn.storage.errors import S3Error, invalid_argument

Handler = Callable[..., Awaitable[None]]

SERVICE, BUCKET, OBJECT = "service", "bucket", "object"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    level: str
    sub: str  # the sub-resource ("" for the plain resource)
    operation: str  # S3's name for it
    handler: Handler | None  # None: known to S3, not implemented here (501)
    write: bool = False  # needs a key that may write (scope invoke and above)
    anonymous: str = ""  # "read": an unsigned request may use it on a public-read bucket/object; "post": policy
    header: str = ""  # the route applies only when this request header is present (CopyObject, UploadPartCopy)


def _r(method: str, level: str, sub: str, operation: str, handler: Handler | None, write: bool = False,
       anonymous: str = "", header: str = "") -> Route:
    return Route(method, level, sub, operation, handler, write, anonymous, header)


B, OB = bucket_ops, object_ops
C, M = bucket_config, object_meta

ROUTES: tuple[Route, ...] = (
    _r("GET", SERVICE, "", "ListBuckets", B.list_buckets),
    # buckets
    _r("PUT", BUCKET, "", "CreateBucket", B.create_bucket, write=True),
    _r("HEAD", BUCKET, "", "HeadBucket", B.head_bucket, anonymous="read"),
    _r("DELETE", BUCKET, "", "DeleteBucket", B.delete_bucket, write=True),
    _r("GET", BUCKET, "", "ListObjects", list_ops.list_objects, anonymous="read"),
    _r("POST", BUCKET, "", "PostObject", post_upload.post_object, write=True, anonymous="post"),
    _r("POST", BUCKET, "delete", "DeleteObjects", OB.delete_objects, write=True),
    _r("GET", BUCKET, "versions", "ListObjectVersions", list_ops.list_versions, anonymous="read"),
    _r("GET", BUCKET, "uploads", "ListMultipartUploads", list_ops.list_uploads),
    _r("GET", BUCKET, "location", "GetBucketLocation", B.get_location),
    _r("GET", BUCKET, "acl", "GetBucketAcl", C.get_bucket_acl),
    _r("PUT", BUCKET, "acl", "PutBucketAcl", C.put_bucket_acl, write=True),
    _r("GET", BUCKET, "versioning", "GetBucketVersioning", C.get_versioning),
    _r("PUT", BUCKET, "versioning", "PutBucketVersioning", C.put_versioning, write=True),
    _r("GET", BUCKET, "tagging", "GetBucketTagging", C.get_bucket_tagging),
    _r("PUT", BUCKET, "tagging", "PutBucketTagging", C.put_bucket_tagging, write=True),
    _r("DELETE", BUCKET, "tagging", "DeleteBucketTagging", C.delete_bucket_tagging, write=True),
    _r("GET", BUCKET, "cors", "GetBucketCors", C.get_cors),
    _r("PUT", BUCKET, "cors", "PutBucketCors", C.put_cors, write=True),
    _r("DELETE", BUCKET, "cors", "DeleteBucketCors", C.delete_cors, write=True),
    _r("GET", BUCKET, "policy", "GetBucketPolicy", None),
    _r("PUT", BUCKET, "policy", "PutBucketPolicy", None, write=True),
    _r("DELETE", BUCKET, "policy", "DeleteBucketPolicy", None, write=True),
    _r("GET", BUCKET, "policyStatus", "GetBucketPolicyStatus", None),
    _r("GET", BUCKET, "object-lock", "GetObjectLockConfiguration", C.get_object_lock),
    _r("PUT", BUCKET, "object-lock", "PutObjectLockConfiguration", C.put_object_lock, write=True),
    _r("GET", BUCKET, "encryption", "GetBucketEncryption", C.get_encryption),
    _r("PUT", BUCKET, "encryption", "PutBucketEncryption", C.put_encryption, write=True),
    _r("DELETE", BUCKET, "encryption", "DeleteBucketEncryption", C.delete_encryption, write=True),
    _r("GET", BUCKET, "ownershipControls", "GetBucketOwnershipControls", C.get_ownership),
    _r("PUT", BUCKET, "ownershipControls", "PutBucketOwnershipControls", C.put_ownership, write=True),
    _r("DELETE", BUCKET, "ownershipControls", "DeleteBucketOwnershipControls", C.delete_ownership, write=True),
    _r("GET", BUCKET, "publicAccessBlock", "GetPublicAccessBlock", C.get_public_access_block),
    _r("PUT", BUCKET, "publicAccessBlock", "PutPublicAccessBlock", C.put_public_access_block, write=True),
    _r("DELETE", BUCKET, "publicAccessBlock", "DeletePublicAccessBlock", C.delete_public_access_block, write=True),
    # objects
    _r("GET", OBJECT, "", "GetObject", OB.get_object, anonymous="read"),
    _r("HEAD", OBJECT, "", "HeadObject", OB.get_object, anonymous="read"),
    _r("PUT", OBJECT, "", "CopyObject", OB.copy_object, write=True, header="x-amz-copy-source"),
    _r("PUT", OBJECT, "", "PutObject", OB.put_object, write=True, anonymous="write"),
    _r("DELETE", OBJECT, "", "DeleteObject", OB.delete_object, write=True),
    _r("POST", OBJECT, "uploads", "CreateMultipartUpload", multipart_ops.create_upload, write=True),
    _r("PUT", OBJECT, "uploadId", "UploadPartCopy", multipart_ops.upload_part_copy, write=True,
       header="x-amz-copy-source"),
    _r("PUT", OBJECT, "uploadId", "UploadPart", multipart_ops.upload_part, write=True),
    _r("POST", OBJECT, "uploadId", "CompleteMultipartUpload", multipart_ops.complete_upload, write=True),
    _r("DELETE", OBJECT, "uploadId", "AbortMultipartUpload", multipart_ops.abort_upload, write=True),
    _r("GET", OBJECT, "uploadId", "ListParts", multipart_ops.list_parts),
    _r("GET", OBJECT, "acl", "GetObjectAcl", M.get_object_acl),
    _r("PUT", OBJECT, "acl", "PutObjectAcl", M.put_object_acl, write=True),
    _r("GET", OBJECT, "tagging", "GetObjectTagging", M.get_object_tagging),
    _r("PUT", OBJECT, "tagging", "PutObjectTagging", M.put_object_tagging, write=True),
    _r("DELETE", OBJECT, "tagging", "DeleteObjectTagging", M.delete_object_tagging, write=True),
    _r("GET", OBJECT, "retention", "GetObjectRetention", M.get_retention),
    _r("PUT", OBJECT, "retention", "PutObjectRetention", M.put_retention, write=True),
    _r("GET", OBJECT, "legal-hold", "GetObjectLegalHold", M.get_legal_hold),
    _r("PUT", OBJECT, "legal-hold", "PutObjectLegalHold", M.put_legal_hold, write=True),
    _r("GET", OBJECT, "attributes", "GetObjectAttributes", M.get_attributes),
)

#: S3 sub-resources this store knows but does not implement: every method answers 501, nothing is touched.
NOT_IMPLEMENTED: dict[str, tuple[str, ...]] = {
    BUCKET: ("accelerate", "analytics", "intelligent-tiering", "inventory", "lifecycle", "logging", "metrics",
             "notification", "replication", "requestPayment", "website", "metadataTable", "metadataConfiguration"),
    OBJECT: ("torrent", "restore", "select", "renameObject"),
}

#: Query parameters that qualify an operation rather than name one.
PARAMETERS = frozenset({
    "list-type", "prefix", "delimiter", "max-keys", "continuation-token", "start-after", "encoding-type",
    "fetch-owner", "marker", "key-marker", "version-id-marker", "upload-id-marker", "max-uploads", "max-parts",
    "part-number-marker", "partNumber", "versionId", "x-id", "select-type", "objectMeta",
    "response-content-type", "response-content-language", "response-expires", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "optional-object-attributes",
    # authentication (SigV4 / SigV2 presigned, OSS signed URLs)
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
    "X-Amz-Signature", "X-Amz-Content-Sha256", "X-Amz-Security-Token", "AWSAccessKeyId", "Signature", "Expires",
    "OSSAccessKeyId", "security-token",
})

_TABLE: dict[tuple[str, str, str], list[Route]] = {}
for _route in ROUTES:
    _TABLE.setdefault((_route.method, _route.level, _route.sub), []).append(_route)
for _level, _subs in NOT_IMPLEMENTED.items():
    for _sub in _subs:
        for _m in ("GET", "HEAD", "PUT", "POST", "DELETE"):
            _TABLE[(_m, _level, _sub)] = [_r(_m, _level, _sub, f"{_m} ?{_sub}", None)]
SUBRESOURCES: dict[str, frozenset[str]] = {
    lv: frozenset(s for (_, level, s) in _TABLE if level == lv and s) for lv in (SERVICE, BUCKET, OBJECT)}
_ALL_SUBRESOURCES = frozenset().union(*SUBRESOURCES.values())


def not_implemented(what: str) -> S3Error:
    return S3Error(501, "NotImplemented", f"{what} is not implemented by this store. A header or query you "
                   "provided implies functionality that is not implemented.")


def resolve(method: str, level: str, query: dict[str, str], headers: dict[str, Any]) -> Route:
    """The route of a request, or the S3 error that refuses it (see the module docstring)."""
    subs = []
    for name in query:
        if name in _ALL_SUBRESOURCES and name in SUBRESOURCES[level]:
            subs.append(name)
        elif name not in PARAMETERS:
            raise invalid_argument(f"{name!r} is not a sub-resource or parameter of a {level} request")
    if len(subs) > 1:
        raise invalid_argument(f"a request names one sub-resource; this one names {sorted(subs)}")
    sub = subs[0] if subs else ""
    routes = _TABLE.get((method, level, sub))
    if not routes:
        raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.",
                      Method=method, ResourceType=level.upper())
    for route in routes:
        if not route.header or route.header in headers:
            if route.handler is None:
                raise not_implemented(f"{sub or route.operation} ({method})")
            return route
    raise AssertionError(f"route table: no header-free route for {method} {level} {sub}")
