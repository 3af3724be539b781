"""An object version's own sub-resources: ACL, tagging, retention, legal hold (each changes the version's
record only, never its bytes: `LocalBackend.update_object`), and GetObjectAttributes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyfn.storage import acl
from polyfn.storage.bucket_config import block_public, parse_tagging
from polyfn.storage.errors import S3Error, access_denied, invalid_argument
from polyfn.storage.model import ObjectInfo
from polyfn.storage.object_ops import version_headers
from polyfn.storage.wire import (
    Request,
    Send,
    http_date,
    iso,
    malformed,
    parse_iso,
    parse_xml,
    read_all,
    respond,
    respond_xml,
)
from polyfn.storage.write_request import MAX_TAGS, data_key, tags_xml

if TYPE_CHECKING:
    from polyfn.storage.context import S3Context
    from polyfn.storage.sigv4 import Identity


def _vid(req: Request) -> str | None:
    vid = req.q.get("versionId")
    if vid == "":
        raise invalid_argument("Version id cannot be the empty string")
    return vid


def _vh(app: S3Context, req: Request, info: ObjectInfo) -> list[tuple[bytes, bytes]]:
    return version_headers(info, app.backend.bucket(req.bucket).versioning == "Enabled")


# -- ACL ------------------------------------------------------------------------------------------------


async def get_object_acl(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    info = app.backend.head_object(req.bucket, req.key, _vid(req))
    await respond_xml(send, "AccessControlPolicy", acl.to_xml(info.acl or acl.CANNED["private"]),
                      headers=_vh(app, req, info))


async def put_object_acl(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    body = await read_all(req.receive)
    grants = acl.from_request(req.headers, body, app.backend.bucket(req.bucket).ownership)
    block_public(app, req.bucket, grants)

    def change(info: ObjectInfo) -> None:
        info.acl = list(grants)

    info = await app.backend.update_object(req.bucket, req.key, _vid(req), change)
    await respond(send, 200, _vh(app, req, info))


# -- tagging --------------------------------------------------------------------------------------------


async def get_object_tagging(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    info = app.backend.head_object(req.bucket, req.key, _vid(req))
    await respond_xml(send, "Tagging", tags_xml(info.tags), headers=_vh(app, req, info))


async def put_object_tagging(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    tags = parse_tagging(await read_all(req.receive), MAX_TAGS)

    def change(info: ObjectInfo) -> None:
        info.tags = tags

    info = await app.backend.update_object(req.bucket, req.key, _vid(req), change)
    await respond(send, 200, _vh(app, req, info))


async def delete_object_tagging(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    def change(info: ObjectInfo) -> None:
        info.tags = {}

    info = await app.backend.update_object(req.bucket, req.key, _vid(req), change)
    await respond(send, 204, _vh(app, req, info))


# -- Object Lock: retention and legal hold --------------------------------------------------------------


def _lock_bucket(app: S3Context, bucket: str) -> None:
    if not app.backend.bucket(bucket).lock.get("enabled"):
        raise S3Error(400, "InvalidRequest", "Bucket is missing Object Lock Configuration")


async def get_retention(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    _lock_bucket(app, req.bucket)
    info = app.backend.head_object(req.bucket, req.key, _vid(req))
    if not info.lock_mode:
        raise S3Error(404, "NoSuchObjectLockConfiguration", "The specified object does not have a ObjectLock "
                      "configuration")
    await respond_xml(send, "Retention", f"<Mode>{info.lock_mode}</Mode><RetainUntilDate>{iso(info.lock_until)}"
                      "</RetainUntilDate>")


async def put_retention(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    root = parse_xml(await read_all(req.receive))
    _lock_bucket(app, req.bucket)
    mode, until_s = root.findtext("Mode"), root.findtext("RetainUntilDate")
    if root.tag != "Retention" or mode not in ("GOVERNANCE", "COMPLIANCE") or not until_s:
        raise malformed()
    until = parse_iso(until_s)
    if until is None:
        raise malformed()
    until = float(int(until))  # kept to the second, as it is answered (a client waiting it out is not early)
    now = app.clock()
    if until <= now:
        raise invalid_argument("The retain until date must be in the future!")
    bypass = req.headers.get("x-amz-bypass-governance-retention", "").lower() == "true"

    def change(info: ObjectInfo) -> None:
        if info.lock_mode and info.lock_until > now:
            shorter = until < info.lock_until or mode != info.lock_mode
            if info.lock_mode == "COMPLIANCE" and shorter:
                raise access_denied("Access Denied: a COMPLIANCE retention can only be extended")
            if info.lock_mode == "GOVERNANCE" and shorter and not bypass:
                raise access_denied("Access Denied: shortening a GOVERNANCE retention needs "
                                    "x-amz-bypass-governance-retention")
        info.lock_mode, info.lock_until = mode, until

    info = await app.backend.update_object(req.bucket, req.key, _vid(req), change)
    await respond(send, 200, _vh(app, req, info))


async def get_legal_hold(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    _lock_bucket(app, req.bucket)
    info = app.backend.head_object(req.bucket, req.key, _vid(req))
    await respond_xml(send, "LegalHold", f"<Status>{'ON' if info.legal_hold else 'OFF'}</Status>")


async def put_legal_hold(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    root = parse_xml(await read_all(req.receive))
    _lock_bucket(app, req.bucket)
    status = root.findtext("Status")
    if root.tag != "LegalHold" or status not in ("ON", "OFF"):
        raise malformed()

    def change(info: ObjectInfo) -> None:
        info.legal_hold = status == "ON"

    info = await app.backend.update_object(req.bucket, req.key, _vid(req), change)
    await respond(send, 200, _vh(app, req, info))


# -- GetObjectAttributes --------------------------------------------------------------------------------


def _object_parts(req: Request, info: ObjectInfo) -> str:
    """GetObjectAttributes' ObjectParts of a multipart version: the count (`PartsCount`, the name boto3 reads)
    and a page of its parts (`x-amz-max-parts`, default 1000; `x-amz-part-number-marker`), each with its size
    and, when the upload kept them, its checksum."""
    try:
        most = int(req.headers.get("x-amz-max-parts", "1000"))
        marker = int(req.headers.get("x-amz-part-number-marker", "0"))
    except ValueError:
        raise invalid_argument("x-amz-max-parts and x-amz-part-number-marker must be integers") from None
    if most < 0 or marker < 0:
        raise invalid_argument("x-amz-max-parts and x-amz-part-number-marker must not be negative")
    most = min(most, 1000)
    algo = next(iter(info.checksums), "").upper() if info.part_checksums else ""
    page = list(range(marker + 1, len(info.parts) + 1))[:most]
    truncated = bool(page) and page[-1] < len(info.parts)
    parts = "".join(f"<Part><PartNumber>{n}</PartNumber><Size>{info.parts[n - 1]}</Size>"
                    + (f"<Checksum{algo}>{info.part_checksums[n - 1]}</Checksum{algo}>" if algo else "") + "</Part>"
                    for n in page)
    nxt = f"<NextPartNumberMarker>{page[-1]}</NextPartNumberMarker>" if page else ""
    return (f"<ObjectParts><PartsCount>{len(info.parts)}</PartsCount><PartNumberMarker>{marker}</PartNumberMarker>"
            f"{nxt}<MaxParts>{most}</MaxParts><IsTruncated>{str(truncated).lower()}</IsTruncated>{parts}"
            "</ObjectParts>")


async def get_attributes(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    wanted = {a.strip() for a in req.headers.get("x-amz-object-attributes", "").split(",") if a.strip()}
    if not wanted:
        raise invalid_argument("x-amz-object-attributes names at least one attribute")
    info = app.backend.head_object(req.bucket, req.key, _vid(req))
    if info.sse.get("kind") == "c":
        data_key(app, req.headers, info)  # an SSE-C version tells nothing without its key (400), as on S3
    out = []
    if "ETag" in wanted:
        out.append(f"<ETag>{info.etag}</ETag>")
    if "Checksum" in wanted and info.checksums:
        sums = "".join(f"<Checksum{a.upper()}>{v}</Checksum{a.upper()}>" for a, v in info.checksums.items())
        out.append(f"<Checksum>{sums}<ChecksumType>{info.checksum_type or 'FULL_OBJECT'}</ChecksumType></Checksum>")
    if "ObjectParts" in wanted and info.parts:
        out.append(_object_parts(req, info))
    if "StorageClass" in wanted:
        out.append(f"<StorageClass>{info.storage_class}</StorageClass>")
    if "ObjectSize" in wanted:
        out.append(f"<ObjectSize>{info.size}</ObjectSize>")
    hdrs = [*_vh(app, req, info), (b"last-modified", http_date(info.last_modified).encode())]
    await respond_xml(send, "GetObjectAttributesResponse", "".join(out), headers=hdrs)

