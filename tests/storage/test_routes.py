"""The route table: every request resolves to one operation or one refusal, decided before anything runs."""

from __future__ import annotations

import pytest

from polyfn.storage import routes
from polyfn.storage.errors import S3Error

METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")


def resolve(method: str, level: str, query: str = "", headers: dict[str, str] | None = None) -> str:
    q = dict(p.partition("=")[::2] for p in query.split("&") if p)
    try:
        return routes.resolve(method, level, q, headers or {}).operation
    except S3Error as e:
        return f"{e.status} {e.code}"


@pytest.mark.parametrize("method, level, query, headers, want", [
    ("PUT", "object", "", {}, "PutObject"),
    ("PUT", "object", "", {"x-amz-copy-source": "/b/k"}, "CopyObject"),
    ("PUT", "object", "acl", {}, "PutObjectAcl"),
    ("PUT", "object", "tagging", {}, "PutObjectTagging"),
    ("DELETE", "object", "tagging", {}, "DeleteObjectTagging"),
    ("PUT", "object", "retention", {}, "PutObjectRetention"),
    ("PUT", "object", "legal-hold", {}, "PutObjectLegalHold"),
    ("PUT", "object", "uploadId=u&partNumber=1", {}, "UploadPart"),
    ("PUT", "object", "uploadId=u&partNumber=1", {"x-amz-copy-source": "/b/k"}, "UploadPartCopy"),
    ("GET", "object", "versionId=v&partNumber=2", {}, "GetObject"),
    ("DELETE", "object", "versionId=v", {}, "DeleteObject"),
    ("GET", "bucket", "versions", {}, "ListObjectVersions"),
    ("GET", "bucket", "list-type=2&prefix=a", {}, "ListObjects"),
    ("POST", "bucket", "delete", {}, "DeleteObjects"),
    ("PUT", "object", "torrent", {}, "501 NotImplemented"),
    ("DELETE", "object", "restore", {}, "501 NotImplemented"),
    ("PUT", "bucket", "lifecycle", {}, "501 NotImplemented"),
    ("PUT", "object", "attributes", {}, "405 MethodNotAllowed"),
    ("DELETE", "object", "acl", {}, "405 MethodNotAllowed"),
    ("PUT", "object", "frobnicate", {}, "400 InvalidArgument"),
    ("DELETE", "object", "frobnicate=1", {}, "400 InvalidArgument"),
    ("PUT", "object", "acl&tagging", {}, "400 InvalidArgument"),
    ("PUT", "object", "delete", {}, "400 InvalidArgument"),  # a bucket sub-resource on an object
    ("GET", "bucket", "bucket=b&key=k&etag=e", {}, "ListObjects"),  # reads ignore unknown parameters
    ("PATCH", "object", "", {}, "405 MethodNotAllowed"),
])
def test_resolve(method: str, level: str, query: str, headers: dict[str, str], want: str) -> None:
    assert resolve(method, level, query, headers) == want


@pytest.mark.parametrize("level", ["bucket", "object"])
def test_no_sub_resource_on_a_write_ever_reaches_put_or_delete_object(level: str) -> None:
    """Whatever sub-resource a PUT/POST/DELETE names, it is never the plain object write or delete."""
    plain = {"PutObject", "CopyObject", "DeleteObject", "CreateBucket", "DeleteBucket", "PostObject"}
    for sub in sorted(routes.SUBRESOURCES[level]):
        for method in ("PUT", "POST", "DELETE"):
            got = resolve(method, level, sub, {"x-amz-copy-source": "/b/k"})
            assert got not in plain, (method, level, sub, got)


def test_every_route_names_a_handler_or_is_an_explicit_501() -> None:
    for route in routes.ROUTES:
        assert route.method in METHODS and route.level in (routes.SERVICE, routes.BUCKET, routes.OBJECT)
        if route.handler is None:
            assert resolve(route.method, route.level, route.sub) == "501 NotImplemented"
