"""Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyfn.storage import acl
from polyfn.storage.errors import S3Error
from polyfn.storage.model import BucketInfo
from polyfn.storage.wire import OWNER, Request, Send, e, iso, parse_xml, read_all, respond, respond_xml

if TYPE_CHECKING:
    from polyfn.storage.api import S3App
    from polyfn.storage.sigv4 import Identity

OWNERSHIPS = ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter")


async def list_buckets(app: S3App, req: Request, send: Send, ident: Identity | None) -> None:
    items = "".join(f"<Bucket><Name>{e(b.name)}</Name><CreationDate>{iso(b.created)}</CreationDate></Bucket>"
                    for b in app.backend.list_buckets())
    await respond_xml(send, "ListAllMyBucketsResult", f"{OWNER}<Buckets>{items}</Buckets>")


async def create_bucket(app: S3App, req: Request, send: Send, ident: Identity | None) -> None:
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
    grants = acl.from_headers(h, ownership) or []
    info = BucketInfo(req.bucket, app.clock(), grants, ownership=ownership)
    if h.get("x-amz-bucket-object-lock-enabled", "").lower() == "true":
        info.lock, info.versioning = {"enabled": True}, "Enabled"
    if not app.backend.create_bucket(info):
        if app.region != "us-east-1":
            raise S3Error(409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket "
                          "succeeded and you already own it.", f"/{req.bucket}", BucketName=req.bucket)
        if grants:  # us-east-1 answers 200 to its owner and resets the ACL (as S3 does)
            app.backend.update_bucket(req.bucket, acl=grants)
    await respond(send, 200, [(b"location", f"/{req.bucket}".encode())])


async def head_bucket(app: S3App, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.bucket(req.bucket)
    await respond(send, 200, [(b"x-amz-bucket-region", app.region.encode())], head=True)


async def delete_bucket(app: S3App, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.delete_bucket(req.bucket)
    await respond(send, 204, [])


async def get_location(app: S3App, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.bucket(req.bucket)
    await respond_xml(send, "LocationConstraint", "" if app.region == "us-east-1" else e(app.region))
