"""Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyfn.storage import acl
from polyfn.storage.errors import S3Error
from polyfn.storage.model import BucketInfo
from polyfn.storage.wire import OWNER, Request, Send, e, iso, parse_xml, read_all, respond, respond_xml
from polyfn.tenancy import DEFAULT, key_namespace

if TYPE_CHECKING:
    from polyfn.storage.context import S3Context
    from polyfn.storage.sigv4 import Identity

OWNERSHIPS = ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter")


async def list_buckets(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    q = req.q
    prefix, after = q.get("prefix", ""), q.get("continuation-token", "")
    try:
        limit = int(q.get("max-buckets", "10000"))
    except ValueError:
        raise S3Error(400, "InvalidArgument", "max-buckets must be an integer") from None
    ns = key_namespace(ident.key) if ident is not None and ident.key is not None else None
    buckets = [b for b in app.backend.list_buckets() if b.name.startswith(prefix) and b.name > after
               and (ns is None or b.namespace == ns)]  # a namespace's key lists its namespace's buckets
    more = len(buckets) > limit
    buckets = buckets[:limit]
    items = "".join(f"<Bucket><Name>{e(b.name)}</Name><CreationDate>{iso(b.created)}</CreationDate></Bucket>"
                    for b in buckets)
    tail = f"<ContinuationToken>{e(buckets[-1].name)}</ContinuationToken>" if more and buckets else ""
    if prefix:
        tail += f"<Prefix>{e(prefix)}</Prefix>"
    await respond_xml(send, "ListAllMyBucketsResult", f"{OWNER}<Buckets>{items}</Buckets>{tail}")


async def create_bucket(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    body = await read_all(req.receive)
    if body.strip():
        loc = parse_xml(body).findtext("LocationConstraint")
        if loc and loc != app.region:
            raise S3Error(400, "IllegalLocationConstraintException",
                          f"this endpoint serves region {app.region!r}, not {loc!r}")
    h = req.headers
    ownership = h.get("x-amz-object-ownership", "")
    if ownership and ownership not in OWNERSHIPS:
        raise S3Error(400, "InvalidArgument", f"Invalid x-amz-object-ownership {ownership!r}")
    grants = acl.from_headers(h, ownership)
    info = BucketInfo(req.bucket, app.clock(), grants or list(acl.CANNED["private"]), ownership=ownership,
                      namespace=(key_namespace(ident.key) if ident is not None and ident.key is not None else None)
                      or DEFAULT)
    if h.get("x-amz-bucket-object-lock-enabled", "").lower() == "true":
        info.lock, info.versioning = {"enabled": True}, "Enabled"
    if not app.backend.create_bucket(info):
        if app.backend.bucket(req.bucket).namespace != info.namespace:  # bucket names are global, as on S3
            raise S3Error(409, "BucketAlreadyExists", "The requested bucket name is not available.",
                          f"/{req.bucket}", BucketName=req.bucket)
        if app.region != "us-east-1":
            raise S3Error(409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket "
                          "succeeded and you already own it.", f"/{req.bucket}", BucketName=req.bucket)
        if (grants or acl.CANNED["private"]) != app.backend.bucket(req.bucket).acl:
            # us-east-1 answers 200 to its owner, but not to a re-creation that would change the ACL
            raise S3Error(409, "BucketAlreadyExists", "The requested bucket name is not available.",
                          f"/{req.bucket}", BucketName=req.bucket)
    await respond(send, 200, [(b"location", f"/{req.bucket}".encode())])


async def head_bucket(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.bucket(req.bucket)
    await respond(send, 200, [(b"x-amz-bucket-region", app.region.encode())], head=True)


async def delete_bucket(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.delete_bucket(req.bucket)
    await respond(send, 204, [])


async def get_location(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.bucket(req.bucket)
    await respond_xml(send, "LocationConstraint", "" if app.region == "us-east-1" else e(app.region))
